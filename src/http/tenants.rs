//! Tenants and their API keys (admin token): create a tenant, issue, list and revoke
//! keys. A key is shown once, when it is issued; only its hash is stored.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::auth::Admin;
use super::error::ApiError;
use crate::catalog::{commands, tenants};
use crate::domain::TenantId;

#[derive(Deserialize)]
pub struct CreateTenant {
    tenant_id: String,
}

/// `POST /api/tenants` `{"tenant_id"}` → the tenant and its first API key.
pub async fn create(
    _admin: Admin,
    body: web::Json<CreateTenant>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = TenantId::parse(&body.tenant_id)
        .map_err(|e| ApiError::bad_request("invalid_tenant_id", e.0))?;
    let (key_id, api_key) = commands::create_tenant_with_key_id(&state.db, &tenant).await?;
    Ok(HttpResponse::Created().json(json!({
        "tenant_id": tenant.to_string(),
        "api_key": api_key,
        "key_id": key_id,
        "message": "store the api_key now: it is not shown again",
    })))
}

/// An existing tenant named by the path (an invalid name cannot exist: 404).
async fn existing_tenant(state: &AppState, raw: &str) -> Result<TenantId, ApiError> {
    let unknown = || ApiError::not_found(format!("tenant {raw}"));
    let tenant = TenantId::parse(raw).map_err(|_| unknown())?;
    if tenants::exists(&state.db, &tenant).await? {
        Ok(tenant)
    } else {
        Err(unknown())
    }
}

/// `POST /api/tenants/{id}/keys` → another API key for the tenant (shown once).
pub async fn create_key(
    _admin: Admin,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = existing_tenant(&state, &path).await?;
    let (key_id, api_key) = commands::create_api_key(&state.db, &tenant).await?;
    Ok(HttpResponse::Created().json(json!({
        "tenant_id": tenant.to_string(),
        "key_id": key_id,
        "api_key": api_key,
        "message": "store the api_key now: it is not shown again",
    })))
}

/// `GET /api/tenants/{id}/keys` → the tenant's key ids, when they were issued and revoked.
pub async fn list_keys(
    _admin: Admin,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = existing_tenant(&state, &path).await?;
    let keys = tenants::list_keys(&state.db, &tenant).await?;
    Ok(HttpResponse::Ok().json(json!({ "tenant_id": tenant.to_string(), "keys": keys })))
}

/// `DELETE /api/tenants/{id}/keys/{key_id}`: the key stops working at once (401).
pub async fn revoke_key(
    _admin: Admin,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (raw_tenant, key_id) = path.into_inner();
    let tenant = existing_tenant(&state, &raw_tenant).await?;
    if !tenants::revoke_key(&state.db, &tenant, &key_id).await? {
        return Err(ApiError::not_found(format!(
            "key {key_id} of tenant {tenant}"
        )));
    }
    Ok(HttpResponse::Ok().json(json!({
        "tenant_id": tenant.to_string(),
        "key_id": key_id,
        "revoked": true,
    })))
}
