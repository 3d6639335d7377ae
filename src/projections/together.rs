//! One batch into every read model in one transaction: the runner's usual pass.
//!
//! Once caught up, the read models are level (every checkpoint at the same position).
//! A pass then reads the next events once, folds them into every table and moves every
//! checkpoint, all in one transaction: one commit per pass instead of one per read
//! model on the writer that event appends share (on SQLite, the only one), and a reader
//! never sees one read model ahead of another. The batch is optimistic like a single
//! one ([`super::batch`]): if any checkpoint moved since the events were read, nothing
//! is written and the caller reads again.

use std::sync::Arc;

use super::any::AnyProjection;
use super::batch::Applied;
use super::sql::{self, Tx};
use crate::db::Db;
use crate::events::{Position, RecordedEvent};

/// Folds `events` (read after `after`) into every projection's live table and moves
/// every checkpoint to the last event, if every checkpoint is still at `after`.
pub async fn apply(
    db: &Db,
    projections: &[Arc<dyn AnyProjection>],
    after: Position,
    events: &[RecordedEvent],
) -> anyhow::Result<Applied> {
    let Some(last) = events.last().map(|e| e.position) else {
        return Ok(Applied::Done(after));
    };
    let names: Vec<&str> = projections.iter().map(|p| p.name()).collect();
    let mut tx = Tx::begin_relaxed(db, &names).await?;
    let at = sql::read_positions_in(&mut tx, &names).await?;
    if at.iter().any(|p| *p != after) {
        return Ok(Applied::Raced); // rolled back on drop
    }
    for p in projections {
        p.fold(&mut tx, p.name(), events).await?;
    }
    let checkpoints: Vec<(&str, u32)> = projections
        .iter()
        .map(|p| (p.name(), p.version()))
        .collect();
    sql::advance_checkpoints(&mut tx, &checkpoints, last).await?;
    tx.commit().await?;
    Ok(Applied::Done(last))
}
