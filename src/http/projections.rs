//! `GET /api/projections`: every read model's version, checkpoint, lag and rebuild
//! progress. Answers the operator (admin token) and any tenant (its API key): the
//! figures are global counts and positions, nothing about any tenant's data, and a
//! dashboard built for a tenant wants to know how fresh what it shows is.

use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use serde_json::json;

use super::AppState;
use super::auth::{Admin, Tenant};
use super::error::ApiError;

pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if Admin::extract(&req).await.is_err() {
        Tenant::extract(&req).await?;
    }
    let statuses = crate::projections::status::all(state.store.as_ref(), &state.db)
        .await
        .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(json!({ "projections": statuses })))
}
