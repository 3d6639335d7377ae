//! `DELETE /api/tenants/{id}` (admin): erases a tenant by destroying its data keys
//! (see `crate::erasure`). Its streams stay complete but its payloads, outputs and
//! gateway error texts can no longer be read; its catalog entries and read-model rows
//! are gone when this answers.

use actix_web::{HttpResponse, web};

use super::AppState;
use super::auth::Admin;
use super::error::ApiError;
use crate::domain::TenantId;
use crate::erasure::{EraseError, erase_tenant};

pub async fn erase(
    _admin: Admin,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let tenant =
        TenantId::parse(&path).map_err(|_| ApiError::not_found(format!("tenant {path}")))?;
    let erased = erase_tenant(&state.db, &state.store, &state.keys, &tenant).await;
    state.agents.clear();
    match erased {
        Ok(erasure) => Ok(HttpResponse::Ok().json(serde_json::json!({
            "tenant_id": erasure.tenant_id,
            "erased": true,
            "keys_destroyed": erasure.keys_destroyed,
            "agents_deleted": erasure.agents_deleted,
            "position": erasure.position.to_string(),
        }))),
        Err(EraseError::NotFound(t)) => Err(ApiError::not_found(format!("tenant {t}"))),
        Err(EraseError::Store(e)) => Err(e.into()),
        Err(EraseError::Database(e)) => Err(e.into()),
        Err(e) => Err(ApiError::internal(e)),
    }
}
