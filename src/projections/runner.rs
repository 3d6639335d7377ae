//! The projection runner: keeps every read model up to date. Each projection has a
//! name, a version and a checkpoint; the runner catches each one up from its
//! checkpoint, then follows new events, woken by the store's change signal (with a
//! slow fallback tick: an aborted transaction, or a write by another process to a
//! SQLite file, sends no signal). Rows and checkpoints are written in one transaction
//! per batch: one for every read model while they are level (`together.rs`), one per
//! read model while one catches up with the others (`batch.rs`). Tests drive it with
//! [`ProjectionRunner::catch_up`].
//!
//! On start, a projection whose stored version differs from the code's is rebuilt in a
//! shadow table and swapped in (`rebuild.rs`) while the live one keeps being served;
//! the rebuild runs on a thread of its own (`aside.rs`) and pauses after each write
//! (`Pace::BESIDE_SERVICE`). A table that an interrupted rebuild swapped out but did
//! not get to remove is removed first.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

pub use super::any::{AnyProjection, all_projections, projection};
use super::batch::{Applied, Target};
use super::executions::Executions;
use super::model::Projection;
use super::rebuild::Pace;
use super::shared_reads::SharedReads;
use super::{shadow, sql, together};
use crate::db::Db;
use crate::events::{EventStore, Position};

pub const EXECUTIONS_PROJECTION: &str = Executions::NAME;

/// Pause between two passes while events keep coming (after a quiet spell, the first
/// event is applied at once). It bounds the commits the read models cost, whatever
/// the rate, for a few milliseconds of read-model lag.
const BUSY_GAP: Duration = Duration::from_millis(20);

/// Events per batch while following.
const FOLLOW_BATCH: usize = 500;

#[derive(Clone)]
pub struct ProjectionRunner {
    store: Arc<dyn EventStore>,
    db: Db,
    batch: usize,
    projections: Arc<Vec<Arc<dyn AnyProjection>>>,
}

impl ProjectionRunner {
    pub fn new(store: Arc<dyn EventStore>, db: Db) -> Self {
        ProjectionRunner {
            store,
            db,
            batch: FOLLOW_BATCH,
            projections: Arc::new(all_projections()),
        }
    }

    /// The `agent_test_executions` checkpoint.
    pub async fn checkpoint(&self) -> anyhow::Result<Position> {
        Ok(sql::read_checkpoint(&self.db, EXECUTIONS_PROJECTION)
            .await?
            .map_or(Position::START, |c| c.position))
    }

    /// Applies batches until every projection has read everything visible now, and
    /// returns how many events were folded (into any of them). While the projections
    /// are level, each batch goes into all of them in one transaction
    /// ([`together::apply`]); one that is behind the others (new, or rebuilt and
    /// swapped in) first catches up with the one ahead, a batch of its own at a time.
    pub async fn catch_up(&self) -> anyhow::Result<usize> {
        let store = SharedReads::new(Arc::clone(&self.store));
        let names: Vec<&str> = self.projections.iter().map(|p| p.name()).collect();
        // A batch into every read model holds the writer (on SQLite, the one appends
        // share) for all of their folds at once: a third of the events keeps that hold
        // as short as one read model's batch was while catching up a backlog.
        let together = (self.batch / self.projections.len().max(1)).max(1);
        let mut total = 0;
        loop {
            let at = sql::read_positions(&self.db, &names).await?;
            let front = at.iter().copied().max().unwrap_or(Position::START);
            if at.iter().any(|p| *p != front) {
                let applied = self.level_up(&store, &at, front).await?;
                if applied == Some(0) {
                    // The front is past every event this store holds (its rows came
                    // from elsewhere): nothing to level up with, so each goes its own way.
                    return Ok(total + self.each_on_its_own(&store).await?);
                }
                total += applied.unwrap_or(0);
                continue;
            }
            let events = store.read_all(front, together).await?;
            let n = events.len();
            if let Applied::Done(_) =
                together::apply(&self.db, &self.projections, front, &events).await?
            {
                total += n;
                if n < together {
                    return Ok(total);
                }
            } // else raced (another node, a rebuild's swap): read again
        }
    }

    /// One batch, up to `front`, for each projection behind it. `None` if one raced.
    async fn level_up(
        &self,
        store: &SharedReads,
        at: &[Position],
        front: Position,
    ) -> anyhow::Result<Option<usize>> {
        let mut applied = 0;
        for (p, at) in self.projections.iter().zip(at) {
            if *at < front {
                let target = Target::live(p.name());
                match p
                    .run_once(store, &self.db, &target, self.batch, Some(front))
                    .await?
                {
                    Some(n) => applied += n,
                    None => return Ok(None),
                }
            }
        }
        Ok(Some(applied))
    }

    /// Every projection to the end of the store, each in batches of its own, taking
    /// turns so that those at the same checkpoint share each read.
    async fn each_on_its_own(&self, store: &SharedReads) -> anyhow::Result<usize> {
        let mut total = 0;
        let mut behind: Vec<&Arc<dyn AnyProjection>> = self.projections.iter().collect();
        while !behind.is_empty() {
            let mut still = Vec::with_capacity(behind.len());
            for p in behind {
                let target = Target::live(p.name());
                match p
                    .run_once(store, &self.db, &target, self.batch, None)
                    .await?
                {
                    None => still.push(p), // raced with a rebuild's swap: again
                    Some(n) => {
                        total += n;
                        if n >= self.batch {
                            still.push(p);
                        }
                    }
                }
            }
            behind = still;
        }
        Ok(total)
    }

    /// Catches every projection up to at least `position` (an event known to be stored),
    /// waiting for it to become readable if an older transaction still holds it back,
    /// and makes the read models durable up to there.
    pub async fn catch_up_to(&self, position: Position) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut changes = self.store.changes();
        let names: Vec<&str> = self.projections.iter().map(|p| p.name()).collect();
        loop {
            self.catch_up().await?;
            let at = sql::read_positions(&self.db, &names).await?;
            if at.iter().all(|at| *at >= position) {
                // Callers act on the rows being there (erasure answers that they are
                // gone): on disk, not only committed.
                sql::flush(&self.db, EXECUTIONS_PROJECTION).await?;
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!("projections did not reach {position} within 30s");
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), changes.changed()).await;
        }
    }

    /// Projections whose stored version is not the code's (they were written by another
    /// version of the fold). A projection that never ran is not outdated: it starts from
    /// the beginning anyway.
    pub async fn outdated(&self) -> anyhow::Result<Vec<Arc<dyn AnyProjection>>> {
        let mut outdated = Vec::new();
        for p in self.projections.iter() {
            if let Some(cp) = sql::read_checkpoint(&self.db, p.name()).await?
                && cp.version != p.version()
            {
                outdated.push(p.clone());
            }
        }
        Ok(outdated)
    }

    /// Rebuilds every outdated projection (the live tables are served meanwhile), once
    /// the tables a rebuild set aside and did not get to remove are gone.
    /// Returns the names rebuilt.
    pub async fn rebuild_outdated(&self) -> anyhow::Result<Vec<&'static str>> {
        self.remove_replaced(Pace::BESIDE_SERVICE).await?;
        let mut rebuilt = Vec::new();
        for p in self.outdated().await? {
            tracing::info!(
                projection = p.name(),
                version = p.version(),
                "version changed: rebuilding"
            );
            p.rebuild(&self.store, &self.db, Pace::BESIDE_SERVICE, &|_| {})
                .await?;
            rebuilt.push(p.name());
        }
        Ok(rebuilt)
    }

    /// Removes every table a rebuild's swap replaced and set aside that is still there
    /// (`shadow::retire`): a rebuild removes its own after the swap, unless it is
    /// interrupted first.
    pub async fn remove_replaced(&self, pace: Pace) -> anyhow::Result<()> {
        for p in self.projections.iter() {
            let retired = shadow::retire(&self.db, p.name(), shadow::RETIRE_ROWS, pace).await?;
            if retired.steps > 0 {
                tracing::info!(
                    projection = p.name(),
                    rows = retired.rows,
                    "removed the table a rebuild replaced"
                );
            }
        }
        Ok(())
    }

    /// Follows the store until `shutdown` turns true, then catches up one last time.
    /// Outdated projections are rebuilt beside it first.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let rebuilder = self.clone();
        // On a thread of its own: the group commit shares this one (`aside.rs`).
        let rebuild = super::aside::spawn(&self.db, async move {
            if let Err(e) = rebuilder.rebuild_outdated().await {
                tracing::error!(
                    "rebuilding outdated projections failed (retried at next start): {e:#}"
                );
            }
        });
        let mut changes = self.store.changes();
        let mut busy = false;
        loop {
            if busy {
                // Events keep coming: let them gather, so that each pass (one
                // transaction) covers many of them.
                tokio::time::sleep(BUSY_GAP).await;
            }
            match self.catch_up().await {
                Ok(applied) => busy = applied > 0,
                Err(e) => {
                    busy = false;
                    tracing::warn!("projections failed, will retry: {e:#}");
                }
            }
            if *shutdown.borrow() {
                rebuild.abort();
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

    pub fn projections(&self) -> &[Arc<dyn AnyProjection>] {
        &self.projections
    }
}
