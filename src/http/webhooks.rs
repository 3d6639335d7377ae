//! `POST /webhooks/agents/{agent_id}` (and the alias senders already use,
//! `POST /webhook/agents/{agent_id}/webhook`).
//!
//! Order of checks: size limit → agent (exists, active) → signature over the raw
//! body → content type → JSON (depth, syntax) → JSON Schema → delivery id → the
//! agent's actor. Nothing is stored before the actor accepts.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpRequest, HttpResponse, web};
use futures::StreamExt;
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use crate::actors::{Enqueue, EnqueueError, Enqueued};
use crate::catalog::{AgentRecord, AgentStatus, agents};
use crate::domain::{AgentId, DeliveryId};
use crate::webhook;

/// Deepest JSON nesting accepted (deeper payloads are rejected before parsing).
const MAX_JSON_DEPTH: usize = 64;

pub async fn receive(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&req, body, state.settings.max_body_bytes).await?;
    let agent = find_active_agent(&state, &path).await?;
    verify_signature(&state, &req, &agent, &body)?;
    check_content_type(&req)?;
    let payload = parse_json(&body)?;
    check_schema(&state, &agent, &payload)?;
    let delivery_id = match webhook::delivery_id(&HeaderAdapter(&req)) {
        Some(raw) => DeliveryId::parse(&raw)
            .map_err(|e| ApiError::bad_request("invalid_delivery_id", e.0))?,
        None => DeliveryId::generate(),
    };
    let agent = Arc::new(agent);
    match state
        .registry
        .enqueue(Enqueue::new(agent, delivery_id, payload))
        .await
    {
        Ok(Enqueued::Queued(id)) => Ok(HttpResponse::Accepted().json(json!({
            "status": "queued",
            "execution_id": id.to_string(),
            "message": "webhook accepted; the agent will run",
        }))),
        Ok(Enqueued::Duplicate(id)) => Ok(HttpResponse::Ok().json(json!({
            "status": "duplicate",
            "execution_id": id.to_string(),
            "message": "this delivery id was already accepted; nothing new was started",
        }))),
        Err(EnqueueError::Busy) => Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "agent_busy",
            "the agent has too many executions queued; retry later",
        )
        .retry_after(1)),
        Err(EnqueueError::Overloaded) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "hookrun has too many executions in flight; retry later",
        )
        .retry_after(5)),
        Err(EnqueueError::Store(e)) => Err(e.into()),
        Err(EnqueueError::Internal(e)) => Err(ApiError::internal(e)),
    }
}

async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than the limit of {limit} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(4096).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request("invalid_body", format!("could not read the body: {e}"))
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

async fn find_active_agent(state: &AppState, raw_id: &str) -> Result<AgentRecord, ApiError> {
    let unknown = || ApiError::not_found(format!("agent {raw_id}"));
    let agent_id = AgentId::parse(raw_id).map_err(|_| unknown())?;
    let agent = agents::get(&state.db, &agent_id)
        .await?
        .ok_or_else(unknown)?;
    if agent.status != AgentStatus::Active {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "agent_not_active",
            format!(
                "agent {agent_id} is {} and does not accept webhooks",
                agent.status.as_str()
            ),
        ));
    }
    Ok(agent)
}

fn verify_signature(
    state: &AppState,
    req: &HttpRequest,
    agent: &AgentRecord,
    body: &[u8],
) -> Result<(), ApiError> {
    let aad = agents::webhook_secret_aad(&agent.agent_id);
    let secret = state
        .sealer
        .open(&agent.webhook_secret_sealed, aad.as_bytes())
        .ok()
        .and_then(|s| String::from_utf8(s).ok())
        .ok_or_else(|| {
            ApiError::internal(format!(
                "agent {}: webhook secret cannot be unsealed",
                agent.agent_id
            ))
        })?;
    let scheme = agent.signature_scheme.parse().unwrap_or_default();
    webhook::verify(
        scheme,
        &[secret.as_str()],
        &HeaderAdapter(req),
        body,
        chrono::Utc::now().timestamp(),
        webhook::DEFAULT_TOLERANCE_S,
    )
    .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, "invalid_signature", e.to_string()))
}

fn check_content_type(req: &HttpRequest) -> Result<(), ApiError> {
    let Some(value) = req.headers().get(CONTENT_TYPE) else {
        return Ok(()); // Many senders omit it; the body must still parse as JSON.
    };
    let mime = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime == "application/json" || mime.ends_with("+json") {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("Content-Type {mime:?} is not accepted: send application/json"),
        ))
    }
}

fn parse_json(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    webhook::check_depth(body, MAX_JSON_DEPTH)
        .map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))?;
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
    })
}

fn check_schema(
    state: &AppState,
    agent: &AgentRecord,
    payload: &serde_json::Value,
) -> Result<(), ApiError> {
    let Some(schema) = &agent.payload_schema else {
        return Ok(());
    };
    let compiled = state
        .schemas
        .get_or_compile(&agent.agent_id.to_string(), agent.config_version, schema)
        .map_err(|e| {
            ApiError::internal(format!(
                "agent {}: stored schema does not compile: {e}",
                agent.agent_id
            ))
        })?;
    compiled.validate(payload).map_err(|violations| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "schema_violation",
            format!(
                "the payload does not match the agent's schema ({} violation(s))",
                violations.len()
            ),
        )
        .with_details("violations", json!(violations))
    })
}

/// Lets the pure verifier read actix headers.
struct HeaderAdapter<'a>(&'a HttpRequest);

impl webhook::Headers for HeaderAdapter<'_> {
    fn get_all(&self, name: &str) -> Vec<&str> {
        self.0
            .headers()
            .get_all(name)
            .filter_map(|v| v.to_str().ok())
            .collect()
    }
}
