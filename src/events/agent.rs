//! Lifecycle events of the `agent-{agent_id}` stream: an audit trail of what changed
//! and when. Agents' current configuration lives in the catalog tables (see
//! `crate::catalog`); these events never carry a secret.

use serde::{Deserialize, Serialize};

pub const STREAM_PREFIX: &str = "agent-";

pub fn stream_name(agent_id: &str) -> String {
    format!("{STREAM_PREFIX}{agent_id}")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum AgentEvent {
    AgentRegistered {
        agent_id: String,
        tenant_id: String,
        name: String,
        model: String,
    },
    /// The tenant set or replaced its own gateway key (the key itself is never stored here).
    AgentLlmKeySet { agent_id: String },
    /// The agent stopped accepting webhooks.
    AgentPaused { agent_id: String },
    /// The agent accepts webhooks again.
    AgentActivated { agent_id: String },
    /// How the agent's webhooks are verified changed (only the fields that changed).
    AgentUpdated {
        agent_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature_scheme: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timestamp_tolerance_s: Option<u64>,
    },
    /// A new webhook secret replaced the current one; the previous one keeps verifying
    /// until `previous_expires_at` (RFC 3339; `None`: not at all). Never the secrets.
    WebhookSecretRotated {
        agent_id: String,
        previous_expires_at: Option<String>,
    },
}

impl AgentEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            AgentEvent::AgentRegistered { .. } => "AgentRegistered",
            AgentEvent::AgentLlmKeySet { .. } => "AgentLlmKeySet",
            AgentEvent::AgentPaused { .. } => "AgentPaused",
            AgentEvent::AgentActivated { .. } => "AgentActivated",
            AgentEvent::AgentUpdated { .. } => "AgentUpdated",
            AgentEvent::WebhookSecretRotated { .. } => "WebhookSecretRotated",
        }
    }
}
