//! Executions of the calling tenant: the read-model row and the raw event stream.

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::AppState;
use super::auth::Tenant;
use super::error::ApiError;
use crate::domain::ExecutionId;
use crate::events::execution::stream_name;
use crate::projections::executions_table;

fn parse_id(raw: &str) -> Result<ExecutionId, ApiError> {
    ExecutionId::parse(raw).map_err(|_| ApiError::not_found(format!("execution {raw}")))
}

/// `GET /api/executions/{id}`: the `agent_test_executions` row.
pub async fn get(
    tenant: Tenant,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    match executions_table::find(&state.db, &id.to_string()).await? {
        Some(row) if row.tenant_id == tenant.0.as_ref() => Ok(HttpResponse::Ok().json(row)),
        _ => Err(ApiError::not_found(format!("execution {id}"))),
    }
}

/// `GET /api/executions/{id}/events`: the execution's stream, in order.
pub async fn events(
    tenant: Tenant,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let events = state
        .store
        .read_stream(&stream_name(id.as_uuid()), 0, 10_000)
        .await?;
    let owner = events
        .first()
        .and_then(|e| e.metadata["tenant_id"].as_str());
    if owner != Some(tenant.0.as_ref()) {
        return Err(ApiError::not_found(format!("execution {id}")));
    }
    let events: Vec<_> = events.iter().map(event_json).collect();
    Ok(HttpResponse::Ok().json(json!({ "execution_id": id.to_string(), "events": events })))
}

/// An event as the API shows it.
pub(super) fn event_json(e: &crate::events::RecordedEvent) -> serde_json::Value {
    json!({
        "type": e.event_type,
        "stream_id": e.stream_id,
        "revision": e.revision,
        "position": e.position.to_string(),
        "event_id": e.event_id,
        "data": e.data,
        "metadata": e.metadata,
        "recorded_at": crate::catalog::timestamp(e.recorded_at),
    })
}
