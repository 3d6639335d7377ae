//! Read APIs over the agent read models, for the calling tenant's own agents only
//! (another tenant's agent is a 404):
//! - `GET /api/agents` — `agent_summaries`, keyset-paginated.
//! - `GET /api/agents/{id}/executions?status=&since=&until=&limit=&cursor=` — the
//!   agent's `agent_test_executions` rows, newest first, keyset-paginated.
//! - `GET /api/agents/{id}/stats/daily?since=&until=` — `agent_daily_stats`.
//! - `GET /api/agents/{id}/events?from=&limit=` — the agent's lifecycle stream.
//!
//! A cursor is opaque to clients (base64url of the last row's sort key): pass
//! `next_cursor` back to get the next page; it is `null` on the last page.

use actix_web::{HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::auth::Tenant;
use super::error::ApiError;
use crate::catalog::{commands, timestamp};
use crate::domain::AgentId;
use crate::projections::agents_table;
use crate::projections::executions_table::{self, ExecutionFilter};

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;

fn limit(raw: Option<u32>) -> Result<u32, ApiError> {
    match raw.unwrap_or(DEFAULT_LIMIT) {
        n @ 1..=MAX_LIMIT => Ok(n),
        n => Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be between 1 and {MAX_LIMIT}, got {n}"),
        )),
    }
}

fn encode_cursor(a: &str, b: &str) -> String {
    URL_SAFE_NO_PAD.encode(json!([a, b]).to_string())
}

fn decode_cursor(raw: &str) -> Result<(String, String), ApiError> {
    let invalid = || ApiError::bad_request("invalid_cursor", "cursor is not one this API issued");
    let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| invalid())?;
    serde_json::from_slice(&bytes).map_err(|_| invalid())
}

/// An RFC 3339 time or a `YYYY-MM-DD` day (midnight UTC), in the stored form.
fn parse_time(name: &str, raw: &str) -> Result<String, ApiError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(timestamp(t.with_timezone(&Utc)));
    }
    match NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        Ok(day) => Ok(timestamp(
            day.and_hms_opt(0, 0, 0).expect("midnight").and_utc(),
        )),
        Err(_) => Err(ApiError::bad_request(
            "invalid_time",
            format!("{name} must be an RFC 3339 time or a YYYY-MM-DD day, got {raw:?}"),
        )),
    }
}

/// The agent, if it is the tenant's.
async fn own_agent(state: &AppState, tenant: &Tenant, raw: &str) -> Result<AgentId, ApiError> {
    let id = AgentId::parse(raw).map_err(|_| ApiError::not_found(format!("agent {raw}")))?;
    commands::agent_of_tenant(&state.db, &tenant.0, &id).await?;
    Ok(id)
}

#[derive(Deserialize)]
pub struct Page {
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `GET /api/agents`
pub async fn list(
    tenant: Tenant,
    query: web::Query<Page>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let limit = limit(query.limit)?;
    let after = query.cursor.as_deref().map(decode_cursor).transpose()?;
    let mut rows =
        agents_table::list_for_tenant(&state.db, tenant.0.as_ref(), after, limit + 1).await?;
    let next = (rows.len() > limit as usize).then(|| {
        rows.truncate(limit as usize);
        let last = rows.last().expect("limit >= 1");
        encode_cursor(&last.registered_at, &last.agent_id)
    });
    let agents: Vec<_> = rows
        .iter()
        .map(|row| {
            let mut v = serde_json::to_value(row).expect("rows serialize");
            v["executions_in_progress"] = json!(row.executions_in_progress());
            v
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "agents": agents, "next_cursor": next })))
}

#[derive(Deserialize)]
pub struct ExecutionQuery {
    status: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `GET /api/agents/{id}/executions`
pub async fn executions(
    tenant: Tenant,
    path: web::Path<String>,
    query: web::Query<ExecutionQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let agent = own_agent(&state, &tenant, &path).await?;
    let limit = limit(query.limit)?;
    if let Some(status) = &query.status
        && !["queued", "running", "succeeded", "failed"].contains(&status.as_str())
    {
        return Err(ApiError::bad_request(
            "invalid_status",
            format!("status must be queued, running, succeeded or failed, got {status:?}"),
        ));
    }
    let filter = ExecutionFilter {
        status: query.status.clone(),
        since: query
            .since
            .as_deref()
            .map(|s| parse_time("since", s))
            .transpose()?,
        until: query
            .until
            .as_deref()
            .map(|s| parse_time("until", s))
            .transpose()?,
        after: query.cursor.as_deref().map(decode_cursor).transpose()?,
    };
    let mut rows = executions_table::list_for_agent(
        &state.db,
        tenant.0.as_ref(),
        &agent.to_string(),
        &filter,
        limit + 1,
    )
    .await?;
    let next = (rows.len() > limit as usize).then(|| {
        rows.truncate(limit as usize);
        let last = rows.last().expect("limit >= 1");
        encode_cursor(&last.queued_at, &last.execution_id)
    });
    Ok(HttpResponse::Ok().json(json!({
        "agent_id": agent.to_string(),
        "executions": rows,
        "next_cursor": next,
    })))
}

#[derive(Deserialize)]
pub struct DayRange {
    since: Option<NaiveDate>,
    until: Option<NaiveDate>,
}

/// `GET /api/agents/{id}/stats/daily` (default: the last 30 days).
pub async fn daily_stats(
    tenant: Tenant,
    path: web::Path<String>,
    query: web::Query<DayRange>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let agent = own_agent(&state, &tenant, &path).await?;
    let until = query.until.unwrap_or_else(|| Utc::now().date_naive());
    let since = query.since.unwrap_or(until - chrono::Days::new(29));
    let days = agents_table::daily_stats(
        &state.db,
        tenant.0.as_ref(),
        &agent.to_string(),
        &since.to_string(),
        &until.to_string(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(json!({ "agent_id": agent.to_string(), "days": days })))
}

#[derive(Deserialize)]
pub struct StreamPage {
    from: Option<u64>,
    limit: Option<u32>,
}

/// `GET /api/agents/{id}/events`: the `agent-{id}` stream from revision `from`.
pub async fn events(
    tenant: Tenant,
    path: web::Path<String>,
    query: web::Query<StreamPage>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let agent = own_agent(&state, &tenant, &path).await?;
    let limit = limit(query.limit)? as usize;
    let from = query.from.unwrap_or(0);
    let stream = crate::events::agent::stream_name(&agent.to_string());
    let events = state.store.read_stream(&stream, from, limit + 1).await?;
    let next = (events.len() > limit).then(|| events[limit].revision);
    let events: Vec<_> = events
        .iter()
        .take(limit)
        .map(super::executions::event_json)
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "agent_id": agent.to_string(),
        "stream_id": stream,
        "events": events,
        "next_from": next,
    })))
}
