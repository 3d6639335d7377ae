//! The checks of the webhook handler (`webhooks.rs`), one function each, in the
//! order it runs them. Each answers with the error the sender sees.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::{HttpRequest, web};
use futures::StreamExt;
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use crate::catalog::{AgentRecord, AgentStatus};
use crate::domain::AgentId;
use crate::webhook::{self, SignatureError};

/// Deepest JSON nesting accepted (deeper payloads are rejected before parsing).
const MAX_JSON_DEPTH: usize = 64;

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the body is larger than the limit of {limit} bytes"),
    )
}

/// A declared `Content-Length` over the limit is refused before anything else.
pub(super) fn check_declared_length(req: &HttpRequest, limit: usize) -> Result<(), ApiError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    match declared {
        Some(n) if n > limit => Err(too_large(limit)),
        _ => Ok(()),
    }
}

/// Reads the body, refusing it as soon as it grows past `limit` (a sender may
/// declare no length, or a false one).
pub(super) async fn read_body(
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, ApiError> {
    let mut body = web::BytesMut::with_capacity(4096.min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request("invalid_body", format!("could not read the body: {e}"))
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The agent named by the path (any status), and whether it came from memory; 404
/// when there is none.
pub(super) async fn find_agent(
    state: &AppState,
    raw_id: &str,
) -> Result<(Arc<AgentRecord>, bool), ApiError> {
    let unknown = || ApiError::not_found(format!("agent {raw_id}"));
    let agent_id = AgentId::parse(raw_id).map_err(|_| unknown())?;
    let found = state
        .agents
        .get(&state.db, &agent_id)
        .await?
        .ok_or_else(unknown)?;
    Ok((found.agent, found.from_memory))
}

/// The agent as stored now (it was found a moment ago; 404 if it is gone since).
pub(super) async fn reload_agent(
    state: &AppState,
    agent_id: &AgentId,
) -> Result<Arc<AgentRecord>, ApiError> {
    state
        .agents
        .reload(&state.db, agent_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("agent {agent_id}")))
}

/// Only active agents accept webhooks.
pub(super) fn check_active(agent: &AgentRecord) -> Result<(), ApiError> {
    if agent.status == AgentStatus::Active {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "agent_not_active",
        format!(
            "agent {} is {} and does not accept webhooks",
            agent.agent_id,
            agent.status.as_str()
        ),
    ))
}

/// Verifies the signature with the agent's scheme and replay window, against the
/// current secret and, during a rotation overlap, the previous one.
pub(super) fn verify_signature(
    state: &AppState,
    req: &HttpRequest,
    agent: &AgentRecord,
    body: &[u8],
) -> Result<(), ApiError> {
    let id = &agent.agent_id;
    let current = agent
        .webhook_secret(&state.sealer)
        .map_err(|e| ApiError::internal(format!("agent {id}: webhook secret {e}")))?;
    let now = chrono::Utc::now();
    let previous = agent
        .live_previous_webhook_secret(&state.sealer, now)
        .and_then(|opened| {
            // The current secret still works: a broken previous one is logged, not fatal.
            opened
                .inspect_err(|e| tracing::error!(agent_id = %id, "previous webhook secret {e}"))
                .ok()
        });
    let secrets: Vec<&str> = std::iter::once(current.as_str())
        .chain(previous.as_deref())
        .collect();
    webhook::verify(
        agent.signature_scheme,
        &secrets,
        &HeaderAdapter(req),
        body,
        now.timestamp(),
        agent.timestamp_tolerance_s,
    )
    .map_err(|e| {
        let code = match e {
            SignatureError::TimestampStale { .. } => "stale_timestamp",
            SignatureError::TimestampInFuture { .. } => "future_timestamp",
            _ => "invalid_signature",
        };
        ApiError::new(StatusCode::UNAUTHORIZED, code, e.to_string())
    })
}

pub(super) fn check_content_type(req: &HttpRequest) -> Result<(), ApiError> {
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

pub(super) fn parse_json(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    let invalid = |message: String| ApiError::bad_request("invalid_json", message);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(invalid(
            "the body is empty: send a JSON document (e.g. {})".into(),
        ));
    }
    if let Err(e) = std::str::from_utf8(body) {
        return Err(invalid(format!(
            "the body is not UTF-8 (invalid byte at offset {}): JSON must be sent as UTF-8",
            e.valid_up_to()
        )));
    }
    webhook::check_depth(body, MAX_JSON_DEPTH).map_err(|e| invalid(e.to_string()))?;
    serde_json::from_slice(body).map_err(|e| invalid(format!("the body is not valid JSON: {e}")))
}

pub(super) fn check_schema(
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
pub(super) struct HeaderAdapter<'a>(pub(super) &'a HttpRequest);

impl webhook::Headers for HeaderAdapter<'_> {
    fn get_all(&self, name: &str) -> Vec<&str> {
        self.0
            .headers()
            .get_all(name)
            .filter_map(|v| v.to_str().ok())
            .collect()
    }
}
