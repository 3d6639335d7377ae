//! The `agent_test_executions` read model: one row per execution, folded from its
//! `execution-{id}` stream. The row is what `GET /api/executions/{id}` answers (the
//! contract in DESIGN.md) plus the configuration version the execution ran with.

use serde::Serialize;

use super::model::Projection;
use crate::catalog::timestamp;
use crate::events::RecordedEvent;
use crate::events::execution::{ExecutionEvent, STREAM_PREFIX};

/// One row of `agent_test_executions`, as stored and as served by the API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExecutionRow {
    pub execution_id: String,
    pub agent_id: String,
    pub tenant_id: String,
    pub delivery_id: String,
    /// queued | running | succeeded | failed
    pub status: String,
    pub output: Option<String>,
    pub error: Option<String>,
    pub error_kind: Option<String>,
    pub model: Option<String>,
    pub key_source: Option<String>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub total_tokens: Option<i64>,
    pub attempts: i64,
    pub queued_at: String,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub duration_ms: Option<i64>,
    pub llm_latency_ms: Option<i64>,
    /// The node that owns the execution while it is unfinished.
    #[serde(skip)]
    pub node: Option<String>,
    #[serde(skip)]
    pub lease_expires_at: Option<String>,
    /// Revision of the last event folded in: applying an older one changes nothing.
    #[serde(skip)]
    pub last_revision: i64,
    /// The agent configuration version the execution ran with (`null`: not recorded).
    pub config_version: Option<i64>,
}

crate::record!(ExecutionRow, key = execution_id, tenant = tenant_id, {
    execution_id: text,
    agent_id: text fixed,
    tenant_id: text fixed,
    delivery_id: text fixed,
    status: text,
    output: opt_text,
    error: opt_text,
    error_kind: opt_text,
    model: opt_text,
    key_source: opt_text,
    prompt_tokens: opt_int,
    completion_tokens: opt_int,
    total_tokens: opt_int,
    attempts: int,
    queued_at: text fixed,
    started_at: opt_text,
    completed_at: opt_text,
    duration_ms: opt_int,
    llm_latency_ms: opt_int,
    node: opt_text,
    lease_expires_at: opt_text,
    last_revision: int,
    config_version: opt_int,
});

/// The `agent_test_executions` projection.
pub struct Executions;

impl Projection for Executions {
    type Row = ExecutionRow;
    type Event = ExecutionEvent;
    const NAME: &'static str = "agent_test_executions";
    /// 2: rows record `config_version`.
    const VERSION: u32 = 2;

    fn decode(event: &RecordedEvent) -> Option<(String, ExecutionEvent)> {
        let id = event.stream_id.strip_prefix(STREAM_PREFIX)?;
        match crate::events::upcast::decode::<ExecutionEvent>(event) {
            Ok(typed) => Some((id.to_owned(), typed)),
            Err(e) => {
                tracing::warn!(stream = %event.stream_id, revision = event.revision,
                    "skipping unreadable event {}: {e}", event.event_type);
                None
            }
        }
    }

    fn apply(
        row: Option<ExecutionRow>,
        event: ExecutionEvent,
        recorded: &RecordedEvent,
    ) -> Option<ExecutionRow> {
        fold(row, event, recorded.revision as i64)
    }
}

pub fn is_execution_stream(stream: &str) -> bool {
    stream.starts_with(STREAM_PREFIX)
}

/// Folds one stored event of an execution stream into its row (unknown or malformed
/// events leave the row as it is).
pub fn apply(row: Option<ExecutionRow>, event: &RecordedEvent) -> Option<ExecutionRow> {
    match Executions::decode(event) {
        Some((_, typed)) => fold(row, typed, event.revision as i64),
        None => row,
    }
}

/// Folds one event into its row. Pure; idempotent (an event at or below the row's last
/// revision is ignored).
pub fn fold(
    row: Option<ExecutionRow>,
    typed: ExecutionEvent,
    revision: i64,
) -> Option<ExecutionRow> {
    if row.as_ref().is_some_and(|r| r.last_revision >= revision) {
        return row;
    }
    let to_i64 = |v: Option<u64>| v.map(|n| n as i64);
    let mut row = match (row, typed) {
        (
            None,
            ExecutionEvent::ExecutionQueued {
                execution_id,
                agent_id,
                tenant_id,
                delivery_id,
                queued_at,
                node,
                config_version,
                ..
            },
        ) => ExecutionRow {
            execution_id: execution_id.to_string(),
            agent_id,
            tenant_id,
            delivery_id,
            status: "queued".into(),
            output: None,
            error: None,
            error_kind: None,
            model: None,
            key_source: None,
            prompt_tokens: None,
            completion_tokens: None,
            total_tokens: None,
            attempts: 0,
            queued_at: timestamp(queued_at),
            started_at: None,
            completed_at: None,
            duration_ms: None,
            llm_latency_ms: None,
            node,
            lease_expires_at: None,
            last_revision: revision,
            config_version,
        },
        // Anything before the row exists cannot be placed: wait for ExecutionQueued.
        (None, _) => return None,
        (Some(row), ExecutionEvent::ExecutionQueued { .. }) => row,
        (
            Some(mut row),
            ExecutionEvent::ExecutionStarted {
                started_at,
                node,
                lease_expires_at,
                ..
            },
        ) => {
            row.status = "running".into();
            row.started_at.get_or_insert(timestamp(started_at));
            row.node = Some(node);
            row.lease_expires_at = Some(timestamp(lease_expires_at));
            row
        }
        (
            Some(mut row),
            ExecutionEvent::LlmCalled {
                model,
                key_source,
                attempt,
                ..
            },
        ) => {
            row.model = Some(model);
            row.key_source = Some(key_source.as_str().into());
            row.attempts = row.attempts.max(attempt as i64);
            row
        }
        (
            Some(mut row),
            ExecutionEvent::LlmCallFailed {
                error_kind,
                message,
                attempt,
                ..
            },
        ) => {
            row.error = Some(message);
            row.error_kind = Some(error_kind);
            row.attempts = row.attempts.max(attempt as i64);
            row
        }
        (
            Some(mut row),
            ExecutionEvent::ExecutionSucceeded {
                output,
                prompt_tokens,
                completion_tokens,
                total_tokens,
                llm_latency_ms,
                duration_ms,
                completed_at,
            },
        ) => {
            row.status = "succeeded".into();
            row.output = Some(output);
            row.error = None;
            row.error_kind = None;
            row.prompt_tokens = to_i64(prompt_tokens);
            row.completion_tokens = to_i64(completion_tokens);
            row.total_tokens = to_i64(total_tokens);
            row.llm_latency_ms = Some(llm_latency_ms as i64);
            row.duration_ms = Some(duration_ms as i64);
            row.completed_at = Some(timestamp(completed_at));
            row.node = None;
            row.lease_expires_at = None;
            row
        }
        (
            Some(mut row),
            ExecutionEvent::ExecutionFailed {
                error_kind,
                message,
                attempts,
                duration_ms,
                completed_at,
            },
        ) => {
            row.status = "failed".into();
            row.error = Some(message);
            row.error_kind = Some(error_kind);
            row.attempts = row.attempts.max(attempts as i64);
            row.duration_ms = Some(duration_ms as i64);
            row.completed_at = Some(timestamp(completed_at));
            row.node = None;
            row.lease_expires_at = None;
            row
        }
    };
    row.last_revision = revision;
    Some(row)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Position;
    use crate::events::execution::KeySource;
    use chrono::Utc;

    fn recorded(revision: u64, event: ExecutionEvent) -> RecordedEvent {
        RecordedEvent {
            stream_id: "execution-x".into(),
            revision,
            position: Position {
                commit: revision + 1,
                prepare: revision + 1,
            },
            event_id: uuid::Uuid::new_v4(),
            event_type: event.event_type().into(),
            data: serde_json::to_value(&event).unwrap(),
            metadata: serde_json::json!({}),
            recorded_at: Utc::now(),
        }
    }

    fn history() -> Vec<RecordedEvent> {
        let now = Utc::now();
        vec![
            recorded(
                0,
                ExecutionEvent::ExecutionQueued {
                    execution_id: uuid::Uuid::nil(),
                    agent_id: "a".into(),
                    tenant_id: "t".into(),
                    delivery_id: "d".into(),
                    payload: serde_json::json!({"k": 1}),
                    queued_at: now,
                    node: None,
                    config_version: Some(3),
                },
            ),
            recorded(
                1,
                ExecutionEvent::ExecutionStarted {
                    node: "n".into(),
                    attempt: 1,
                    lease_expires_at: now,
                    started_at: now,
                },
            ),
            recorded(
                2,
                ExecutionEvent::LlmCalled {
                    model: "m".into(),
                    key_source: KeySource::Tenant,
                    attempt: 1,
                    called_at: now,
                },
            ),
            recorded(
                3,
                ExecutionEvent::ExecutionSucceeded {
                    output: "ok".into(),
                    prompt_tokens: Some(7),
                    completion_tokens: Some(3),
                    total_tokens: Some(10),
                    llm_latency_ms: 5,
                    duration_ms: 9,
                    completed_at: now,
                },
            ),
        ]
    }

    #[test]
    fn folds_a_successful_execution() {
        let row = history().iter().fold(None, apply).unwrap();
        assert_eq!(row.status, "succeeded");
        assert_eq!(row.output.as_deref(), Some("ok"));
        assert_eq!(
            (row.prompt_tokens, row.completion_tokens, row.total_tokens),
            (Some(7), Some(3), Some(10))
        );
        assert_eq!(
            (
                row.model.as_deref(),
                row.key_source.as_deref(),
                row.attempts
            ),
            (Some("m"), Some("tenant"), 1)
        );
        assert_eq!(row.last_revision, 3);
        assert_eq!(row.config_version, Some(3));
    }

    #[test]
    fn applying_an_event_twice_changes_nothing() {
        let events = history();
        let once = events.iter().fold(None, apply);
        let twice = events.iter().chain(events.iter()).fold(None, apply);
        assert_eq!(once, twice);
        // A replayed earlier event after the terminal one does not roll the status back.
        assert_eq!(apply(once.clone(), &events[1]), once);
    }
}
