//! The projection runner: reads the global order from its checkpoint, folds each
//! batch into `agent_test_executions`, and commits rows and checkpoint in one
//! transaction — so a crash between them is impossible and replaying a batch is
//! harmless (the fold is idempotent).
//!
//! It follows new events by waiting on the store's change signal, with a slow
//! fallback tick (an aborted transaction sends no signal); tests drive it with
//! [`ProjectionRunner::run_once`] instead.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sqlx::Row;
use tokio::sync::watch;

use super::executions::{ExecutionRow, apply, is_execution_stream};
use super::executions_table::{load_row, upsert_row};
use crate::catalog::timestamp;
use crate::db::Db;
use crate::events::{EventStore, Position, RecordedEvent};
use crate::{with_db, with_db_read};

pub const EXECUTIONS_PROJECTION: &str = "agent_test_executions";

const CHECKPOINT_UPSERT: &str = "INSERT INTO projection_checkpoints \
    (name, commit_pos, prepare_pos, updated_at) VALUES ($1, $2, $3, $4) \
    ON CONFLICT (name) DO UPDATE SET commit_pos = excluded.commit_pos, \
    prepare_pos = excluded.prepare_pos, updated_at = excluded.updated_at \
    WHERE projection_checkpoints.commit_pos < excluded.commit_pos \
    OR (projection_checkpoints.commit_pos = excluded.commit_pos \
        AND projection_checkpoints.prepare_pos < excluded.prepare_pos)";

#[derive(Clone)]
pub struct ProjectionRunner {
    store: Arc<dyn EventStore>,
    db: Db,
    batch: usize,
}

impl ProjectionRunner {
    pub fn new(store: Arc<dyn EventStore>, db: Db) -> Self {
        ProjectionRunner {
            store,
            db,
            batch: 500,
        }
    }

    pub async fn checkpoint(&self) -> anyhow::Result<Position> {
        let row = with_db_read!(&self.db, |pool| {
            sqlx::query(
                "SELECT commit_pos, prepare_pos FROM projection_checkpoints WHERE name = $1",
            )
            .bind(EXECUTIONS_PROJECTION)
            .fetch_optional(pool)
            .await?
            .map(|r| -> Result<Position, sqlx::Error> {
                Ok(Position {
                    commit: r.try_get::<i64, _>("commit_pos")? as u64,
                    prepare: r.try_get::<i64, _>("prepare_pos")? as u64,
                })
            })
            .transpose()?
        });
        Ok(row.unwrap_or(Position::START))
    }

    /// Applies at most one batch of new events. Returns how many events were read.
    pub async fn run_once(&self) -> anyhow::Result<usize> {
        let after = self.checkpoint().await?;
        let events = self.store.read_all(after, self.batch).await?;
        let Some(last) = events.last().map(|e| e.position) else {
            return Ok(0);
        };
        let groups = group_by_stream(&events);
        let now = timestamp(Utc::now());
        with_db!(&self.db, |pool| {
            let mut tx = pool.begin().await?;
            for (stream, stream_events) in &groups {
                let id = &stream[crate::events::execution::STREAM_PREFIX.len()..];
                let existing: Option<ExecutionRow> = load_row!(&mut *tx, id)?;
                let folded = stream_events
                    .iter()
                    .fold(existing.clone(), |row, e| apply(row, e));
                if folded != existing
                    && let Some(row) = &folded
                {
                    upsert_row!(&mut *tx, row)?;
                }
            }
            sqlx::query(CHECKPOINT_UPSERT)
                .bind(EXECUTIONS_PROJECTION)
                .bind(last.commit as i64)
                .bind(last.prepare as i64)
                .bind(&now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(events.len())
    }

    /// Applies batches until the projection has read everything visible now.
    pub async fn catch_up(&self) -> anyhow::Result<usize> {
        let mut total = 0;
        loop {
            let n = self.run_once().await?;
            total += n;
            if n < self.batch {
                return Ok(total);
            }
        }
    }

    /// Follows the store until `shutdown` turns true, then catches up one last time.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut changes = self.store.changes();
        loop {
            if let Err(e) = self.catch_up().await {
                tracing::warn!("projection {EXECUTIONS_PROJECTION} failed, will retry: {e:#}");
            }
            if *shutdown.borrow() {
                return;
            }
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        // The store is gone; rely on the fallback tick.
                        changes = self.store.changes();
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

/// Execution streams in first-seen order, each with its events in order.
fn group_by_stream(events: &[RecordedEvent]) -> Vec<(String, Vec<&RecordedEvent>)> {
    let mut groups: Vec<(String, Vec<&RecordedEvent>)> = Vec::new();
    let mut index = std::collections::HashMap::new();
    for event in events.iter().filter(|e| is_execution_stream(&e.stream_id)) {
        let i = *index.entry(event.stream_id.as_str()).or_insert_with(|| {
            groups.push((event.stream_id.clone(), Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push(event);
    }
    groups
}
