//! The steps of one execution, each recorded as an event before the next begins:
//! queue (`ExecutionQueued`, no stream → a repeated delivery conflicts), claim
//! (`ExecutionStarted` at the expected version → one winner), then attempts:
//! `LlmCalled` before each request, `LlmCallFailed` after a failed one (with the time
//! of the next attempt when it is retryable), and the outcome. The LLM's answer is
//! stored before anything else happens, so a resumed execution never asks again for
//! an answer it already has. Any append that conflicts means another node owns the
//! execution now: this one lets go.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::Instrument;
use uuid::Uuid;

use super::agent::Enqueue;
use super::state::ExecutionState;
use crate::catalog::AgentRecord;
use crate::crypto::Sealer;
use crate::domain::ExecutionId;
use crate::events::envelope::{SCHEMA_VERSION, fresh_event_id, step_event_id};
use crate::events::execution::{ExecutionEvent, stream_name};
use crate::events::{EventMetadata, EventStore, ExpectedVersion, NewEvent, StoreError};
use crate::llm::{ChatRequest, LlmClient, LlmError, RetryPolicy, resolve_key};

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Executions of one agent running at once.
    pub concurrency: usize,
    /// Accepted-but-unfinished executions of one agent (and its mailbox size).
    pub queue: usize,
    /// Accepted-but-unfinished executions on this node, all agents together.
    pub in_flight: usize,
    /// An agent actor with nothing to do for this long is let go (the next webhook
    /// starts a new one).
    pub idle_after: Duration,
}

/// What executions need, shared by all agent actors.
pub struct ExecutionDeps {
    pub store: Arc<dyn EventStore>,
    pub llm: LlmClient,
    pub sealer: Arc<Sealer>,
    pub platform_key: Option<String>,
    pub node_id: String,
    pub limits: Limits,
    pub llm_timeout: Duration,
    /// Longest time from acceptance to a terminal event.
    pub deadline: Duration,
    /// Executions this node holds (queued in an actor or running).
    pub owned: Mutex<HashSet<ExecutionId>>,
    /// Notified when the last owned execution is released (graceful shutdown waits on it).
    pub idle: tokio::sync::Notify,
}

impl ExecutionDeps {
    /// Takes ownership of an execution on this node; false if it already has it.
    pub fn own(&self, id: ExecutionId) -> bool {
        self.owned.lock().expect("owned lock").insert(id)
    }

    pub fn release(&self, id: &ExecutionId) {
        let mut owned = self.owned.lock().expect("owned lock");
        owned.remove(id);
        if owned.is_empty() {
            self.idle.notify_waiters();
        }
    }

    /// Waits until this node holds no execution.
    pub async fn wait_idle(&self) {
        loop {
            let idle = self.idle.notified();
            if self.owned_count() == 0 {
                return;
            }
            idle.await;
        }
    }

    pub fn owns(&self, id: &ExecutionId) -> bool {
        self.owned.lock().expect("owned lock").contains(id)
    }

    pub fn owned_count(&self) -> usize {
        self.owned.lock().expect("owned lock").len()
    }
}

/// An accepted execution waiting to run (fresh, or resumed from its stream).
pub struct Job {
    pub execution_id: ExecutionId,
    pub agent: Arc<AgentRecord>,
    pub state: ExecutionState,
}

pub enum Queued {
    New(Job),
    Duplicate(ExecutionId),
}

/// Appends `ExecutionQueued` with "no stream": the first delivery wins, repeats conflict.
pub async fn queue(deps: &ExecutionDeps, msg: Enqueue) -> Result<Queued, StoreError> {
    let execution_id = ExecutionId::for_delivery(&msg.agent.agent_id, &msg.delivery_id);
    let queued_at = Utc::now();
    let event = ExecutionEvent::ExecutionQueued {
        execution_id: *execution_id.as_uuid(),
        agent_id: msg.agent.agent_id.to_string(),
        tenant_id: msg.agent.tenant_id.to_string(),
        delivery_id: msg.delivery_id.to_string(),
        payload: msg.payload,
        queued_at,
        node: Some(deps.node_id.clone()),
        config_version: Some(msg.agent.config_version),
    };
    // A fresh id: a repeated delivery must conflict, not be taken as a retried append.
    let meta = metadata(&msg.agent, msg.delivery_id.as_ref(), fresh_event_id(), None);
    let stream = stream_name(execution_id.as_uuid());
    let new = to_new_event(&event, &meta)?;
    match deps
        .store
        .append(&stream, ExpectedVersion::NoStream, vec![new])
        .await
    {
        Ok(_) => {}
        Err(e) if e.is_conflict() => return Ok(Queued::Duplicate(execution_id)),
        Err(e) => return Err(e),
    }
    let ExecutionEvent::ExecutionQueued { payload, .. } = event else {
        unreachable!()
    };
    let state = ExecutionState::queued(
        meta.event_id,
        msg.delivery_id.to_string(),
        payload,
        queued_at,
    );
    Ok(Queued::New(Job {
        execution_id,
        agent: msg.agent,
        state,
    }))
}

/// Runs an execution to its end. Errors are recorded as events where possible and
/// logged otherwise; a conflict means another node owns it now.
pub async fn execute(deps: &ExecutionDeps, job: Job) {
    let span = tracing::info_span!("execution", execution_id = %job.execution_id, agent_id = %job.agent.agent_id);
    let id = job.execution_id;
    match execute_steps(deps, job).instrument(span.clone()).await {
        Ok(()) => {}
        Err(e) if e.is_conflict() => {
            span.in_scope(|| tracing::info!("execution claimed or advanced elsewhere; letting go"))
        }
        Err(e) => span.in_scope(|| tracing::error!("execution could not record its progress: {e}")),
    }
    deps.release(&id);
}

async fn execute_steps(deps: &ExecutionDeps, job: Job) -> Result<(), StoreError> {
    if job.state.terminal {
        return Ok(());
    }
    let agent = job.agent.clone();
    let stream = stream_name(job.execution_id.as_uuid());
    let mut rec = Recorder {
        deps,
        agent: &agent,
        stream: &stream,
        state: job.state,
        claim: None,
    };
    let deadline = rec.state.queued_at + deps.deadline;
    let now = Utc::now();
    // The claim is appended together with the first thing this node records (normally
    // the first `LlmCalled`): one append instead of two, and still before the call.
    rec.claim = Some(ExecutionEvent::ExecutionStarted {
        node: deps.node_id.clone(),
        attempt: rec.state.claims + 1,
        lease_expires_at: deadline.max(now),
        started_at: now,
    });

    let tenant_key = match &agent.llm_key_sealed {
        None => None,
        Some(sealed) => {
            let aad = crate::catalog::agents::llm_key_aad(&agent.agent_id);
            match deps
                .sealer
                .open(sealed, aad.as_bytes())
                .map(String::from_utf8)
            {
                Ok(Ok(key)) => Some(key),
                _ => {
                    let message = "the tenant's gateway key cannot be unsealed with the configured master key";
                    return rec.fail("key_unavailable", message.into()).await;
                }
            }
        }
    };
    let key = resolve_key(tenant_key, deps.platform_key.as_deref());
    let config = &agent.llm_config;
    let policy = config.retry.unwrap_or_default();
    let timeout = config
        .timeout_s
        .map_or(deps.llm_timeout, Duration::from_secs);
    let user_message = Arc::clone(&rec.state.user_message);
    loop {
        if let Some(at) = rec.state.retry_at {
            sleep_until(at.min(deadline)).await;
        }
        let attempt = rec.state.llm_attempts + 1;
        if attempt > policy.max_attempts {
            let message = format!(
                "no attempt left after {} attempt(s)",
                rec.state.llm_attempts
            );
            return rec.fail("retries_exhausted", message).await;
        }
        let remaining = (deadline - Utc::now()).to_std().unwrap_or_default();
        if remaining.is_zero() {
            let message = format!(
                "the execution deadline of {} s passed",
                deps.deadline.as_secs()
            );
            return rec.fail("deadline_exceeded", message).await;
        }
        rec.record(&[ExecutionEvent::LlmCalled {
            model: config.model.clone(),
            key_source: key.source,
            attempt,
            called_at: Utc::now(),
        }])
        .await?;
        let request = ChatRequest {
            model: &config.model,
            params: &config.params,
            system_prompt: &agent.system_prompt,
            user_message: &user_message,
            key: &key,
            timeout: timeout.min(remaining),
        };
        match deps.llm.chat(request).await {
            Ok(response) => {
                let duration = Utc::now() - rec.state.queued_at;
                return rec
                    .record(&[ExecutionEvent::ExecutionSucceeded {
                        output: response.content,
                        prompt_tokens: response.usage.prompt_tokens,
                        completion_tokens: response.usage.completion_tokens,
                        total_tokens: response.usage.total_tokens,
                        llm_latency_ms: millis(response.latency),
                        duration_ms: duration.num_milliseconds().max(0) as u64,
                        completed_at: Utc::now(),
                    }])
                    .await;
            }
            Err(error) => {
                if let Some(retry_at) = next_attempt_at(&policy, attempt, &error, deadline) {
                    // The message stays out of the log: it may quote tenant data, and
                    // is stored sealed in the event (read it through the API).
                    tracing::info!(
                        attempt,
                        error_kind = error.kind,
                        status = error.status,
                        "LLM call failed; retrying at {retry_at}"
                    );
                    rec.record(&[failed_call(attempt, &error, Some(retry_at))])
                        .await?;
                    continue;
                }
                rec.record(&[failed_call(attempt, &error, None)]).await?;
                if Utc::now() >= deadline {
                    let message = format!(
                        "the execution deadline of {} s passed (last error: {})",
                        deps.deadline.as_secs(),
                        error.message
                    );
                    return rec.fail("deadline_exceeded", message).await;
                }
                return rec.fail(error.kind, error.message).await;
            }
        }
    }
}

/// When the next attempt starts, if there is one: a retryable error, attempts left,
/// and a start before the deadline.
fn next_attempt_at(
    policy: &RetryPolicy,
    attempt: u32,
    error: &LlmError,
    deadline: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if !error.retryable || !policy.allows_another(attempt) {
        return None;
    }
    let at = Utc::now() + policy.delay(attempt, error.retry_after);
    (at < deadline).then_some(at)
}

fn failed_call(attempt: u32, error: &LlmError, retry_at: Option<DateTime<Utc>>) -> ExecutionEvent {
    ExecutionEvent::LlmCallFailed {
        attempt,
        error_kind: error.kind.to_owned(),
        status: error.status,
        message: error.message.clone(),
        retryable: retry_at.is_some(),
        retry_at,
    }
}

async fn sleep_until(at: DateTime<Utc>) {
    if let Ok(wait) = (at - Utc::now()).to_std() {
        tokio::time::sleep(wait).await;
    }
}

/// Appends an execution's events one step at a time, each at the expected revision.
struct Recorder<'a> {
    deps: &'a ExecutionDeps,
    agent: &'a AgentRecord,
    stream: &'a str,
    state: ExecutionState,
    /// This node's `ExecutionStarted`, not yet appended: it goes first in the next append.
    claim: Option<ExecutionEvent>,
}

impl Recorder<'_> {
    async fn record(&mut self, events: &[ExecutionEvent]) -> Result<(), StoreError> {
        match self.claim.take() {
            Some(claim) => {
                let with_claim: Vec<ExecutionEvent> = std::iter::once(claim)
                    .chain(events.iter().cloned())
                    .collect();
                self.append(&with_claim).await
            }
            None => self.append(events).await,
        }
    }

    async fn append(&mut self, events: &[ExecutionEvent]) -> Result<(), StoreError> {
        let mut batch = Vec::with_capacity(events.len());
        let mut causation = self.state.last_event;
        for (i, event) in events.iter().enumerate() {
            let revision = self.state.revision + 1 + i as u64;
            let id = step_event_id(
                self.stream,
                revision,
                event.event_type(),
                self.state.queued_at,
            );
            let meta = metadata(self.agent, &self.state.delivery_id, id, Some(causation));
            batch.push(to_new_event(event, &meta)?);
            causation = id;
        }
        let result = self
            .deps
            .store
            .append(
                self.stream,
                ExpectedVersion::Exact(self.state.revision),
                batch,
            )
            .await?;
        self.state.revision = result.next_expected_version;
        self.state.last_event = causation;
        for event in events {
            match event {
                ExecutionEvent::ExecutionStarted { .. } => self.state.claims += 1,
                ExecutionEvent::LlmCalled { .. } => {
                    self.state.llm_attempts += 1;
                    self.state.retry_at = None;
                }
                ExecutionEvent::LlmCallFailed { retry_at, .. } => self.state.retry_at = *retry_at,
                _ => {}
            }
        }
        Ok(())
    }

    async fn fail(&mut self, kind: &str, message: String) -> Result<(), StoreError> {
        // Without the message, which may quote tenant data (it is stored sealed).
        tracing::warn!(error_kind = kind, "execution failed");
        let duration = Utc::now() - self.state.queued_at;
        self.record(&[ExecutionEvent::ExecutionFailed {
            error_kind: kind.to_owned(),
            message,
            attempts: self.state.llm_attempts,
            duration_ms: duration.num_milliseconds().max(0) as u64,
            completed_at: Utc::now(),
        }])
        .await
    }
}

fn metadata(
    agent: &AgentRecord,
    delivery: &str,
    event_id: Uuid,
    causation: Option<Uuid>,
) -> EventMetadata {
    EventMetadata {
        event_id,
        tenant_id: agent.tenant_id.to_string(),
        agent_id: agent.agent_id.to_string(),
        correlation_id: delivery.to_owned(),
        causation_id: causation,
        occurred_at: Utc::now(),
        schema_version: SCHEMA_VERSION,
    }
}

fn to_new_event(event: &ExecutionEvent, meta: &EventMetadata) -> Result<NewEvent, StoreError> {
    NewEvent::from_typed(event.event_type(), event, meta)
        .map_err(|e| StoreError::Backend(format!("cannot serialize {}: {e}", event.event_type())))
}

fn millis(d: Duration) -> u64 {
    d.as_millis().try_into().unwrap_or(u64::MAX)
}
