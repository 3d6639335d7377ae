//! One batch of events into one target table, in one transaction with its checkpoint.
//!
//! A target is a table and the checkpoint that says how far it has read: the live read
//! model (`agent_test_executions`), its shadow during a rebuild
//! (`agent_test_executions__rebuild`) or a scratch copy for `hookrun verify`. Batches
//! are optimistic: the events are read outside the transaction, and the transaction
//! only applies them if the checkpoint is still where they were read from — otherwise
//! another writer (another node, a finished rebuild) moved it, and the caller reads
//! again ([`Applied::Raced`]). So every event is folded exactly once per target, which
//! lets folds count.

use std::collections::HashMap;

use super::model::{Projection, Record};
use super::rows;
use super::sql::{self, Tx};
use super::writes::Writes;
use crate::db::Db;
use crate::events::tenant::erased_tenant;
use crate::events::{EventStore, Position, RecordedEvent};

/// A table a projection folds into, and its checkpoint.
///
/// Batches commit relaxed ([`Tx::begin_relaxed`]: not waiting for the disk, so that
/// appends queued behind a batch on the one SQLite writer do not wait for its fsync).
/// Rows and checkpoint commit together, so a batch a crash loses is folded again from
/// the checkpoint it left. Where an answer depends on the rows being on disk, the
/// caller flushes ([`super::sql::flush`], as erasure does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub table: String,
    pub checkpoint: String,
}

impl Target {
    /// The read model the service serves.
    pub fn live(name: &str) -> Target {
        Target {
            table: name.to_owned(),
            checkpoint: name.to_owned(),
        }
    }

    /// A copy beside it (`{name}__{suffix}`), for rebuilds and verification.
    pub fn beside(name: &str, suffix: &str) -> Target {
        let table = format!("{name}__{suffix}");
        Target {
            checkpoint: table.clone(),
            table,
        }
    }
}

/// What became of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Applied; the checkpoint is now at this position.
    Done(Position),
    /// The checkpoint had moved: nothing was written.
    Raced,
}

/// Folds `events` (read after `after`) into `target` and moves its checkpoint, if the
/// checkpoint is still at `after`. `version` is recorded on a new checkpoint.
pub async fn apply_batch<P: Projection>(
    db: &Db,
    target: &Target,
    after: Position,
    events: &[RecordedEvent],
    version: u32,
) -> anyhow::Result<Applied> {
    let Some(last) = events.last().map(|e| e.position) else {
        return Ok(Applied::Done(after));
    };
    let Some(mut tx) = begin_at(db, target, after).await? else {
        return Ok(Applied::Raced);
    };
    fold_into::<P>(&mut tx, &target.table, events).await?;
    sql::advance_checkpoint(&mut tx, &target.checkpoint, last, version).await?;
    tx.commit().await?;
    Ok(Applied::Done(last))
}

/// Begins a batch's transaction on `target`, holding its checkpoint's lock, if the
/// checkpoint is still at `after`; `None` if another writer moved it.
pub async fn begin_at(db: &Db, target: &Target, after: Position) -> anyhow::Result<Option<Tx>> {
    let mut tx = Tx::begin_relaxed(db, &[&target.checkpoint]).await?;
    let current = sql::read_checkpoint_in(&mut tx, &target.checkpoint)
        .await?
        .map_or(Position::START, |c| c.position);
    Ok((current == after).then_some(tx)) // otherwise rolled back on drop
}

/// The changed rows' writes (upserts in key order: a stable lock order), then deletes.
pub fn changes<R: Record>(
    writes: Writes,
    table: &str,
    mut upserts: Vec<&R>,
    deletes: &[&str],
) -> Writes {
    upserts.sort_unstable_by(|a, b| a.key().cmp(b.key()));
    writes.upsert(table, &upserts).delete::<R>(table, deletes)
}

/// Reads one batch after the target's checkpoint (up to `stop`, inclusive, if given) and
/// applies it. Returns how many events were applied; `None` if it raced.
pub async fn run_once<P: Projection>(
    store: &dyn EventStore,
    db: &Db,
    target: &Target,
    batch: usize,
    stop: Option<Position>,
) -> anyhow::Result<Option<usize>> {
    let after = sql::read_checkpoint(db, &target.checkpoint)
        .await?
        .map_or(Position::START, |c| c.position);
    let mut events = store.read_all(after, batch).await?;
    if let Some(stop) = stop {
        events.retain(|e| e.position <= stop);
    }
    match apply_batch::<P>(db, target, after, &events, P::VERSION).await? {
        Applied::Done(_) => Ok(Some(events.len())),
        Applied::Raced => Ok(None),
    }
}

/// Applies batches until the target has read everything visible now (or `stop`).
pub async fn catch_up<P: Projection>(
    store: &dyn EventStore,
    db: &Db,
    target: &Target,
    batch: usize,
    stop: Option<Position>,
) -> anyhow::Result<usize> {
    let mut total = 0;
    loop {
        match run_once::<P>(store, db, target, batch, stop).await? {
            None => continue,
            Some(n) => {
                total += n;
                if n == 0 || (stop.is_none() && n < batch) {
                    return Ok(total);
                }
            }
        }
    }
}

/// Folds `events` into `table` inside `tx`. A `TenantErased` deletes the tenant's rows
/// at its place in the order: the events before it are written first.
pub async fn fold_into<P: Projection>(
    tx: &mut Tx,
    table: &str,
    events: &[RecordedEvent],
) -> anyhow::Result<()> {
    for (segment, erasure) in split_at_erasures(events) {
        fold_segment::<P>(tx, table, segment).await?;
        if let Some((_, tenant)) = erasure {
            rows::delete_tenant(tx, table, tenant).await?;
        }
    }
    Ok(())
}

/// A run of events with no `TenantErased` among them, and the erasure right after it
/// (its position and tenant; `None` for the last run).
pub(super) type Run<'a> = (&'a [RecordedEvent], Option<(Position, &'a str)>);

/// The runs of events between `TenantErased` events.
pub(super) fn split_at_erasures(events: &[RecordedEvent]) -> Vec<Run<'_>> {
    let mut runs = Vec::new();
    let mut start = 0;
    for (i, event) in events.iter().enumerate() {
        if let Some(tenant) = erased_tenant(event) {
            runs.push((&events[start..i], Some((event.position, tenant))));
            start = i + 1;
        }
    }
    runs.push((&events[start..], None));
    runs
}

/// The events `P` folds, decoded, with the key of the row each touches. An event whose
/// tenant data cannot be opened (its tenant was erased) is skipped: its rows are
/// deleted when the `TenantErased` that follows it is folded.
pub(super) fn decode<P: Projection>(
    events: &[RecordedEvent],
) -> Vec<(String, P::Event, &RecordedEvent)> {
    events
        .iter()
        .filter(|e| e.metadata.get(crate::events::sealing::UNREADABLE).is_none())
        .filter_map(|e| P::decode(e).map(|(key, ev)| (key, ev, e)))
        .collect()
}

/// Loads the rows the events touch (one query), folds in memory, writes what changed
/// (one multi-row statement).
async fn fold_segment<P: Projection>(
    tx: &mut Tx,
    table: &str,
    events: &[RecordedEvent],
) -> anyhow::Result<()> {
    let decoded = decode::<P>(events);
    if decoded.is_empty() {
        return Ok(());
    }
    let (stored, mut rows) = {
        let mut keys: Vec<&str> = decoded.iter().map(|(k, _, _)| k.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        let stored: HashMap<String, P::Row> = rows::load_rows(tx, table, &keys).await?;
        let rows: HashMap<String, Option<P::Row>> = keys
            .iter()
            .map(|k| (k.to_string(), stored.get(*k).cloned()))
            .collect();
        (stored, rows)
    };
    for (key, event, recorded) in decoded {
        let slot = rows.get_mut(&key).expect("every key was loaded");
        *slot = P::apply(slot.take(), event, recorded);
    }
    let mut upserts = Vec::new();
    let mut deletes = Vec::new();
    for (key, row) in &rows {
        match (row, stored.get(key)) {
            (Some(row), before) if before != Some(row) => {
                // An upsert does not write fixed columns of a row that exists.
                debug_assert!(
                    before.is_none_or(|b| b.fixed_cells() == row.fixed_cells()),
                    "{} changed a fixed column of {key}",
                    P::NAME
                );
                upserts.push(row);
            }
            (None, Some(_)) => deletes.push(key.as_str()),
            _ => {}
        }
    }
    changes(Writes::within(tx), table, upserts, &deletes)
        .run(tx)
        .await?;
    Ok(())
}
