//! `POST /api/tenants` (admin): creates a tenant and shows its API key once.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::auth::Admin;
use super::error::ApiError;
use crate::catalog::commands;
use crate::domain::TenantId;

#[derive(Deserialize)]
pub struct CreateTenant {
    tenant_id: String,
}

pub async fn create(
    _admin: Admin,
    body: web::Json<CreateTenant>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = TenantId::parse(&body.tenant_id)
        .map_err(|e| ApiError::bad_request("invalid_tenant_id", e.0))?;
    let api_key = commands::create_tenant(&state.db, &tenant).await?;
    Ok(HttpResponse::Created().json(json!({
        "tenant_id": tenant.to_string(),
        "api_key": api_key,
        "message": "store the api_key now: it is not shown again",
    })))
}
