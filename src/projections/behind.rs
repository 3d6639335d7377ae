//! Write-behind for rebuilds. A busy service interleaves executions: an execution's
//! four events lie thousands of events apart, so batch by batch each event lands on a
//! row of its own, and each row is loaded and written once per event. A rebuild folds
//! its read batches into rows held in memory instead, and writes them — each changed
//! row once, with the checkpoint, in one transaction — when [`FLUSH_ROWS`] rows have
//! changed, before a `TenantErased`, and at the end.
//!
//! Rows stay in memory for one flush after they were written (two generations), so an
//! execution whose events straddle a flush is not loaded again; older ones are loaded
//! when an event needs them, except those [`RowsWritten`] says were never written.
//!
//! What a flush guarantees is what a batch does (`batch.rs`): it applies only if the
//! checkpoint is still where the last flush left it, else it reports
//! [`Applied::Raced`](batch::Applied::Raced) and the caller starts again from the checkpoint. The shadow is
//! served to no one, so its checkpoint lagging the events folded in memory is harmless:
//! an interrupted rebuild resumes from the last flush.

use std::collections::HashMap;

use super::batch::{self, Target};
use super::model::{Projection, Record};
use super::rows;
use super::sql::{self, Tx};
use super::written::RowsWritten;
use crate::db::Db;
use crate::events::{Position, RecordedEvent};

/// Changed rows held before a flush writes them (and as many again kept unchanged).
pub const FLUSH_ROWS: usize = 10_000;

/// Rows folded ahead of the table they belong to.
pub struct WriteBehind<P: Projection> {
    /// Rows changed since the last flush (`None`: the fold removed the row).
    changed: HashMap<String, Option<P::Row>>,
    /// Rows as the last flush left them (`None`: not in the table).
    flushed: HashMap<String, Option<P::Row>>,
    written: RowsWritten,
    /// Where the target's checkpoint is: the last event the last flush covered.
    checkpoint: Position,
    /// The last event folded.
    folded: Position,
    /// Events folded since the last flush.
    pending: u64,
    flush_rows: usize,
}

impl<P: Projection> WriteBehind<P> {
    /// For a target whose checkpoint is at `from`; `written` says which rows it may hold.
    pub fn new(from: Position, written: RowsWritten) -> Self {
        Self::flushing_at(from, written, FLUSH_ROWS)
    }

    /// Flushing once `flush_rows` rows have changed (tests use tiny values).
    pub fn flushing_at(from: Position, written: RowsWritten, flush_rows: usize) -> Self {
        WriteBehind {
            changed: HashMap::new(),
            flushed: HashMap::new(),
            written,
            checkpoint: from,
            folded: from,
            pending: 0,
            flush_rows,
        }
    }

    /// Events folded in memory and not yet written.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// Folds `events` (the next ones after those folded so far) in memory, flushing as
    /// it goes. Returns how many events this made durable, or `None` if a flush raced.
    pub async fn fold(
        &mut self,
        db: &Db,
        target: &Target,
        events: &[RecordedEvent],
    ) -> anyhow::Result<Option<u64>> {
        let mut flushed = 0;
        for (run, erasure) in batch::split_at_erasures(events) {
            self.fold_run(db, &target.table, run).await?;
            if let Some((position, _)) = erasure {
                // The erasure itself is folded by the flush that deletes the rows.
                self.folded = position;
                self.pending += 1;
            }
            if erasure.is_some() || self.changed.len() >= self.flush_rows {
                let erased = erasure.map(|(_, tenant)| tenant);
                let Some(n) = self.flush(db, target, erased).await? else {
                    return Ok(None);
                };
                flushed += n;
            }
        }
        Ok(Some(flushed))
    }

    /// Writes the rows changed since the last flush and moves the checkpoint to the
    /// last event folded (after deleting `erased`'s rows, if given). Returns how many
    /// events it made durable, or `None` if the checkpoint had moved.
    pub async fn flush(
        &mut self,
        db: &Db,
        target: &Target,
        erased: Option<&str>,
    ) -> anyhow::Result<Option<u64>> {
        if self.folded == self.checkpoint {
            return Ok(Some(0));
        }
        let mut tx = Tx::begin_relaxed(db, &[&target.checkpoint]).await?;
        let current = sql::read_checkpoint_in(&mut tx, &target.checkpoint)
            .await?
            .map_or(Position::START, |c| c.position);
        if current != self.checkpoint {
            return Ok(None); // rolled back on drop
        }
        let mut upserts: Vec<&P::Row> = self.changed.values().flatten().collect();
        upserts.sort_unstable_by(|a, b| a.key().cmp(b.key())); // stable lock order
        let deletes: Vec<&str> = (self.changed.iter())
            .filter(|(key, row)| row.is_none() && self.written.may_exist(key))
            .map(|(key, _)| key.as_str())
            .collect();
        rows::upsert_rows(&mut tx, &target.table, &upserts).await?;
        rows::delete_keys::<P::Row>(&mut tx, &target.table, &deletes).await?;
        if let Some(tenant) = erased {
            rows::delete_tenant(&mut tx, &target.table, tenant).await?;
        }
        sql::advance_checkpoint(&mut tx, &target.checkpoint, self.folded, P::VERSION).await?;
        tx.commit().await?;
        self.written.record(upserts.iter().map(|row| row.key()));
        self.checkpoint = self.folded;
        self.flushed = std::mem::take(&mut self.changed);
        if erased.is_some() {
            // Rows of the erased tenant are gone: forget every row rather than sort.
            self.flushed.clear();
        }
        Ok(Some(std::mem::take(&mut self.pending)))
    }

    async fn fold_run(
        &mut self,
        db: &Db,
        table: &str,
        run: &[RecordedEvent],
    ) -> anyhow::Result<()> {
        let Some(last) = run.last() else {
            return Ok(());
        };
        let decoded = batch::decode::<P>(run);
        let mut missing: Vec<&str> = (decoded.iter())
            .map(|(key, _, _)| key.as_str())
            .filter(|key| {
                !self.changed.contains_key(*key)
                    && !self.flushed.contains_key(*key)
                    && self.written.may_exist(key)
            })
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            let mut tx = Tx::begin_relaxed(db, &[]).await?;
            let mut stored: HashMap<String, P::Row> =
                rows::load_rows(&mut tx, table, &missing).await?;
            drop(tx); // only read
            for key in missing {
                let row = stored.remove(key);
                self.flushed.insert(key.to_owned(), row);
            }
        }
        for (key, event, recorded) in decoded {
            let row = match self.changed.remove(&key) {
                Some(row) => row,
                None => self.flushed.remove(&key).flatten(),
            };
            self.changed.insert(key, P::apply(row, event, recorded));
        }
        self.folded = last.position;
        self.pending += run.len() as u64;
        Ok(())
    }
}
