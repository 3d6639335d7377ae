//! Rebuilding a read model without downtime: replay the whole history into a shadow
//! table (`{name}__rebuild`) while the service keeps serving — and the runner keeps
//! updating — the live one; then, in one transaction that holds the live checkpoint's
//! lock, apply the last few events to the shadow, swap it in under the live name and
//! move the live checkpoint (with the new version) to where the shadow got. On SQLite
//! the replaced table is set aside by the swap and removed after it in short steps.
//!
//! Speed: events are read 5,000 at a time by a task that runs one batch ahead of the
//! writer; the writer folds them into rows held in memory and writes the changed rows
//! behind, 10,000 at a time, with one multi-row statement (`unnest` on PostgreSQL) and
//! the checkpoint in one transaction (`behind.rs`). An interrupted rebuild resumes from
//! its shadow's checkpoint.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::batch::{self, Target};
pub use super::behind::Pace;
use super::behind::WriteBehind;
use super::model::{Projection, Record};
use super::shadow;
use super::sql::{self, Tx};
use super::written::RowsWritten;
use crate::db::Db;
use crate::events::{EventStore, Position, RecordedEvent};

/// Events per batch while rebuilding.
pub const REBUILD_BATCH: usize = 5_000;

/// Where a rebuild stands, for progress reports.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
    pub elapsed: Duration,
}

impl Progress {
    pub fn rate(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64().max(1e-3)
    }

    pub fn eta(&self) -> Option<Duration> {
        let rate = self.rate();
        (rate > 0.0)
            .then(|| Duration::from_secs_f64(self.total.saturating_sub(self.done) as f64 / rate))
    }
}

/// What a finished rebuild did.
#[derive(Debug, Clone, Copy)]
pub struct RebuildReport {
    /// Events replayed by this run (a resumed rebuild counts only its own).
    pub events: u64,
    pub elapsed: Duration,
    /// Where the live checkpoint now is.
    pub position: Position,
}

impl RebuildReport {
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-3)
    }
}

pub type ProgressFn<'a> = &'a (dyn Fn(Progress) + Send + Sync);

/// Rebuilds projection `P` and swaps the result in, its flushes spaced out as `pace` says.
pub async fn rebuild<P: Projection>(
    store: &Arc<dyn EventStore>,
    db: &Db,
    pace: Pace,
    progress: ProgressFn<'_>,
) -> anyhow::Result<RebuildReport> {
    let started = Instant::now();
    let shadow = Target::beside(P::NAME, "rebuild");
    let key = <P::Row as Record>::COLUMNS[0].name;
    let from = shadow::prepare(db, P::NAME, key, &shadow, P::VERSION, true).await?;
    let remaining = store.count_after(from, u64::MAX).await?;
    let already = if from == Position::START {
        0
    } else {
        store.count_after(Position::START, u64::MAX).await? - remaining
    };
    let total = already + remaining;
    let events = fill::<P>(store, db, &shadow, None, pace, |done| {
        progress(Progress {
            done: already + done,
            total: total.max(already + done),
            elapsed: started.elapsed(),
        })
    })
    .await?;
    let swapped = swap::<P>(store, db, &shadow, pace).await?;
    let retired = shadow::retire(db, P::NAME, shadow::RETIRE_ROWS, pace).await?;
    let events = events + swapped.events;
    progress(Progress {
        done: already + events,
        total: already + events,
        elapsed: started.elapsed(),
    });
    tracing::info!(
        projection = P::NAME,
        events,
        swap_ms = swapped.locked.as_millis() as u64,
        replaced_rows = retired.rows,
        "read model rebuilt and swapped in (swap_ms: how long the live table was locked)"
    );
    Ok(RebuildReport {
        events,
        elapsed: started.elapsed(),
        position: swapped.position,
    })
}

/// What [`swap`] did.
#[derive(Debug, Clone, Copy)]
pub struct Swapped {
    /// Events applied to the shadow under the live lock (those that came during the fill).
    pub events: u64,
    /// Where the live checkpoint now is.
    pub position: Position,
    /// How long the live table was locked.
    pub locked: Duration,
}

/// Makes a filled `shadow` of `P` durable and indexed, then, in one transaction that
/// holds the live checkpoint's lock, applies the events that came since the fill, puts
/// the shadow in place of the live table and moves the live checkpoint (with the new
/// version) to where the shadow got. On SQLite the replaced table is left aside for
/// [`shadow::retire`].
pub async fn swap<P: Projection>(
    store: &Arc<dyn EventStore>,
    db: &Db,
    shadow: &Target,
    pace: Pace,
) -> anyhow::Result<Swapped> {
    let live = Target::live(P::NAME);
    shadow::make_durable(db, shadow).await?;
    shadow::index_before_swap(db, P::NAME, shadow).await?;
    // What an earlier rebuild set aside and did not get to remove, out of the swap's way.
    shadow::retire(db, P::NAME, shadow::RETIRE_ROWS, pace).await?;

    let mut tx = Tx::begin(db, &[&live.checkpoint, &shadow.checkpoint]).await?;
    let locked = Instant::now();
    // The last events, under the live lock: nothing reaches the live table meanwhile.
    let mut position = sql::read_checkpoint_in(&mut tx, &shadow.checkpoint)
        .await?
        .map_or(Position::START, |c| c.position);
    let mut events = 0;
    loop {
        let read = store.read_all(position, REBUILD_BATCH).await?;
        let Some(last) = read.last().map(|e| e.position) else {
            break;
        };
        batch::fold_into::<P>(&mut tx, &shadow.table, &read).await?;
        events += read.len() as u64;
        position = last;
    }
    shadow::swap_in(&mut tx, P::NAME, &shadow.table).await?;
    sql::set_checkpoint(&mut tx, &live.checkpoint, position, P::VERSION).await?;
    sql::delete_checkpoint(&mut tx, &shadow.checkpoint).await?;
    tx.commit().await?;
    Ok(Swapped {
        events,
        position,
        locked: locked.elapsed(),
    })
}

/// Replays events into `target` from its checkpoint until it has read everything
/// visible (or up to `stop`, inclusive), folding them in memory and writing the rows
/// behind ([`WriteBehind`]). Returns how many events it applied.
pub async fn fill<P: Projection>(
    store: &Arc<dyn EventStore>,
    db: &Db,
    target: &Target,
    stop: Option<Position>,
    pace: Pace,
    on_batch: impl Fn(u64),
) -> anyhow::Result<u64> {
    let mut done = 0u64;
    let mut raced = false;
    'restart: loop {
        let from = sql::read_checkpoint(db, &target.checkpoint)
            .await?
            .map_or(Position::START, |c| c.position);
        // A target at the start holds no rows (rows and checkpoint commit together), and
        // while this writer's flushes find the checkpoint where it left it, it is the
        // only one writing: it knows every row there. After a race it knows nothing.
        let written = if from == Position::START && !raced {
            RowsWritten::from_empty()
        } else {
            RowsWritten::unknown()
        };
        let mut behind = WriteBehind::<P>::new(from, written).paced(pace);
        let (tx, mut batches) = mpsc::channel(4);
        let reader = tokio::spawn(read_ahead(store.clone(), from, stop, tx));
        let _abort = AbortOnDrop(reader);
        while let Some(read) = batches.recv().await {
            let events = read?;
            let Some(flushed) = behind.fold(db, target, &events).await? else {
                // Someone else moved the checkpoint (another rebuilder sharing the
                // shadow): read again from where it is now.
                raced = true;
                continue 'restart;
            };
            done += flushed;
            on_batch(done + behind.pending());
        }
        let Some(flushed) = behind.flush(db, target, None).await? else {
            raced = true;
            continue 'restart;
        };
        return Ok(done + flushed);
    }
}

type Read = anyhow::Result<Vec<RecordedEvent>>;

/// Reads batches one ahead of the writer, until a short batch says the end is reached.
async fn read_ahead(
    store: Arc<dyn EventStore>,
    mut after: Position,
    stop: Option<Position>,
    out: mpsc::Sender<Read>,
) {
    loop {
        let mut events = match store.read_all(after, REBUILD_BATCH).await {
            Ok(events) => events,
            Err(e) => {
                let _ = out.send(Err(e.into())).await;
                return;
            }
        };
        let full = events.len() == REBUILD_BATCH;
        if let Some(stop) = stop {
            events.retain(|e| e.position <= stop);
        }
        let reached_stop = stop.is_some_and(|s| events.last().is_none_or(|e| e.position >= s));
        let Some(last) = events.last().map(|e| e.position) else {
            return;
        };
        if out.send(Ok(events)).await.is_err() {
            return;
        }
        if !full || reached_stop {
            return;
        }
        after = last;
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
