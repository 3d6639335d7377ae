//! `GET /healthz` and `GET /metrics` (Prometheus text format).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::{HttpResponse, web};

use super::AppState;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// Counters of webhook answers by status class.
#[derive(Default)]
pub struct Metrics {
    pub webhooks_accepted: AtomicU64,
    pub webhooks_duplicate: AtomicU64,
    pub webhooks_rejected: AtomicU64,
}

impl Metrics {
    pub fn count_webhook(&self, status: u16) {
        let counter = match status {
            202 => &self.webhooks_accepted,
            200 => &self.webhooks_duplicate,
            _ => &self.webhooks_rejected,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let m = &state.metrics;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP hookrun_webhooks_total Webhook requests by outcome."
    );
    let _ = writeln!(out, "# TYPE hookrun_webhooks_total counter");
    for (outcome, counter) in [
        ("accepted", &m.webhooks_accepted),
        ("duplicate", &m.webhooks_duplicate),
        ("rejected", &m.webhooks_rejected),
    ] {
        let _ = writeln!(
            out,
            "hookrun_webhooks_total{{outcome=\"{outcome}\"}} {}",
            counter.load(Ordering::Relaxed)
        );
    }
    for (name, help, value) in [
        (
            "hookrun_audit_dropped_total",
            "Delivery audit records dropped because the write queue was full.",
            state.audit.dropped(),
        ),
        (
            "hookrun_audit_aggregated_total",
            "Rejected or duplicate deliveries recorded in aggregate rows, not one row each.",
            state.audit.suppressed(),
        ),
        (
            "hookrun_agent_cache_misses_total",
            "Agent records read from the database one at a time, on a request's path.",
            state.agents.misses(),
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        let _ = writeln!(out, "{name} {value}");
    }
    let _ = writeln!(out, "# HELP hookrun_agent_actors Agent actors started.");
    let _ = writeln!(out, "# TYPE hookrun_agent_actors gauge");
    let _ = writeln!(out, "hookrun_agent_actors {}", state.registry.actor_count());
    match crate::projections::status::all(state.store.as_ref(), &state.db).await {
        Ok(statuses) => crate::projections::status::render_prometheus(&statuses, &mut out),
        Err(e) => tracing::warn!("projection lag unavailable for /metrics: {e:#}"),
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out)
}
