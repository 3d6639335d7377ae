//! Agents of the calling tenant: create, read, update (status, signature scheme,
//! replay window), webhook secret (read, rotate), BYOK key.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::auth::Tenant;
use super::error::ApiError;
use crate::catalog::commands::{self, CreateAgentError, NewAgent};
use crate::catalog::webhook_secrets::{self, DEFAULT_PREVIOUS_EXPIRES_IN_S};
use crate::catalog::{AgentRecord, AgentStatus, timestamp};
use crate::domain::AgentId;

impl From<CreateAgentError> for ApiError {
    fn from(e: CreateAgentError) -> Self {
        match e {
            CreateAgentError::Invalid(message) => ApiError::bad_request("invalid_agent", message),
            CreateAgentError::Catalog(e) => e.into(),
            CreateAgentError::Store(e) => e.into(),
            CreateAgentError::Conflict(message) => {
                ApiError::new(actix_web::http::StatusCode::CONFLICT, "conflict", message)
            }
        }
    }
}

fn describe(state: &AppState, agent: &AgentRecord) -> serde_json::Value {
    json!({
        "agent_id": agent.agent_id.to_string(),
        "tenant_id": agent.tenant_id.to_string(),
        "name": agent.name,
        "status": agent.status.as_str(),
        "system_prompt": agent.system_prompt,
        "llm_config": agent.llm_config,
        "payload_schema": agent.payload_schema,
        "signature_scheme": agent.signature_scheme,
        "timestamp_tolerance_s": agent.timestamp_tolerance_s,
        "previous_secret_expires_at": agent
            .live_previous_secret(chrono::Utc::now())
            .map(|p| timestamp(p.expires_at)),
        "key_source": if agent.llm_key_sealed.is_some() { "tenant" } else { "platform" },
        "config_version": agent.config_version,
        "webhook_url": state.webhook_url(&agent.agent_id),
        "created_at": crate::catalog::timestamp(agent.created_at),
    })
}

async fn owned_agent(
    state: &AppState,
    tenant: &Tenant,
    raw_id: &str,
) -> Result<AgentRecord, ApiError> {
    let agent_id =
        AgentId::parse(raw_id).map_err(|_| ApiError::not_found(format!("agent {raw_id}")))?;
    Ok(commands::agent_of_tenant(&state.db, &tenant.0, &agent_id).await?)
}

pub async fn create(
    tenant: Tenant,
    body: web::Json<NewAgent>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (agent, secret) = commands::create_agent(
        &state.db,
        &state.store,
        &state.sealer,
        &tenant.0,
        body.into_inner(),
    )
    .await?;
    let mut answer = describe(&state, &agent);
    answer["webhook_secret"] = json!(agent.signature_scheme.display_secret(&secret));
    Ok(HttpResponse::Created().json(answer))
}

pub async fn get(
    tenant: Tenant,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let agent = owned_agent(&state, &tenant, &path).await?;
    Ok(HttpResponse::Ok().json(describe(&state, &agent)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateAgent {
    status: Option<AgentStatus>,
    signature_scheme: Option<String>,
    timestamp_tolerance_s: Option<u64>,
}

/// `PATCH /api/agents/{id}` `{"status"?: "paused" | "active", "signature_scheme"?,
/// "timestamp_tolerance_s"?}`. Everything is validated before anything changes.
pub async fn update(
    tenant: Tenant,
    path: web::Path<String>,
    body: web::Json<UpdateAgent>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let agent = owned_agent(&state, &tenant, &path).await?;
    let scheme = body
        .signature_scheme
        .as_deref()
        .map(commands::parse_scheme)
        .transpose()?;
    let tolerance = body
        .timestamp_tolerance_s
        .map(commands::check_tolerance)
        .transpose()?;
    let changed = async {
        webhook_secrets::update_signature_settings(
            &state.db,
            &state.store,
            &agent,
            scheme,
            tolerance,
        )
        .await?;
        if let Some(status) = body.status.filter(|s| *s != agent.status) {
            commands::set_status(&state.db, &state.store, &agent, status).await?;
        }
        Ok::<_, ApiError>(())
    }
    .await;
    // Whatever part of the change was made, the webhook path must not keep the old one.
    state.agents.invalidate(&agent.agent_id);
    changed?;
    let agent = owned_agent(&state, &tenant, &path).await?;
    Ok(HttpResponse::Ok().json(describe(&state, &agent)))
}

pub async fn webhook_secret(
    tenant: Tenant,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let agent = owned_agent(&state, &tenant, &path).await?;
    let secret = agent
        .webhook_secret(&state.sealer)
        .map_err(|e| ApiError::internal(format!("agent {}: webhook secret {e}", agent.agent_id)))?;
    let scheme = agent.signature_scheme;
    Ok(HttpResponse::Ok().json(json!({
        "agent_id": agent.agent_id.to_string(),
        "webhook_secret": scheme.display_secret(&secret),
        "signature_scheme": scheme,
        "signature_header": scheme.signature_header(),
        "timestamp_tolerance_s": agent.timestamp_tolerance_s,
        "previous_secret_expires_at": agent
            .live_previous_secret(chrono::Utc::now())
            .map(|p| timestamp(p.expires_at)),
        "webhook_url": state.webhook_url(&agent.agent_id),
    })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Rotate {
    previous_expires_in_s: Option<u64>,
}

/// `POST /api/agents/{id}/webhook-secret/rotate` `{"previous_expires_in_s"?: N}`
/// (default one day; 0: the old secret stops verifying at once). The body is optional.
pub async fn rotate_webhook_secret(
    tenant: Tenant,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let agent = owned_agent(&state, &tenant, &path).await?;
    let options: Rotate = if body.iter().all(u8::is_ascii_whitespace) {
        Rotate::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request("invalid_json", format!("invalid request body: {e}"))
        })?
    };
    let expires_in = options
        .previous_expires_in_s
        .unwrap_or(DEFAULT_PREVIOUS_EXPIRES_IN_S);
    let rotated =
        webhook_secrets::rotate_secret(&state.db, &state.store, &state.sealer, &agent, expires_in)
            .await;
    state.agents.invalidate(&agent.agent_id);
    let (secret, previous_expires_at) = rotated?;
    Ok(HttpResponse::Ok().json(json!({
        "agent_id": agent.agent_id.to_string(),
        "webhook_secret": agent.signature_scheme.display_secret(&secret),
        "previous_expires_at": timestamp(previous_expires_at),
        "message": "the new secret verifies now; the previous one until previous_expires_at",
    })))
}

#[derive(Deserialize)]
pub struct LlmKey {
    api_key: String,
}

/// `PUT /api/agents/{id}/llm-key` `{"api_key": "sk-…"}`: the tenant's own gateway key.
pub async fn set_llm_key(
    tenant: Tenant,
    path: web::Path<String>,
    body: web::Json<LlmKey>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let agent = owned_agent(&state, &tenant, &path).await?;
    let set = commands::set_llm_key(
        &state.db,
        &state.store,
        &state.sealer,
        &agent,
        &body.api_key,
    )
    .await;
    state.agents.invalidate(&agent.agent_id);
    set?;
    Ok(HttpResponse::Ok().json(json!({
        "agent_id": agent.agent_id.to_string(),
        "key_source": "tenant",
        "message": "the agent now calls the gateway with the tenant's own key",
    })))
}
