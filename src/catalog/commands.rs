//! Catalog changes shared by the HTTP API and the CLI: each validates its input,
//! writes the catalog, and records a lifecycle event in the agent's stream.

use std::sync::Arc;

use chrono::Utc;
use uuid::Uuid;

use super::agents::{self, AgentRecord, AgentStatus, LlmConfig};
use super::{CatalogError, tenants};
use crate::crypto::{self, Sealer};
use crate::db::Db;
use crate::domain::{AgentId, TenantId};
use crate::events::agent::{AgentEvent, stream_name};
use crate::events::envelope::{SCHEMA_VERSION, fresh_event_id};
use crate::events::{EventMetadata, EventStore, ExpectedVersion, NewEvent};
use crate::webhook::{PayloadSchema, SignatureScheme};

/// Creates a tenant and returns its first API key (shown once; only its hash is kept).
pub async fn create_tenant(db: &Db, tenant: &TenantId) -> Result<String, CatalogError> {
    Ok(create_tenant_with_key_id(db, tenant).await?.1)
}

/// Like [`create_tenant`], also returning the key's id (to revoke it later).
pub async fn create_tenant_with_key_id(
    db: &Db,
    tenant: &TenantId,
) -> Result<(String, String), CatalogError> {
    let (key, hash) = crypto::generate_api_key();
    let key_id = new_key_id();
    tenants::create(db, tenant, &key_id, &hash).await?;
    Ok((key_id, key))
}

/// Issues another API key for an existing tenant: `(key id, key)`, the key shown once.
pub async fn create_api_key(db: &Db, tenant: &TenantId) -> Result<(String, String), CatalogError> {
    let (key, hash) = crypto::generate_api_key();
    let key_id = new_key_id();
    tenants::add_key(db, tenant, &key_id, &hash).await?;
    Ok((key_id, key))
}

/// Key ids are public handles (listed, used to revoke); 12 hex characters.
fn new_key_id() -> String {
    Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// What a caller asks for when creating an agent (raw, validated by [`create_agent`]).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct NewAgent {
    pub name: String,
    pub system_prompt: String,
    pub llm_config: serde_json::Value,
    #[serde(default)]
    pub payload_schema: Option<serde_json::Value>,
    /// `github` (default), `standard` or `stripe`.
    #[serde(default)]
    pub signature_scheme: Option<String>,
    /// Replay window of timestamped schemes (default 300 s).
    #[serde(default)]
    pub timestamp_tolerance_s: Option<u64>,
}

/// Parses a scheme name as a caller gave it.
pub fn parse_scheme(raw: &str) -> Result<SignatureScheme, CreateAgentError> {
    raw.parse()
        .map_err(|e: crate::webhook::UnknownScheme| CreateAgentError::Invalid(e.to_string()))
}

/// Checks a replay window against [`agents::TOLERANCE_RANGE_S`].
pub fn check_tolerance(seconds: u64) -> Result<u64, CreateAgentError> {
    if agents::TOLERANCE_RANGE_S.contains(&seconds) {
        Ok(seconds)
    } else {
        Err(CreateAgentError::Invalid(format!(
            "timestamp_tolerance_s must be between {} and {} seconds",
            agents::TOLERANCE_RANGE_S.start(),
            agents::TOLERANCE_RANGE_S.end()
        )))
    }
}

/// Why an agent could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateAgentError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Store(#[from] crate::events::StoreError),
    /// The change raced with another one; nothing was written.
    #[error("{0}")]
    Conflict(String),
}

/// Creates an active agent; returns it with its webhook secret in plain text (shown once
/// here, and later only through the tenant's authenticated secret endpoint). The
/// secret is returned as stored; show it with `SignatureScheme::display_secret`.
pub async fn create_agent(
    db: &Db,
    store: &Arc<dyn EventStore>,
    sealer: &Sealer,
    tenant: &TenantId,
    new: NewAgent,
) -> Result<(AgentRecord, String), CreateAgentError> {
    let name = new.name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(CreateAgentError::Invalid(
            "name must be 1-200 characters".into(),
        ));
    }
    let llm_config = LlmConfig::parse(&new.llm_config).map_err(CreateAgentError::Invalid)?;
    let signature_scheme = new
        .signature_scheme
        .as_deref()
        .map(parse_scheme)
        .transpose()?
        .unwrap_or_default();
    let timestamp_tolerance_s = check_tolerance(
        new.timestamp_tolerance_s
            .unwrap_or(crate::webhook::DEFAULT_TOLERANCE_S),
    )?;
    if let Some(schema) = &new.payload_schema {
        PayloadSchema::compile(schema).map_err(|e| {
            CreateAgentError::Invalid(format!("payload_schema is not a valid JSON Schema: {e}"))
        })?;
    }
    if !tenants::exists(db, tenant).await? {
        return Err(CatalogError::NotFound(format!("tenant {tenant}")).into());
    }
    let agent_id = AgentId::generate();
    let secret = crypto::generate_webhook_secret();
    let agent = AgentRecord {
        agent_id,
        tenant_id: tenant.clone(),
        name: name.to_owned(),
        system_prompt: new.system_prompt,
        llm_config,
        payload_schema: new.payload_schema,
        status: AgentStatus::Active,
        signature_scheme,
        timestamp_tolerance_s,
        webhook_secret_sealed: sealer.seal(
            secret.as_bytes(),
            agents::webhook_secret_aad(&agent_id).as_bytes(),
        ),
        previous_secret: None,
        llm_key_sealed: None,
        config_version: 1,
        created_at: Utc::now(),
    };
    agents::insert(db, &agent).await?;
    let event = AgentEvent::AgentRegistered {
        agent_id: agent_id.to_string(),
        tenant_id: tenant.to_string(),
        name: agent.name.clone(),
        model: agent.llm_config.model.clone(),
    };
    record(store, &agent, event).await?;
    Ok((agent, secret))
}

/// The agent if it belongs to `tenant` (another tenant's agent does not exist for it).
pub async fn agent_of_tenant(
    db: &Db,
    tenant: &TenantId,
    agent_id: &AgentId,
) -> Result<AgentRecord, CatalogError> {
    match agents::get(db, agent_id).await? {
        Some(agent) if &agent.tenant_id == tenant => Ok(agent),
        _ => Err(CatalogError::NotFound(format!("agent {agent_id}"))),
    }
}

/// Sets the tenant's own gateway key for an agent (sealed at rest).
pub async fn set_llm_key(
    db: &Db,
    store: &Arc<dyn EventStore>,
    sealer: &Sealer,
    agent: &AgentRecord,
    key: &str,
) -> Result<(), CreateAgentError> {
    let key = key.trim();
    if key.is_empty() || key.len() > 4096 {
        return Err(CreateAgentError::Invalid(
            "api_key must be 1-4096 characters".into(),
        ));
    }
    let sealed = sealer.seal(
        key.as_bytes(),
        agents::llm_key_aad(&agent.agent_id).as_bytes(),
    );
    if !agents::set_llm_key(db, &agent.agent_id, &sealed).await? {
        return Err(CatalogError::NotFound(format!("agent {}", agent.agent_id)).into());
    }
    record(
        store,
        agent,
        AgentEvent::AgentLlmKeySet {
            agent_id: agent.agent_id.to_string(),
        },
    )
    .await?;
    Ok(())
}

/// Pauses or activates an agent.
pub async fn set_status(
    db: &Db,
    store: &Arc<dyn EventStore>,
    agent: &AgentRecord,
    status: AgentStatus,
) -> Result<(), CreateAgentError> {
    if !agents::set_status(db, &agent.agent_id, status).await? {
        return Err(CatalogError::NotFound(format!("agent {}", agent.agent_id)).into());
    }
    let agent_id = agent.agent_id.to_string();
    let event = match status {
        AgentStatus::Active => AgentEvent::AgentActivated { agent_id },
        AgentStatus::Paused => AgentEvent::AgentPaused { agent_id },
    };
    record(store, agent, event).await?;
    Ok(())
}

pub(super) async fn record(
    store: &Arc<dyn EventStore>,
    agent: &AgentRecord,
    event: AgentEvent,
) -> Result<(), crate::events::StoreError> {
    let meta = EventMetadata {
        event_id: fresh_event_id(),
        tenant_id: agent.tenant_id.to_string(),
        agent_id: agent.agent_id.to_string(),
        correlation_id: format!("agent-{}", agent.agent_id),
        causation_id: None,
        occurred_at: Utc::now(),
        schema_version: SCHEMA_VERSION,
    };
    let new = NewEvent::from_typed(event.event_type(), &event, &meta)
        .map_err(|e| crate::events::StoreError::Backend(e.to_string()))?;
    store
        .append(
            &stream_name(&agent.agent_id.to_string()),
            ExpectedVersion::Any,
            vec![new],
        )
        .await?;
    Ok(())
}
