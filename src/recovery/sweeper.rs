//! The sweeper: heartbeat, find orphaned executions, hand them to their actors.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use super::nodes;
use crate::actors::{ExecutionState, Job, Registry};
use crate::catalog::{AgentRecord, agents};
use crate::db::Db;
use crate::domain::{AgentId, ExecutionId};
use crate::events::EventStore;
use crate::events::execution::stream_name;

/// Orphans looked at per sweep (the rest wait for the next one).
const BATCH: i64 = 500;

#[derive(Clone)]
pub struct Sweeper {
    pub db: Db,
    pub store: Arc<dyn EventStore>,
    pub registry: Arc<Registry>,
    pub node_id: String,
    pub interval: Duration,
    /// A node whose heartbeat is older than this is taken for dead.
    pub node_timeout: Duration,
}

impl Sweeper {
    /// One heartbeat and one sweep. Returns how many executions were resumed.
    pub async fn sweep_once(&self) -> anyhow::Result<usize> {
        let now = Utc::now();
        nodes::heartbeat(&self.db, &self.node_id, now).await?;
        let alive_since = now - self.node_timeout;
        let orphans = nodes::orphans(&self.db, &self.node_id, now, alive_since, BATCH).await?;
        let deps = self.registry.deps();
        let mut agents_seen: HashMap<String, Option<Arc<AgentRecord>>> = HashMap::new();
        let mut resumed = 0;
        for (execution_id, agent_id) in orphans {
            let Ok(id) = ExecutionId::parse(&execution_id) else {
                continue;
            };
            if deps.owns(&id) {
                continue;
            }
            let events = self
                .store
                .read_stream(&stream_name(id.as_uuid()), 0, 10_000)
                .await?;
            let Some(state) = ExecutionState::fold(&events) else {
                continue;
            };
            if state.terminal {
                continue;
            }
            let agent = match agents_seen.get(&agent_id) {
                Some(agent) => agent.clone(),
                None => {
                    let agent = match AgentId::parse(&agent_id) {
                        Ok(aid) => agents::get(&self.db, &aid).await?.map(Arc::new),
                        Err(_) => None,
                    };
                    agents_seen.insert(agent_id.clone(), agent.clone());
                    agent
                }
            };
            let Some(agent) = agent else {
                tracing::warn!(%execution_id, %agent_id, "unfinished execution of an unknown agent");
                continue;
            };
            tracing::info!(%execution_id, "resuming an unfinished execution");
            self.registry.resume(Job {
                execution_id: id,
                agent,
                state,
            });
            resumed += 1;
        }
        Ok(resumed)
    }

    /// Sweeps every `interval` until `shutdown` turns true, then leaves the node table.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.sweep_once().await {
                tracing::warn!("recovery sweep failed, will retry: {e:#}");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = shutdown.changed() => break,
            }
        }
        if let Err(e) = nodes::remove(&self.db, &self.node_id).await {
            tracing::warn!("could not leave the node table: {e}");
        }
    }
}
