//! `GET /api/agents/{id}/deliveries?limit=&cursor=`: the agent's delivery audit log,
//! newest first. `next_cursor` (when present) fetches the next, older page.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::auth::Tenant;
use super::error::ApiError;
use crate::catalog::commands;
use crate::deliveries::store;
use crate::domain::AgentId;

/// Page size when the caller does not say.
const DEFAULT_LIMIT: i64 = 50;

#[derive(Deserialize)]
pub struct Page {
    limit: Option<i64>,
    cursor: Option<String>,
}

pub async fn list(
    tenant: Tenant,
    path: web::Path<String>,
    page: web::Query<Page>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let agent_id =
        AgentId::parse(&path).map_err(|_| ApiError::not_found(format!("agent {path}")))?;
    commands::agent_of_tenant(&state.db, &tenant.0, &agent_id).await?;
    let limit = page.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=store::MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be between 1 and {}", store::MAX_LIMIT),
        ));
    }
    let before = page
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<i64>().map_err(|_| {
                ApiError::bad_request("invalid_cursor", "cursor must be a next_cursor value")
            })
        })
        .transpose()?;
    let rows = store::list(&state.db, Some(&agent_id), before, limit).await?;
    let next_cursor = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id.to_string()))
        .flatten();
    Ok(HttpResponse::Ok().json(json!({
        "agent_id": agent_id.to_string(),
        "deliveries": rows,
        "next_cursor": next_cursor,
    })))
}
