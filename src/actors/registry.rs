//! The registry: finds or starts the actor of an agent and hands it work.
//!
//! Agent actors are spread over a few arbiters (threads with their own event loop),
//! chosen by agent id, so one busy agent does not hold the others' threads.
//!
//! Idle actors are let go: about once per idle period, the registry drops its address
//! of every actor that has had nothing queued or running for that long (`Limits::
//! idle_after`). An actor with no address left and no work stops (actix), freeing its
//! memory; the agent's next webhook starts a new one. A webhook racing with the drop
//! still reaches the old actor through the address it already holds.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::agent::{Activity, AgentActor, Enqueue, EnqueueError, Enqueued, Resume};
use super::run::{ExecutionDeps, Job};
use crate::domain::AgentId;

struct Actors {
    by_agent: HashMap<AgentId, (Addr<AgentActor>, Arc<Activity>)>,
    last_sweep: Instant,
}

pub struct Registry {
    actors: Mutex<Actors>,
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
            actors: Mutex::new(Actors {
                by_agent: HashMap::new(),
                last_sweep: Instant::now(),
            }),
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
                self.actors
                    .lock()
                    .expect("registry lock")
                    .by_agent
                    .remove(&agent_id);
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
        let idle_after = self.deps.limits.idle_after;
        if actors.last_sweep.elapsed() >= idle_after {
            actors.last_sweep = Instant::now();
            actors
                .by_agent
                .retain(|_, (addr, activity)| addr.connected() && !activity.idle_for(idle_after));
        }
        if let Some((addr, _)) = actors
            .by_agent
            .get(&agent_id)
            .filter(|(a, _)| a.connected())
        {
            return addr.clone();
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        agent_id.hash(&mut hasher);
        let arbiter = &self.arbiters[hasher.finish() as usize % self.arbiters.len()];
        let deps = self.deps.clone();
        let activity = Arc::new(Activity::new());
        let shared = Arc::clone(&activity);
        let addr = AgentActor::start_in_arbiter(arbiter, move |ctx| {
            ctx.set_mailbox_capacity(deps.limits.queue);
            AgentActor::new(agent_id, deps, shared)
        });
        actors.by_agent.insert(agent_id, (addr.clone(), activity));
        addr
    }

    /// Agent actors the registry holds (started and not let go).
    pub fn actor_count(&self) -> usize {
        self.actors.lock().expect("registry lock").by_agent.len()
    }
}
