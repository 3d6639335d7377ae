//! Every read model behind one trait object, so the runner, the CLI and `verify` can
//! hold them in one list.

use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;

use super::agents::AgentSummaries;
use super::batch::{self, Target};
use super::daily::DailyAgentStats;
use super::executions::Executions;
use super::model::Projection;
use super::rebuild::{self, Pace, ProgressFn, RebuildReport};
use super::sql::Tx;
use crate::audit::verify::{self, Difference, LiveRows};
use crate::db::Db;
use crate::events::{EventStore, Position, RecordedEvent};

/// A projection behind a trait object.
#[async_trait]
pub trait AnyProjection: Send + Sync {
    fn name(&self) -> &'static str;
    fn version(&self) -> u32;
    /// One batch (up to `stop`, inclusive, if given) into `target`, in a transaction
    /// of its own: `Some(events applied)`, `None` if it raced.
    async fn run_once(
        &self,
        store: &dyn EventStore,
        db: &Db,
        target: &Target,
        batch: usize,
        stop: Option<Position>,
    ) -> anyhow::Result<Option<usize>>;
    /// Folds `events` into `table` inside a transaction the caller holds (the caller
    /// checks and moves the checkpoint).
    async fn fold(&self, tx: &mut Tx, table: &str, events: &[RecordedEvent]) -> anyhow::Result<()>;
    async fn rebuild(
        &self,
        store: &Arc<dyn EventStore>,
        db: &Db,
        pace: Pace,
        progress: ProgressFn<'_>,
    ) -> anyhow::Result<RebuildReport>;
    /// Replays everything up to `stop` into a fresh scratch table and returns every row
    /// that differs from the live rows given (see `audit::verify`).
    async fn replay_and_compare(
        &self,
        store: &Arc<dyn EventStore>,
        db: &Db,
        stop: Position,
        live: LiveRows,
    ) -> anyhow::Result<Vec<Difference>>;
    /// The live rows and checkpoint, read from one consistent snapshot.
    async fn snapshot(&self, db: &Db) -> anyhow::Result<(Position, LiveRows)>;
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
        stop: Option<Position>,
    ) -> anyhow::Result<Option<usize>> {
        batch::run_once::<P>(store, db, target, batch, stop).await
    }

    async fn fold(&self, tx: &mut Tx, table: &str, events: &[RecordedEvent]) -> anyhow::Result<()> {
        batch::fold_into::<P>(tx, table, events).await
    }

    async fn rebuild(
        &self,
        store: &Arc<dyn EventStore>,
        db: &Db,
        pace: Pace,
        progress: ProgressFn<'_>,
    ) -> anyhow::Result<RebuildReport> {
        rebuild::rebuild::<P>(store, db, pace, progress).await
    }

    async fn replay_and_compare(
        &self,
        store: &Arc<dyn EventStore>,
        db: &Db,
        stop: Position,
        live: LiveRows,
    ) -> anyhow::Result<Vec<Difference>> {
        verify::replay_and_compare::<P>(store, db, stop, live).await
    }

    async fn snapshot(&self, db: &Db) -> anyhow::Result<(Position, LiveRows)> {
        verify::snapshot::<P>(db).await
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
