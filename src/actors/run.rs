//! The steps of one execution, each recorded as an event before the next begins:
//! queue (`ExecutionQueued`, no stream → a repeated delivery conflicts), claim
//! (`ExecutionStarted` at the expected version → one winner), `LlmCalled` before the
//! request, then the outcome. The LLM's answer is stored before anything else happens,
//! so a recovered execution never asks the LLM again for an answer it already has.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tracing::Instrument;
use uuid::Uuid;

use super::agent::Enqueue;
use crate::catalog::AgentRecord;
use crate::crypto::Sealer;
use crate::domain::{DeliveryId, ExecutionId};
use crate::events::envelope::{SCHEMA_VERSION, deterministic_event_id};
use crate::events::execution::{ExecutionEvent, stream_name};
use crate::events::{EventMetadata, EventStore, ExpectedVersion, NewEvent, StoreError};
use crate::llm::{ChatRequest, LlmClient, LlmError, resolve_key};

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Executions of one agent running at once.
    pub concurrency: usize,
    /// Accepted-but-unfinished executions of one agent (and its mailbox size).
    pub queue: usize,
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
    pub lease: Duration,
}

/// An accepted execution waiting to run.
pub struct Job {
    pub execution_id: ExecutionId,
    agent: Arc<AgentRecord>,
    delivery_id: DeliveryId,
    payload: serde_json::Value,
    queued_event: Uuid,
    accepted: Instant,
}

pub enum Queued {
    New(Job),
    Duplicate(ExecutionId),
}

/// Appends `ExecutionQueued` with "no stream": the first delivery wins, repeats conflict.
pub async fn queue(deps: &ExecutionDeps, msg: Enqueue) -> Result<Queued, StoreError> {
    let accepted = Instant::now();
    let execution_id = ExecutionId::for_delivery(&msg.agent.agent_id, &msg.delivery_id);
    let now = Utc::now();
    let event = ExecutionEvent::ExecutionQueued {
        execution_id: *execution_id.as_uuid(),
        agent_id: msg.agent.agent_id.to_string(),
        tenant_id: msg.agent.tenant_id.to_string(),
        delivery_id: msg.delivery_id.to_string(),
        payload: msg.payload,
        queued_at: now,
    };
    // A random id: a repeated delivery must conflict, not be taken as a retried append.
    let meta = metadata(&msg.agent, &msg.delivery_id, Uuid::new_v4(), None);
    let queued_event = meta.event_id;
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
    Ok(Queued::New(Job {
        execution_id,
        agent: msg.agent,
        delivery_id: msg.delivery_id,
        payload,
        queued_event,
        accepted,
    }))
}

/// Runs a queued execution to its end. Errors are recorded as events where possible
/// and logged otherwise; a lost claim (conflict) means another node owns it.
pub async fn execute(deps: &ExecutionDeps, job: Job) {
    let stream = stream_name(job.execution_id.as_uuid());
    let span = tracing::info_span!("execution", execution_id = %job.execution_id, agent_id = %job.agent.agent_id);
    match execute_steps(deps, &job, &stream).instrument(span).await {
        Ok(()) => {}
        Err(e) if e.is_conflict() => {
            tracing::info!("execution claimed or advanced elsewhere; letting go: {e}")
        }
        Err(e) => tracing::error!("execution could not record its progress: {e}"),
    }
}

async fn execute_steps(deps: &ExecutionDeps, job: &Job, stream: &str) -> Result<(), StoreError> {
    let attempt = 1;
    let mut recorder = Recorder {
        deps,
        job,
        stream,
        causation: job.queued_event,
        revision: 0,
    };
    let now = Utc::now();
    recorder
        .record(&[ExecutionEvent::ExecutionStarted {
            node: deps.node_id.clone(),
            attempt,
            lease_expires_at: now + deps.lease,
            started_at: now,
        }])
        .await?;

    let tenant_key = match &job.agent.llm_key_sealed {
        None => None,
        Some(sealed) => {
            let aad = crate::catalog::agents::llm_key_aad(&job.agent.agent_id);
            match deps
                .sealer
                .open(sealed, aad.as_bytes())
                .map(String::from_utf8)
            {
                Ok(Ok(key)) => Some(key),
                _ => {
                    return recorder
                        .fail("key_unavailable", "the tenant's gateway key cannot be unsealed with the configured master key".into(), 0)
                        .await;
                }
            }
        }
    };
    let key = resolve_key(tenant_key, deps.platform_key.as_deref());
    let config = &job.agent.llm_config;
    recorder
        .record(&[ExecutionEvent::LlmCalled {
            model: config.model.clone(),
            key_source: key.source,
            attempt,
            called_at: Utc::now(),
        }])
        .await?;
    let result = deps
        .llm
        .chat(ChatRequest {
            model: &config.model,
            params: &config.params,
            system_prompt: &job.agent.system_prompt,
            user_message: job.payload.to_string(),
            key: &key,
            timeout: deps.llm_timeout,
        })
        .await;
    match result {
        Ok(response) => {
            recorder
                .record(&[ExecutionEvent::ExecutionSucceeded {
                    output: response.content,
                    prompt_tokens: response.usage.prompt_tokens,
                    completion_tokens: response.usage.completion_tokens,
                    total_tokens: response.usage.total_tokens,
                    llm_latency_ms: millis(response.latency),
                    duration_ms: millis(job.accepted.elapsed()),
                    completed_at: Utc::now(),
                }])
                .await
        }
        Err(LlmError {
            kind,
            status,
            message,
            ..
        }) => {
            recorder
                .record(&[ExecutionEvent::LlmCallFailed {
                    attempt,
                    error_kind: kind.to_owned(),
                    status,
                    message: message.clone(),
                    retryable: false,
                    retry_at: None,
                }])
                .await?;
            recorder.fail(kind, message, attempt).await
        }
    }
}

/// Appends an execution's events one step at a time, each at the expected revision.
struct Recorder<'a> {
    deps: &'a ExecutionDeps,
    job: &'a Job,
    stream: &'a str,
    causation: Uuid,
    revision: u64,
}

impl Recorder<'_> {
    async fn record(&mut self, events: &[ExecutionEvent]) -> Result<(), StoreError> {
        let mut batch = Vec::with_capacity(events.len());
        for (i, event) in events.iter().enumerate() {
            let step = format!("{}/{}", self.revision + 1 + i as u64, event.event_type());
            let id = deterministic_event_id(self.stream, &step);
            let meta = metadata(
                &self.job.agent,
                &self.job.delivery_id,
                id,
                Some(self.causation),
            );
            batch.push(to_new_event(event, &meta)?);
            self.causation = id;
        }
        let result = self
            .deps
            .store
            .append(self.stream, ExpectedVersion::Exact(self.revision), batch)
            .await?;
        self.revision = result.next_expected_version;
        Ok(())
    }

    async fn fail(&mut self, kind: &str, message: String, attempts: u32) -> Result<(), StoreError> {
        tracing::warn!(error_kind = kind, "execution failed: {message}");
        self.record(&[ExecutionEvent::ExecutionFailed {
            error_kind: kind.to_owned(),
            message,
            attempts,
            duration_ms: millis(self.job.accepted.elapsed()),
            completed_at: Utc::now(),
        }])
        .await
    }
}

fn metadata(
    agent: &AgentRecord,
    delivery: &DeliveryId,
    event_id: Uuid,
    causation: Option<Uuid>,
) -> EventMetadata {
    EventMetadata {
        event_id,
        tenant_id: agent.tenant_id.to_string(),
        agent_id: agent.agent_id.to_string(),
        correlation_id: delivery.to_string(),
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
