//! Write-behind for rebuilds. A busy service interleaves executions: an execution's
//! four events lie thousands of events apart, so batch by batch each event lands on a
//! row of its own, and each row is loaded and written once per event. A rebuild folds
//! its read batches into rows held in memory instead, and writes them — each changed
//! row once, with the checkpoint, in one transaction — when [`FLUSH_ROWS`] rows have
//! changed, before a `TenantErased`, and at the end.
//!
//! A flush runs in a task of its own while the next events are folded; the one after
//! it waits for it. Rows stay in memory until the flush after the one that wrote them
//! (two generations), so an execution whose events straddle a flush is not loaded
//! again, and nothing is loaded while the flush that writes it is still running; older
//! rows are loaded when an event needs them, except those [`RowsWritten`] says were
//! never written.
//!
//! What a flush guarantees is what a batch does (`batch.rs`): it applies only if the
//! checkpoint is still where the last flush left it, else it reports the race (`None`)
//! and the caller starts again from the checkpoint. The shadow is served to no one, so
//! its checkpoint lagging the events folded in memory is harmless: an interrupted
//! rebuild resumes from the last flush. On SQLite a flush holds the one writer while it
//! writes its rows: up to 10,000, where a 5,000-event batch wrote at most 5,000. So a
//! flush builds its statements first and then begins its transaction (`writes.rs`).
//!
//! A running service's own rebuild is [paced](Pace): after each flush it pauses for
//! three times as long as the flush held the database. Folding goes on only until the
//! next flush's rows are ready, and reading only until the fold stops taking batches,
//! so the pause leaves the service the database and the CPU (on a small machine the
//! CPU is what runs out first: pausing only the writes helped webhooks little).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinHandle;

use super::batch::{self, Target};
use super::model::Projection;
use super::rows;
use super::sql;
use super::writes::Writes;
use super::written::RowsWritten;
use crate::db::Db;
use crate::events::{Position, RecordedEvent};

/// Changed rows held before a flush writes them (and as many again kept unchanged).
pub const FLUSH_ROWS: usize = 10_000;

/// Rows by key (`None`: the row is not, or no longer, in the table).
type Rows<R> = HashMap<String, Option<R>>;

/// How a rebuild shares the database with a service running beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Each flush as soon as its rows are folded (a command, a benchmark, `verify`).
    Full,
    /// After each flush, a pause `n` times as long as it held the database.
    Yielding(u32),
}

impl Pace {
    /// A running service's own rebuild: its flushes hold the database at most a
    /// quarter of the time. Webhooks at 2,000/s during a rebuild of 1,000,000 events
    /// answered in 10–669 ms at the median without it and 4–8 ms with it, on SQLite
    /// and PostgreSQL; the rebuild took 1.4–1.8 times as long (BENCHMARKS.md, item 46).
    pub const BESIDE_SERVICE: Pace = Pace::Yielding(3);

    /// When the pause after a flush that held the database over `held` ends.
    pub fn next_flush(self, held: Window) -> Instant {
        match self {
            Pace::Full => held.ended,
            Pace::Yielding(n) => held.ended + (held.ended - held.began) * n,
        }
    }
}

/// From when to when a flush held the database (its transaction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub began: Instant,
    pub ended: Instant,
}

/// Rows folded ahead of the table they belong to.
pub struct WriteBehind<P: Projection> {
    /// Rows changed since the last flush began.
    changed: Rows<P::Row>,
    /// The rows the last flush writes (or wrote).
    flushed: Arc<Rows<P::Row>>,
    /// The last flush, if it may still be running: when it held the database (`None`:
    /// it did not apply), and how many events it writes.
    in_flight: Option<(JoinHandle<anyhow::Result<Option<Window>>>, u64)>,
    /// The last flush known to be done.
    last_flush: Option<Window>,
    pace: Pace,
    written: RowsWritten,
    /// Where the target's checkpoint is once the last flush is done.
    checkpoint: Position,
    /// The last event folded.
    folded: Position,
    /// Events folded since the last flush began.
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
            flushed: Arc::default(),
            in_flight: None,
            last_flush: None,
            pace: Pace::Full,
            written,
            checkpoint: from,
            folded: from,
            pending: 0,
            flush_rows,
        }
    }

    /// Spaces the flushes out as `pace` says.
    pub fn paced(mut self, pace: Pace) -> Self {
        self.pace = pace;
        self
    }

    /// When the last flush known to be done held the database.
    pub fn last_flush(&self) -> Option<Window> {
        self.last_flush
    }

    /// Events folded in memory and not yet known to be written.
    pub fn pending(&self) -> u64 {
        self.pending + self.in_flight.as_ref().map_or(0, |(_, events)| *events)
    }

    /// Folds `events` (the next ones after those folded so far) in memory, flushing as
    /// it goes. Returns how many events are now known to be written, or `None` if a
    /// flush found the checkpoint moved.
    pub async fn fold(
        &mut self,
        db: &Db,
        target: &Target,
        events: &[RecordedEvent],
    ) -> anyhow::Result<Option<u64>> {
        let mut written = 0;
        for (run, erasure) in batch::split_at_erasures(events) {
            self.fold_run(db, &target.table, run).await?;
            if let Some((position, _)) = erasure {
                // The erasure itself is folded by the flush that deletes the rows.
                self.folded = position;
                self.pending += 1;
            }
            let erased = erasure.map(|(_, tenant)| tenant);
            let flushed = if erased.is_some() {
                self.flush(db, target, erased).await?
            } else if self.changed.len() >= self.flush_rows {
                self.start_flush(db, target).await?
            } else {
                Some(0)
            };
            let Some(n) = flushed else {
                return Ok(None);
            };
            written += n;
        }
        Ok(Some(written))
    }

    /// Writes every row folded so far, with the checkpoint at the last event folded
    /// (after deleting `erased`'s rows, if given), and waits for it. Returns how many
    /// events this wrote, or `None` if the checkpoint had moved.
    pub async fn flush(
        &mut self,
        db: &Db,
        target: &Target,
        erased: Option<&str>,
    ) -> anyhow::Result<Option<u64>> {
        let Some(before) = self.settle().await? else {
            return Ok(None);
        };
        self.spawn_flush(db, target, erased);
        if erased.is_some() {
            // Rows of the erased tenant are gone: forget every row rather than sort.
            self.flushed = Arc::default();
        }
        Ok(self.settle().await?.map(|n| n + before))
    }

    /// Waits for the last flush, then starts the next one without waiting for it.
    async fn start_flush(&mut self, db: &Db, target: &Target) -> anyhow::Result<Option<u64>> {
        let settled = self.settle().await?;
        if settled.is_some() {
            self.spawn_flush(db, target, None);
        }
        Ok(settled)
    }

    /// Waits for the flush in flight: how many events it wrote, `None` if it raced.
    async fn settle(&mut self) -> anyhow::Result<Option<u64>> {
        let Some((task, events)) = self.in_flight.take() else {
            return Ok(Some(0));
        };
        let Some(held) = task.await?? else {
            return Ok(None);
        };
        self.last_flush = Some(held);
        Ok(Some(events))
    }

    fn spawn_flush(&mut self, db: &Db, target: &Target, erased: Option<&str>) {
        if self.folded == self.checkpoint {
            return;
        }
        let rows = Arc::new(std::mem::take(&mut self.changed));
        let deletes: Vec<String> = (rows.iter())
            .filter(|(key, row)| row.is_none() && self.written.may_exist(key))
            .map(|(key, _)| key.clone())
            .collect();
        self.written.record(
            rows.iter()
                .filter(|(_, row)| row.is_some())
                .map(|(key, _)| key.as_str()),
        );
        let flush = Flush::<P> {
            db: db.clone(),
            target: target.clone(),
            rows: rows.clone(),
            deletes,
            erased: erased.map(str::to_owned),
            from: self.checkpoint,
            to: self.folded,
            pace: self.pace,
        };
        self.in_flight = Some((tokio::spawn(flush.run()), std::mem::take(&mut self.pending)));
        self.checkpoint = self.folded;
        self.flushed = rows;
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
        // Rows not in memory were written by a flush that is done: the one in flight
        // writes only rows still in `flushed`. So a plain read finds them.
        let mut stored: HashMap<String, P::Row> = rows::read_rows(db, table, &missing).await?;
        for (key, event, recorded) in decoded {
            let row = match self.changed.remove(&key) {
                Some(row) => row,
                None => match stored.remove(&key) {
                    Some(row) => Some(row),
                    None => self.flushed.get(&key).cloned().flatten(),
                },
            };
            self.changed.insert(key, P::apply(row, event, recorded));
        }
        self.folded = last.position;
        self.pending += run.len() as u64;
        Ok(())
    }
}

/// One flush, run by a task of its own.
struct Flush<P: Projection> {
    db: Db,
    target: Target,
    rows: Arc<Rows<P::Row>>,
    deletes: Vec<String>,
    erased: Option<String>,
    /// Where the checkpoint must be for the flush to apply, and where it moves it.
    from: Position,
    to: Position,
    pace: Pace,
}

impl<P: Projection> Flush<P> {
    /// When it held the database (`None`: the checkpoint had moved, nothing was written).
    async fn run(self) -> anyhow::Result<Option<Window>> {
        let started = Instant::now();
        let table = &self.target.table;
        let upserts: Vec<&P::Row> = self.rows.values().flatten().collect();
        let deletes: Vec<&str> = self.deletes.iter().map(String::as_str).collect();
        // Built before the transaction begins: on SQLite it holds the one writer.
        let writes = batch::changes(Writes::on(&self.db), table, upserts, &deletes);
        let built = Instant::now();
        let Some(mut tx) = batch::begin_at(&self.db, &self.target, self.from).await? else {
            return Ok(None);
        };
        let began = Instant::now();
        writes.run(&mut tx).await?;
        if let Some(tenant) = &self.erased {
            rows::delete_tenant(&mut tx, table, tenant).await?;
        }
        sql::advance_checkpoint(&mut tx, &self.target.checkpoint, self.to, P::VERSION).await?;
        tx.commit().await?;
        let held = Window {
            began,
            ended: Instant::now(),
        };
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        tracing::debug!(
            table,
            rows = self.rows.len(),
            build_ms = ms(built - started),
            wait_ms = ms(began - built),
            held_ms = ms(held.ended - held.began),
            "rebuild flush written"
        );
        // The flush is done once the pause is over: the fold that waits for it, and
        // the reads that wait for the fold, pause with it.
        tokio::time::sleep_until(self.pace.next_flush(held).into()).await;
        Ok(Some(held))
    }
}
