//! Where an execution stands, folded from its stream: what a node needs to resume it
//! after a crash without repeating a step whose result is already recorded.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::events::RecordedEvent;
use crate::events::execution::ExecutionEvent;

#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionState {
    /// Revision of the stream's last event (the next append expects it).
    pub revision: u64,
    /// Id of the last event (the next event's causation).
    pub last_event: Uuid,
    pub delivery_id: String,
    /// The payload as the LLM receives it (compact JSON text). Only the text is kept:
    /// an execution waiting on the gateway holds one copy of its payload, not a tree.
    pub user_message: Arc<str>,
    pub queued_at: DateTime<Utc>,
    /// `ExecutionStarted` events so far (claims, first and re-claims).
    pub claims: u32,
    /// `LlmCalled` events so far (attempts made).
    pub llm_attempts: u32,
    /// When the next attempt may start (after a retryable failure).
    pub retry_at: Option<DateTime<Utc>>,
    pub terminal: bool,
}

impl ExecutionState {
    /// The state right after `ExecutionQueued` was appended.
    pub fn queued(
        event_id: Uuid,
        delivery_id: String,
        payload: serde_json::Value,
        queued_at: DateTime<Utc>,
    ) -> Self {
        ExecutionState {
            revision: 0,
            last_event: event_id,
            delivery_id,
            user_message: payload.to_string().into(),
            queued_at,
            claims: 0,
            llm_attempts: 0,
            retry_at: None,
            terminal: false,
        }
    }

    /// Folds a whole stream; `None` if it does not start with `ExecutionQueued`.
    pub fn fold(events: &[RecordedEvent]) -> Option<Self> {
        let (first, rest) = events.split_first()?;
        let Ok(ExecutionEvent::ExecutionQueued {
            delivery_id,
            payload,
            queued_at,
            ..
        }) = serde_json::from_value(first.data.clone())
        else {
            return None;
        };
        let mut state = Self::queued(first.event_id, delivery_id, payload, queued_at);
        for event in rest {
            state.revision = event.revision;
            state.last_event = event.event_id;
            match serde_json::from_value::<ExecutionEvent>(event.data.clone()) {
                Ok(ExecutionEvent::ExecutionStarted { .. }) => state.claims += 1,
                Ok(ExecutionEvent::LlmCalled { .. }) => {
                    state.llm_attempts += 1;
                    state.retry_at = None;
                }
                Ok(ExecutionEvent::LlmCallFailed { retry_at, .. }) => state.retry_at = retry_at,
                Ok(
                    ExecutionEvent::ExecutionSucceeded { .. }
                    | ExecutionEvent::ExecutionFailed { .. },
                ) => state.terminal = true,
                Ok(ExecutionEvent::ExecutionQueued { .. }) | Err(_) => {}
            }
        }
        Some(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Position;
    use crate::events::execution::KeySource;

    fn recorded(revision: u64, event: ExecutionEvent) -> RecordedEvent {
        RecordedEvent {
            stream_id: "execution-x".into(),
            revision,
            position: Position {
                commit: revision + 1,
                prepare: revision + 1,
            },
            event_id: Uuid::new_v4(),
            event_type: event.event_type().into(),
            data: serde_json::to_value(&event).unwrap(),
            metadata: serde_json::json!({}),
            recorded_at: Utc::now(),
        }
    }

    #[test]
    fn a_crash_after_a_retryable_failure_resumes_at_the_next_attempt() {
        let now = Utc::now();
        let events = [
            recorded(
                0,
                ExecutionEvent::ExecutionQueued {
                    execution_id: Uuid::nil(),
                    agent_id: "a".into(),
                    tenant_id: "t".into(),
                    delivery_id: "d".into(),
                    payload: serde_json::json!({"k": 1}),
                    queued_at: now,
                    node: None,
                    config_version: None,
                },
            ),
            recorded(
                1,
                ExecutionEvent::ExecutionStarted {
                    node: "n1".into(),
                    attempt: 1,
                    lease_expires_at: now,
                    started_at: now,
                },
            ),
            recorded(
                2,
                ExecutionEvent::LlmCalled {
                    model: "m".into(),
                    key_source: KeySource::Platform,
                    attempt: 1,
                    called_at: now,
                },
            ),
            recorded(
                3,
                ExecutionEvent::LlmCallFailed {
                    attempt: 1,
                    error_kind: "server_error".into(),
                    status: Some(503),
                    message: "down".into(),
                    retryable: true,
                    retry_at: Some(now),
                },
            ),
        ];
        let state = ExecutionState::fold(&events).unwrap();
        assert_eq!(
            (
                state.revision,
                state.claims,
                state.llm_attempts,
                state.terminal
            ),
            (3, 1, 1, false)
        );
        assert_eq!(state.retry_at, Some(now));
        assert_eq!(state.last_event, events[3].event_id);
        assert_eq!(&*state.user_message, r#"{"k":1}"#);
        assert!(
            ExecutionState::fold(&events[1..]).is_none(),
            "a stream must start with ExecutionQueued"
        );
    }
}
