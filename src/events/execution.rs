//! Events of the `execution-{execution_id}` stream.
//!
//! Names and field names are part of the stored format: never rename them. New
//! optional fields are fine (`#[serde(default)]`); anything else needs a new schema
//! version and an upcaster.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Name of the stream holding one execution's events.
pub fn stream_name(execution_id: &uuid::Uuid) -> String {
    format!("{STREAM_PREFIX}{execution_id}")
}

pub const STREAM_PREFIX: &str = "execution-";

/// Where the key used for an LLM call came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeySource {
    /// The tenant's own gateway key (BYOK).
    Tenant,
    /// The platform key (`HOOKRUN_LLM_API_KEY`).
    Platform,
}

impl KeySource {
    pub fn as_str(self) -> &'static str {
        match self {
            KeySource::Tenant => "tenant",
            KeySource::Platform => "platform",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ExecutionEvent {
    /// A verified webhook was accepted (the 202 is answered after this is stored).
    ExecutionQueued {
        execution_id: uuid::Uuid,
        agent_id: String,
        tenant_id: String,
        delivery_id: String,
        /// The webhook payload, as parsed JSON.
        payload: serde_json::Value,
        queued_at: DateTime<Utc>,
        /// The node that accepted the webhook (it will claim the execution).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
        /// The agent configuration version the execution runs with (schema version 2;
        /// unknown in events written before it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        config_version: Option<i64>,
    },
    /// A node claimed the execution (appended at the expected version: one winner).
    ExecutionStarted {
        node: String,
        attempt: u32,
        lease_expires_at: DateTime<Utc>,
        started_at: DateTime<Utc>,
    },
    /// The LLM gateway is being called (recorded before the request is sent).
    LlmCalled {
        model: String,
        key_source: KeySource,
        attempt: u32,
        called_at: DateTime<Utc>,
    },
    /// One LLM call failed; `retryable` says whether another attempt follows.
    LlmCallFailed {
        attempt: u32,
        error_kind: String,
        status: Option<u16>,
        message: String,
        retryable: bool,
        retry_at: Option<DateTime<Utc>>,
    },
    /// The execution finished with the LLM's answer.
    ExecutionSucceeded {
        output: String,
        prompt_tokens: Option<u64>,
        completion_tokens: Option<u64>,
        total_tokens: Option<u64>,
        llm_latency_ms: u64,
        duration_ms: u64,
        completed_at: DateTime<Utc>,
    },
    /// The execution ended without an answer.
    ExecutionFailed {
        error_kind: String,
        message: String,
        attempts: u32,
        duration_ms: u64,
        completed_at: DateTime<Utc>,
    },
}

impl ExecutionEvent {
    /// The stable stored name of the event.
    pub fn event_type(&self) -> &'static str {
        match self {
            ExecutionEvent::ExecutionQueued { .. } => "ExecutionQueued",
            ExecutionEvent::ExecutionStarted { .. } => "ExecutionStarted",
            ExecutionEvent::LlmCalled { .. } => "LlmCalled",
            ExecutionEvent::LlmCallFailed { .. } => "LlmCallFailed",
            ExecutionEvent::ExecutionSucceeded { .. } => "ExecutionSucceeded",
            ExecutionEvent::ExecutionFailed { .. } => "ExecutionFailed",
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            ExecutionEvent::ExecutionSucceeded { .. } | ExecutionEvent::ExecutionFailed { .. }
        )
    }
}
