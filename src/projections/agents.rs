//! The `agent_summaries` read model: one row per agent — its name, model, status and
//! configuration version (from the `agent-{id}` lifecycle stream) and its execution
//! counts and last execution (from the `execution-{id}` streams). `GET /api/agents`
//! serves it.
//!
//! The configuration version mirrors the catalog's: 1 at registration, one more for
//! every later configuration change. An event that carries `config_version` itself is
//! taken at its word.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::model::Projection;
use crate::catalog::timestamp;
use crate::events::RecordedEvent;
use crate::events::agent::{self, AgentEvent};
use crate::events::execution::{self, ExecutionEvent};
use crate::events::upcast::decode;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentSummary {
    pub agent_id: String,
    pub tenant_id: String,
    pub name: String,
    pub model: Option<String>,
    /// active | paused
    pub status: String,
    pub config_version: i64,
    pub registered_at: String,
    pub updated_at: String,
    pub executions_total: i64,
    pub executions_succeeded: i64,
    pub executions_failed: i64,
    pub total_tokens: i64,
    pub last_execution_id: Option<String>,
    pub last_execution_at: Option<String>,
    pub last_execution_status: Option<String>,
}

crate::record!(AgentSummary, key = agent_id, tenant = tenant_id, {
    agent_id: text,
    tenant_id: text fixed,
    name: text,
    model: opt_text,
    status: text,
    config_version: int,
    registered_at: text fixed,
    updated_at: text,
    executions_total: int,
    executions_succeeded: int,
    executions_failed: int,
    total_tokens: int,
    last_execution_id: opt_text,
    last_execution_at: opt_text,
    last_execution_status: opt_text,
});

/// What this projection needs from an event.
#[derive(Debug)]
pub enum AgentFact {
    Lifecycle {
        event: AgentEvent,
        config_version: Option<i64>,
    },
    Queued {
        execution_id: String,
        queued_at: DateTime<Utc>,
    },
    Started {
        execution_id: String,
    },
    Finished {
        execution_id: String,
        succeeded: bool,
        total_tokens: u64,
    },
}

pub struct AgentSummaries;

impl Projection for AgentSummaries {
    type Row = AgentSummary;
    type Event = AgentFact;
    const NAME: &'static str = "agent_summaries";
    const VERSION: u32 = 1;

    fn decode(event: &RecordedEvent) -> Option<(String, AgentFact)> {
        if let Some(agent_id) = event.stream_id.strip_prefix(agent::STREAM_PREFIX) {
            let typed = decode::<AgentEvent>(event).ok()?;
            let config_version = event.data.get("config_version").and_then(|v| v.as_i64());
            return Some((
                agent_id.to_owned(),
                AgentFact::Lifecycle {
                    event: typed,
                    config_version,
                },
            ));
        }
        let execution_id = event.stream_id.strip_prefix(execution::STREAM_PREFIX)?;
        let agent_id = event.metadata.get("agent_id")?.as_str()?.to_owned();
        let execution_id = execution_id.to_owned();
        let fact = match decode::<ExecutionEvent>(event).ok()? {
            ExecutionEvent::ExecutionQueued { queued_at, .. } => AgentFact::Queued {
                execution_id,
                queued_at,
            },
            ExecutionEvent::ExecutionStarted { .. } => AgentFact::Started { execution_id },
            ExecutionEvent::ExecutionSucceeded { total_tokens, .. } => AgentFact::Finished {
                execution_id,
                succeeded: true,
                total_tokens: total_tokens.unwrap_or(0),
            },
            ExecutionEvent::ExecutionFailed { .. } => AgentFact::Finished {
                execution_id,
                succeeded: false,
                total_tokens: 0,
            },
            ExecutionEvent::LlmCalled { .. } | ExecutionEvent::LlmCallFailed { .. } => return None,
        };
        Some((agent_id, fact))
    }

    fn apply(
        row: Option<AgentSummary>,
        fact: AgentFact,
        recorded: &RecordedEvent,
    ) -> Option<AgentSummary> {
        let at = timestamp(recorded.recorded_at);
        let (mut row, fact) = match (row, fact) {
            (
                None,
                AgentFact::Lifecycle {
                    event:
                        AgentEvent::AgentRegistered {
                            agent_id,
                            tenant_id,
                            name,
                            model,
                        },
                    config_version,
                },
            ) => {
                return Some(AgentSummary {
                    agent_id,
                    tenant_id,
                    name,
                    model: Some(model),
                    status: "active".into(),
                    config_version: config_version.unwrap_or(1),
                    registered_at: at.clone(),
                    updated_at: at,
                    executions_total: 0,
                    executions_succeeded: 0,
                    executions_failed: 0,
                    total_tokens: 0,
                    last_execution_id: None,
                    last_execution_at: None,
                    last_execution_status: None,
                });
            }
            // Executions of an agent this model has not seen registered have no row to go to.
            (None, _) => return None,
            (Some(row), fact) => (row, fact),
        };
        match fact {
            AgentFact::Lifecycle {
                event,
                config_version,
            } => {
                let status = match event {
                    AgentEvent::AgentRegistered { .. } => return Some(row), // a repeat
                    AgentEvent::AgentPaused { .. } => Some("paused"),
                    AgentEvent::AgentActivated { .. } => Some("active"),
                    AgentEvent::AgentLlmKeySet { .. }
                    | AgentEvent::AgentUpdated { .. }
                    | AgentEvent::WebhookSecretRotated { .. } => None,
                };
                if let Some(status) = status {
                    row.status = status.into();
                }
                row.config_version = config_version.unwrap_or(row.config_version + 1);
                row.updated_at = at;
            }
            AgentFact::Queued {
                execution_id,
                queued_at,
            } => {
                row.executions_total += 1;
                row.last_execution_id = Some(execution_id);
                row.last_execution_at = Some(timestamp(queued_at));
                row.last_execution_status = Some("queued".into());
            }
            AgentFact::Started { execution_id } => {
                if row.last_execution_id.as_deref() == Some(&execution_id) {
                    row.last_execution_status = Some("running".into());
                }
            }
            AgentFact::Finished {
                execution_id,
                succeeded,
                total_tokens,
            } => {
                if succeeded {
                    row.executions_succeeded += 1;
                } else {
                    row.executions_failed += 1;
                }
                row.total_tokens += total_tokens as i64;
                if row.last_execution_id.as_deref() == Some(&execution_id) {
                    let status = if succeeded { "succeeded" } else { "failed" };
                    row.last_execution_status = Some(status.into());
                }
            }
        }
        Some(row)
    }
}

impl AgentSummary {
    /// Executions accepted but not finished yet.
    pub fn executions_in_progress(&self) -> i64 {
        self.executions_total - self.executions_succeeded - self.executions_failed
    }
}
