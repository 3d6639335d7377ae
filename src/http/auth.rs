//! Who is calling: a tenant (by API key) or the operator (by admin token).
//! Both are bearer tokens; a missing or wrong one is a 401.

use std::future::Future;
use std::pin::Pin;

use actix_web::http::header::AUTHORIZATION;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};

use super::AppState;
use super::error::ApiError;
use crate::domain::TenantId;

/// The tenant whose API key authenticated the request.
pub struct Tenant(pub TenantId);

/// The operator (admin token).
pub struct Admin;

fn bearer(req: &HttpRequest) -> Result<String, ApiError> {
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <key> header"))?;
    header
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::unauthorized("Authorization header must be 'Bearer <key>'"))
}

fn state(req: &HttpRequest) -> web::Data<AppState> {
    req.app_data::<web::Data<AppState>>()
        .expect("AppState is registered")
        .clone()
}

impl FromRequest for Tenant {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer(req);
        let state = state(req);
        Box::pin(async move {
            let hash = crate::crypto::hash_api_key(&token?);
            match crate::catalog::tenants::tenant_for_key_hash(&state.db, &hash).await? {
                Some(tenant) => Ok(Tenant(tenant)),
                None => Err(ApiError::unauthorized("invalid or revoked API key")),
            }
        })
    }
}

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = state(req);
        let result = match (&state.settings.admin_token, bearer(req)) {
            (None, _) => Err(ApiError::unauthorized(
                "the admin API is disabled: set HOOKRUN_ADMIN_TOKEN (or use the hookrun CLI)",
            )),
            (Some(_), Err(e)) => Err(e),
            (Some(expected), Ok(given)) => {
                let same = crate::crypto::hashes_equal(
                    &crate::crypto::hash_api_key(expected),
                    &crate::crypto::hash_api_key(&given),
                );
                if same {
                    Ok(Admin)
                } else {
                    Err(ApiError::unauthorized("invalid admin token"))
                }
            }
        };
        std::future::ready(result)
    }
}
