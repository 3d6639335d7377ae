//! The HTTP API (actix-web): one file per resource, errors mapped in [`error`].
//! Handlers parse input into domain types, call the catalog or the actors, and read
//! projections; they hold no state of their own beyond [`AppState`].

mod agent_reads;
mod agents;
mod auth;
mod deliveries;
pub mod error;
mod executions;
mod health;
mod projections;
pub mod rate_limit;
mod tenant_erasure;
mod tenants;
mod webhook_checks;
mod webhooks;

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, ResponseError, web};

pub use health::Metrics;

use crate::actors::Registry;
use crate::config::Settings;
use crate::crypto::Sealer;
use crate::db::Db;
use crate::deliveries::AuditLog;
use crate::domain::AgentId;
use crate::events::EventStore;
use crate::webhook::SchemaCache;

/// Shared by all handlers.
pub struct AppState {
    pub db: Db,
    pub store: Arc<dyn EventStore>,
    pub registry: Arc<Registry>,
    pub sealer: Arc<Sealer>,
    /// Per-tenant data keys (erasure destroys them).
    pub keys: Arc<crate::events::tenant_keys::TenantKeys>,
    pub schemas: SchemaCache,
    /// Agent records of the webhook path (invalidate after changing an agent).
    pub agents: Arc<crate::catalog::cache::AgentCache>,
    pub settings: Arc<Settings>,
    pub metrics: Metrics,
    /// Base of the webhook URLs shown to users.
    pub public_url: String,
    /// The delivery audit log (written off the request path).
    pub audit: AuditLog,
    /// Webhook rate limits per agent and per tenant.
    pub rate_limits: rate_limit::RateLimits,
}

impl AppState {
    pub fn webhook_url(&self, agent_id: &AgentId) -> String {
        format!("{}/webhooks/agents/{agent_id}", self.public_url)
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(error::json_config())
        .app_data(web::PathConfig::default().error_handler(|e, _| {
            error::ApiError::bad_request("invalid_path", e.to_string()).into()
        }))
        .app_data(web::QueryConfig::default().error_handler(|e, _| {
            error::ApiError::bad_request("invalid_query", e.to_string()).into()
        }))
        .route("/healthz", web::get().to(health::healthz))
        .route("/metrics", web::get().to(health::metrics))
        .route(
            "/webhooks/agents/{agent_id}",
            web::post().to(webhooks::receive),
        )
        .route(
            "/webhook/agents/{agent_id}/webhook",
            web::post().to(webhooks::receive),
        )
        .route("/api/tenants", web::post().to(tenants::create))
        .route(
            "/api/tenants/{tenant_id}/keys",
            web::post().to(tenants::create_key),
        )
        .route(
            "/api/tenants/{tenant_id}/keys",
            web::get().to(tenants::list_keys),
        )
        .route(
            "/api/tenants/{tenant_id}/keys/{key_id}",
            web::delete().to(tenants::revoke_key),
        )
        .route(
            "/api/tenants/{tenant_id}",
            web::delete().to(tenant_erasure::erase),
        )
        .route("/api/agents", web::post().to(agents::create))
        .route("/api/agents", web::get().to(agent_reads::list))
        .route(
            "/api/agents/{agent_id}/executions",
            web::get().to(agent_reads::executions),
        )
        .route(
            "/api/agents/{agent_id}/events",
            web::get().to(agent_reads::events),
        )
        .route(
            "/api/agents/{agent_id}/stats/daily",
            web::get().to(agent_reads::daily_stats),
        )
        .route("/api/projections", web::get().to(projections::list))
        .route("/api/agents/{agent_id}", web::get().to(agents::get))
        .route("/api/agents/{agent_id}", web::patch().to(agents::update))
        .route(
            "/api/agents/{agent_id}/webhook-secret",
            web::get().to(agents::webhook_secret),
        )
        .route(
            "/api/agents/{agent_id}/webhook-secret/rotate",
            web::post().to(agents::rotate_webhook_secret),
        )
        .route(
            "/api/agents/{agent_id}/llm-key",
            web::put().to(agents::set_llm_key),
        )
        .route(
            "/api/agents/{agent_id}/deliveries",
            web::get().to(deliveries::list),
        )
        .route(
            "/api/executions/{execution_id}",
            web::get().to(executions::get),
        )
        .route(
            "/api/executions/{execution_id}/events",
            web::get().to(executions::events),
        )
        .default_service(web::to(not_found));
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    error::ApiError::new(
        actix_web::http::StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {} {}", req.method(), req.path()),
    )
    .error_response()
}
