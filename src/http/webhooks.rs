//! `POST /webhooks/agents/{agent_id}` (and the alias senders already use,
//! `POST /webhook/agents/{agent_id}/webhook`).
//!
//! Order of checks: declared size → agent (exists, active) → rate limits → body
//! (size) → signature over the raw body (scheme and replay window per agent, the
//! previous secret during a rotation overlap) → content type → JSON (depth,
//! syntax) → JSON Schema → delivery id → the agent's actor. Nothing is stored
//! before the actor accepts, except the audit record of the request itself, which
//! is written off the request path (see `crate::audit`) whatever the answer.
//! The individual checks are in `webhook_checks.rs`.

use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use super::webhook_checks::{self as checks, HeaderAdapter};
use crate::actors::{Enqueue, EnqueueError, Enqueued};
use crate::catalog::{AgentRecord, AgentStatus};
use crate::deliveries::{DeliveryRecord, Outcome};
use crate::domain::{AgentId, DeliveryId, TenantId};
use crate::webhook;

/// What is known about a request so far, for its audit record.
#[derive(Default)]
struct Trace {
    agent: Option<(AgentId, TenantId)>,
    delivery_id: Option<String>,
}

pub async fn receive(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let started = Instant::now();
    let received_at = chrono::Utc::now();
    let mut trace = Trace::default();
    let result = handle(&req, &path, body, &state, &mut trace).await;
    let (response, outcome, reason, execution_id) = match result {
        Ok(Enqueued::Queued(id)) => (
            HttpResponse::Accepted().json(json!({
                "status": "queued",
                "execution_id": id.to_string(),
                "message": "webhook accepted; the agent will run",
            })),
            Outcome::Accepted,
            None,
            Some(id.to_string()),
        ),
        Ok(Enqueued::Duplicate(id)) => (
            HttpResponse::Ok().json(json!({
                "status": "duplicate",
                "execution_id": id.to_string(),
                "message": "this delivery id was already accepted; nothing new was started",
            })),
            Outcome::Duplicate,
            None,
            Some(id.to_string()),
        ),
        Err(e) => (e.error_response(), Outcome::Rejected, Some(e.code), None),
    };
    let status = response.status().as_u16();
    state.metrics.count_webhook(status);
    state.audit.record(DeliveryRecord {
        agent: trace.agent,
        requested_agent: DeliveryRecord::requested_agent(&path),
        delivery_id: trace.delivery_id,
        execution_id,
        outcome,
        reason,
        status,
        source_addr: req.peer_addr().map(|a| a.ip().to_string()),
        received_at,
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        count: 1,
    });
    response
}

async fn handle(
    req: &HttpRequest,
    raw_agent_id: &str,
    body: web::Payload,
    state: &AppState,
    trace: &mut Trace,
) -> Result<Enqueued, ApiError> {
    let limit = state.settings.max_body_bytes;
    checks::check_declared_length(req, limit)?;
    let (mut agent, mut from_memory) = checks::find_agent(state, raw_agent_id).await?;
    trace.agent = Some((agent.agent_id, agent.tenant_id.clone()));
    let claimed_id = webhook::delivery_id_for(agent.signature_scheme, &HeaderAdapter(req));
    // Recorded even when the request is refused (helps a sender find its delivery);
    // only a valid id is kept, so the audit log holds nothing a sender could abuse.
    trace.delivery_id = claimed_id
        .as_deref()
        .and_then(|raw| DeliveryId::parse(raw).ok())
        .map(|id| id.to_string());
    // A record from memory may predate a change made elsewhere: whatever it refuses
    // is decided again on the stored record (see `catalog::cache`).
    if agent.status != AgentStatus::Active && from_memory {
        (agent, from_memory) = (checks::reload_agent(state, &agent.agent_id).await?, false);
    }
    checks::check_active(&agent)?;
    state.rate_limits.check(&agent.agent_id, &agent.tenant_id)?;
    let body = checks::read_body(body, limit).await?;
    let payload = loop {
        match check_body(state, req, &agent, &body) {
            Ok(payload) => break payload,
            Err(e)
                if from_memory
                    && e.code != "invalid_json"
                    && e.code != "unsupported_media_type" =>
            {
                (agent, from_memory) = (checks::reload_agent(state, &agent.agent_id).await?, false);
                checks::check_active(&agent)?;
            }
            Err(e) => return Err(e),
        }
    };
    let delivery_id = match claimed_id {
        Some(raw) => DeliveryId::parse(&raw)
            .map_err(|e| ApiError::bad_request("invalid_delivery_id", e.0))?,
        None => DeliveryId::generate(),
    };
    trace.delivery_id = Some(delivery_id.to_string());
    state
        .registry
        .enqueue(Enqueue::new(agent, delivery_id, payload))
        .await
        .map_err(|e| match e {
            EnqueueError::Busy => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "agent_busy",
                "the agent has too many executions queued; retry later",
            )
            .retry_after(1),
            EnqueueError::Overloaded => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "hookrun has too many executions in flight; retry later",
            )
            .retry_after(5),
            EnqueueError::Store(e) => e.into(),
            EnqueueError::Internal(e) => ApiError::internal(e),
        })
}

/// The checks of the body that depend on the agent's configuration, in order.
fn check_body(
    state: &AppState,
    req: &HttpRequest,
    agent: &AgentRecord,
    body: &[u8],
) -> Result<serde_json::Value, ApiError> {
    checks::verify_signature(state, req, agent, body)?;
    checks::check_content_type(req)?;
    let payload = checks::parse_json(body)?;
    checks::check_schema(state, agent, &payload)?;
    Ok(payload)
}
