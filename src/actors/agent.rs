//! The agent actor: owns one agent's queue of executions and how many run at once.
//!
//! Ordering: the handler of [`Enqueue`] awaits the `ExecutionQueued` append, and an
//! actix handler that awaits can interleave with the next message. Nothing here relies
//! on message order across executions: capacity is reserved synchronously before the
//! append (`appending`), dedupe is the event store's optimistic concurrency, and the
//! running count only changes on the actor itself: when it starts an execution, and
//! when the execution's task hands its slot back (`Finished`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::run::{self, ExecutionDeps, Job};
use crate::catalog::AgentRecord;
use crate::domain::{AgentId, DeliveryId, ExecutionId};
use crate::events::StoreError;

/// A verified, schema-valid webhook for this agent. The answer goes to `reply`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Enqueue {
    pub agent: Arc<AgentRecord>,
    pub delivery_id: DeliveryId,
    pub payload: serde_json::Value,
    pub reply: Option<oneshot::Sender<Result<Enqueued, EnqueueError>>>,
}

impl Enqueue {
    pub fn new(
        agent: Arc<AgentRecord>,
        delivery_id: DeliveryId,
        payload: serde_json::Value,
    ) -> Self {
        Enqueue {
            agent,
            delivery_id,
            payload,
            reply: None,
        }
    }
}

/// An accepted execution found unfinished (after a crash, or a node's loss): run it
/// from where its stream says it stands.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Resume(pub Job);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// `ExecutionQueued` is stored; the execution will run.
    Queued(ExecutionId),
    /// This delivery id was seen before: nothing new was stored or started.
    Duplicate(ExecutionId),
}

#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("agent is at capacity")]
    Busy,
    #[error("this node is at capacity")]
    Overloaded,
    #[error(transparent)]
    Store(StoreError),
    #[error("{0}")]
    Internal(String),
}

/// What the registry reads of an agent actor to decide it is idle.
#[derive(Debug)]
pub struct Activity {
    /// `in_flight()` after the actor's last change.
    busy: AtomicUsize,
    /// When that was, in milliseconds since `epoch`.
    at_ms: AtomicU64,
    epoch: Instant,
}

impl Activity {
    pub fn new() -> Self {
        Activity {
            busy: AtomicUsize::new(0),
            at_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn note(&self, busy: usize) {
        let at = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.at_ms.store(at, Ordering::Relaxed);
        self.busy.store(busy, Ordering::Release);
    }

    /// Nothing queued or running, and nothing happened for `after`.
    pub fn idle_for(&self, after: Duration) -> bool {
        let since = Duration::from_millis(self.at_ms.load(Ordering::Relaxed));
        self.busy.load(Ordering::Acquire) == 0 && self.epoch.elapsed() >= since + after
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

pub struct AgentActor {
    agent_id: AgentId,
    deps: Arc<ExecutionDeps>,
    activity: Arc<Activity>,
    /// `ExecutionQueued` appends under way (capacity reserved for them).
    appending: usize,
    running: usize,
    pending: VecDeque<Job>,
}

impl AgentActor {
    pub fn new(agent_id: AgentId, deps: Arc<ExecutionDeps>, activity: Arc<Activity>) -> Self {
        AgentActor {
            agent_id,
            deps,
            activity,
            appending: 0,
            running: 0,
            pending: VecDeque::new(),
        }
    }

    fn in_flight(&self) -> usize {
        self.appending + self.running + self.pending.len()
    }

    fn note(&self) {
        self.activity.note(self.in_flight());
    }

    /// Starts queued executions while below the agent's concurrency limit.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        self.note();
        while self.running < self.deps.limits.concurrency {
            let Some(job) = self.pending.pop_front() else {
                break;
            };
            self.running += 1;
            let deps = self.deps.clone();
            let slot = Slot(ctx.address());
            // A task of its own on this arbiter, not an item of the actor's context:
            // a context polls every item it holds whenever anything wakes it, so each
            // webhook to an agent would poll all of its waiting gateway calls again.
            actix::spawn(async move {
                run::execute(&deps, job).await;
                drop(slot);
            });
        }
    }
}

/// An execution the actor started has ended (whatever its outcome): its slot is free.
#[derive(Message)]
#[rtype(result = "()")]
struct Finished;

/// A running execution's slot: given back when its task ends, even by a panic.
struct Slot(Addr<AgentActor>);

impl Drop for Slot {
    fn drop(&mut self) {
        // Queued even when the mailbox is full: the slot must come back.
        self.0.do_send(Finished);
    }
}

impl Handler<Finished> for AgentActor {
    type Result = ();

    fn handle(&mut self, _: Finished, ctx: &mut Self::Context) {
        self.running -= 1;
        self.pump(ctx);
    }
}

impl Actor for AgentActor {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        tracing::debug!(agent_id = %self.agent_id, "agent actor started");
    }
}

impl Handler<Enqueue> for AgentActor {
    type Result = ();

    fn handle(&mut self, mut msg: Enqueue, ctx: &mut Self::Context) {
        let Some(reply) = msg.reply.take() else {
            return;
        };
        if self.in_flight() >= self.deps.limits.queue {
            let _ = reply.send(Err(EnqueueError::Busy));
            return;
        }
        self.appending += 1;
        self.note();
        let deps = self.deps.clone();
        ctx.spawn(
            async move { run::queue(&deps, msg).await }
                .into_actor(self)
                .map(move |result, act, ctx| {
                    act.appending -= 1;
                    let answer = match result {
                        Ok(run::Queued::New(job)) => {
                            let id = job.execution_id;
                            act.deps.own(id);
                            act.pending.push_back(job);
                            act.pump(ctx);
                            Ok(Enqueued::Queued(id))
                        }
                        Ok(run::Queued::Duplicate(id)) => Ok(Enqueued::Duplicate(id)),
                        Err(e) => Err(EnqueueError::Store(e)),
                    };
                    act.note();
                    let _ = reply.send(answer);
                }),
        );
    }
}

impl Handler<Resume> for AgentActor {
    type Result = ();

    /// Resumed executions were accepted already: they join the queue whatever its
    /// length (capacity limits only new deliveries).
    fn handle(&mut self, Resume(job): Resume, ctx: &mut Self::Context) {
        if self.deps.own(job.execution_id) {
            self.pending.push_back(job);
            self.pump(ctx);
        }
    }
}
