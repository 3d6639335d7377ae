//! The projection runner: keeps every read model up to date. Each projection has a
//! name, a version and a checkpoint; the runner catches each one up from its
//! checkpoint, then follows new events, woken by the store's change signal (with a
//! slow fallback tick: an aborted transaction, or a write by another process to a
//! SQLite file, sends no signal). Rows and checkpoint are written in one transaction
//! per batch (`batch.rs`). Tests drive it with [`ProjectionRunner::run_once`].
//!
//! On start, a projection whose stored version differs from the code's is rebuilt in a
//! shadow table and swapped in (`rebuild.rs`) while the live one keeps being served.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use super::agents::AgentSummaries;
use super::batch::{self, Target};
use super::daily::DailyAgentStats;
use super::executions::Executions;
use super::model::Projection;
use super::rebuild::{self, ProgressFn, RebuildReport};
use super::shared_reads::SharedReads;
use super::sql;
use crate::db::Db;
use crate::events::{EventStore, Position};

pub const EXECUTIONS_PROJECTION: &str = Executions::NAME;

/// Pause between two passes while events keep coming (after a quiet spell, the first
/// event is applied at once). It bounds the commits the read models cost, whatever
/// the rate, for a few milliseconds of read-model lag.
const BUSY_GAP: Duration = Duration::from_millis(20);

/// Events per batch while following.
const FOLLOW_BATCH: usize = 500;

/// A projection behind a trait object, so the runner, the CLI and `verify` can hold
/// every projection in one list.
#[async_trait]
pub trait AnyProjection: Send + Sync {
    fn name(&self) -> &'static str;
    fn version(&self) -> u32;
    /// One batch into `target`: `Some(events applied)`, `None` if it raced.
    async fn run_once(
        &self,
        store: &dyn EventStore,
        db: &Db,
        target: &Target,
        batch: usize,
    ) -> anyhow::Result<Option<usize>>;
    async fn rebuild(
        &self,
        store: &Arc<dyn EventStore>,
        db: &Db,
        progress: ProgressFn<'_>,
    ) -> anyhow::Result<RebuildReport>;
    /// Replays everything up to `stop` into a fresh scratch table and returns every row
    /// that differs from the live rows given (see `audit::verify`).
    async fn replay_and_compare(
        &self,
        store: &Arc<dyn EventStore>,
        db: &Db,
        stop: Position,
        live: crate::audit::verify::LiveRows,
    ) -> anyhow::Result<Vec<crate::audit::verify::Difference>>;
    /// The live rows and checkpoint, read from one consistent snapshot.
    async fn snapshot(&self, db: &Db)
    -> anyhow::Result<(Position, crate::audit::verify::LiveRows)>;
}

struct Of<P>(PhantomData<fn() -> P>);

#[async_trait]
impl<P: Projection> AnyProjection for Of<P> {
    fn name(&self) -> &'static str {
        P::NAME
    }

    fn version(&self) -> u32 {
        P::VERSION
    }

    async fn run_once(
        &self,
        store: &dyn EventStore,
        db: &Db,
        target: &Target,
        batch: usize,
    ) -> anyhow::Result<Option<usize>> {
        batch::run_once::<P>(store, db, target, batch, None).await
    }

    async fn rebuild(
        &self,
        store: &Arc<dyn EventStore>,
        db: &Db,
        progress: ProgressFn<'_>,
    ) -> anyhow::Result<RebuildReport> {
        rebuild::rebuild::<P>(store, db, progress).await
    }

    async fn replay_and_compare(
        &self,
        store: &Arc<dyn EventStore>,
        db: &Db,
        stop: Position,
        live: crate::audit::verify::LiveRows,
    ) -> anyhow::Result<Vec<crate::audit::verify::Difference>> {
        crate::audit::verify::replay_and_compare::<P>(store, db, stop, live).await
    }

    async fn snapshot(
        &self,
        db: &Db,
    ) -> anyhow::Result<(Position, crate::audit::verify::LiveRows)> {
        crate::audit::verify::snapshot::<P>(db).await
    }
}

/// Every read model, in the order they are run.
pub fn all_projections() -> Vec<Arc<dyn AnyProjection>> {
    vec![
        Arc::new(Of::<Executions>(PhantomData)),
        Arc::new(Of::<AgentSummaries>(PhantomData)),
        Arc::new(Of::<DailyAgentStats>(PhantomData)),
    ]
}

/// The projection called `name`.
pub fn projection(name: &str) -> Option<Arc<dyn AnyProjection>> {
    all_projections().into_iter().find(|p| p.name() == name)
}

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

    /// Applies at most one batch of new events to every projection. Returns the most
    /// events any of them applied.
    pub async fn run_once(&self) -> anyhow::Result<usize> {
        let mut most = 0;
        for p in self.projections.iter() {
            let target = Target::live(p.name());
            let applied = p
                .run_once(self.store.as_ref(), &self.db, &target, self.batch)
                .await?;
            most = most.max(applied.unwrap_or(0));
        }
        Ok(most)
    }

    /// Applies batches until every projection has read everything visible now. The
    /// projections take turns, one batch each, so that those at the same checkpoint
    /// share each read ([`SharedReads`]).
    pub async fn catch_up(&self) -> anyhow::Result<usize> {
        let store = SharedReads::new(Arc::clone(&self.store));
        let mut total = 0;
        let mut behind: Vec<&Arc<dyn AnyProjection>> = self.projections.iter().collect();
        while !behind.is_empty() {
            let mut still = Vec::with_capacity(behind.len());
            for p in behind {
                let target = Target::live(p.name());
                match p.run_once(&store, &self.db, &target, self.batch).await? {
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
        loop {
            self.catch_up().await?;
            let mut behind = false;
            for p in self.projections.iter() {
                let at = sql::read_checkpoint(&self.db, p.name())
                    .await?
                    .map_or(Position::START, |c| c.position);
                behind |= at < position;
            }
            if !behind {
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

    /// Rebuilds every outdated projection (the live tables are served meanwhile).
    /// Returns the names rebuilt.
    pub async fn rebuild_outdated(&self) -> anyhow::Result<Vec<&'static str>> {
        let mut rebuilt = Vec::new();
        for p in self.outdated().await? {
            tracing::info!(
                projection = p.name(),
                version = p.version(),
                "version changed: rebuilding"
            );
            p.rebuild(&self.store, &self.db, &|_| {}).await?;
            rebuilt.push(p.name());
        }
        Ok(rebuilt)
    }

    /// Follows the store until `shutdown` turns true, then catches up one last time.
    /// Outdated projections are rebuilt beside it first.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let rebuilder = self.clone();
        let rebuild = tokio::spawn(async move {
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
                // Events keep coming: let them gather, so that each pass (a transaction
                // per projection) covers many of them.
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
