//! The registry: finds or starts the actor of an agent and hands it work.
//!
//! Agent actors are spread over a few arbiters (threads with their own event loop),
//! chosen by agent id, so one busy agent does not hold the others' threads.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::agent::{AgentActor, Enqueue, EnqueueError, Enqueued, Resume};
use super::run::{ExecutionDeps, Job};
use crate::domain::AgentId;

pub struct Registry {
    actors: Mutex<HashMap<AgentId, Addr<AgentActor>>>,
    arbiters: Vec<ArbiterHandle>,
    deps: Arc<ExecutionDeps>,
}

impl Registry {
    /// Must be called inside a running actix system.
    pub fn new(deps: Arc<ExecutionDeps>, threads: usize) -> Self {
        let arbiters = (0..threads.max(1))
            .map(|_| Arbiter::new().handle())
            .collect();
        Registry {
            actors: Mutex::new(HashMap::new()),
            arbiters,
            deps,
        }
    }

    /// Hands a webhook to its agent's actor. A full mailbox is answered at once with
    /// [`EnqueueError::Busy`], before anything is stored.
    pub async fn enqueue(&self, mut msg: Enqueue) -> Result<Enqueued, EnqueueError> {
        if self.deps.owned_count() >= self.deps.limits.in_flight {
            return Err(EnqueueError::Overloaded);
        }
        let (tx, rx) = oneshot::channel();
        msg.reply = Some(tx);
        let agent_id = msg.agent.agent_id;
        let addr = self.actor_for(agent_id);
        match addr.try_send(msg) {
            Ok(()) => {}
            Err(SendError::Full(_)) => return Err(EnqueueError::Busy),
            Err(SendError::Closed(msg)) => {
                // The actor stopped between lookup and send: start a fresh one, once.
                self.actors.lock().expect("registry lock").remove(&agent_id);
                match self.actor_for(agent_id).try_send(msg) {
                    Ok(()) => {}
                    Err(SendError::Full(_)) => return Err(EnqueueError::Busy),
                    Err(SendError::Closed(_)) => {
                        return Err(EnqueueError::Internal("agent actor is not running".into()));
                    }
                }
            }
        }
        rx.await.unwrap_or_else(|_| {
            Err(EnqueueError::Internal(
                "agent actor dropped the request".into(),
            ))
        })
    }

    /// Hands an unfinished execution to its agent's actor (no-op if this node has it).
    pub fn resume(&self, job: Job) {
        if self.deps.owns(&job.execution_id) {
            return;
        }
        let agent_id = job.agent.agent_id;
        if let Err(e) = self.actor_for(agent_id).try_send(Resume(job)) {
            // Mailbox full: the next sweep offers it again.
            tracing::debug!(%agent_id, "could not resume now: {e}");
        }
    }

    pub fn deps(&self) -> &Arc<ExecutionDeps> {
        &self.deps
    }

    fn actor_for(&self, agent_id: AgentId) -> Addr<AgentActor> {
        let mut actors = self.actors.lock().expect("registry lock");
        if let Some(addr) = actors.get(&agent_id).filter(|a| a.connected()) {
            return addr.clone();
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        agent_id.hash(&mut hasher);
        let arbiter = &self.arbiters[hasher.finish() as usize % self.arbiters.len()];
        let deps = self.deps.clone();
        let addr = AgentActor::start_in_arbiter(arbiter, move |ctx| {
            ctx.set_mailbox_capacity(deps.limits.queue);
            AgentActor::new(agent_id, deps)
        });
        actors.insert(agent_id, addr.clone());
        addr
    }

    /// Number of agent actors started so far.
    pub fn actor_count(&self) -> usize {
        self.actors.lock().expect("registry lock").len()
    }
}
