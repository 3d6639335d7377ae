//! Where each projection stands: its checkpoint, version, and how far it is behind the
//! head of the store — in events and in seconds (the age of the oldest event it has not
//! applied yet). Served by `GET /api/projections` and `/metrics`.

use chrono::Utc;
use serde::Serialize;

use super::batch::Target;
use super::runner::all_projections;
use super::sql;
use crate::db::Db;
use crate::events::{EventStore, Position};

/// Lag is counted up to this many events (a count past it is reported as the cap).
pub const LAG_COUNT_CAP: u64 = 1_000_000;

#[derive(Debug, Clone, Serialize)]
pub struct ProjectionStatus {
    pub name: &'static str,
    /// The version of the fold in this build.
    pub version: u32,
    /// The version that wrote the live rows (`null`: never ran).
    pub stored_version: Option<u32>,
    /// `commit/prepare` of the last applied event.
    pub checkpoint: String,
    pub lag_events: u64,
    pub lag_seconds: f64,
    /// A rebuild in progress: where its shadow table has got to.
    pub rebuilding: Option<RebuildStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RebuildStatus {
    pub version: u32,
    pub checkpoint: String,
    pub lag_events: u64,
}

pub async fn all(store: &dyn EventStore, db: &Db) -> anyhow::Result<Vec<ProjectionStatus>> {
    let mut out = Vec::new();
    for p in all_projections() {
        let stored = sql::read_checkpoint(db, p.name()).await?;
        let position = stored.map_or(Position::START, |c| c.position);
        let lag_events = store.count_after(position, LAG_COUNT_CAP).await?;
        let lag_seconds = match store.read_all(position, 1).await?.first() {
            Some(oldest) => {
                ((Utc::now() - oldest.recorded_at).num_milliseconds().max(0) as f64) / 1000.0
            }
            None => 0.0,
        };
        let shadow = Target::beside(p.name(), "rebuild");
        let rebuilding = match sql::read_checkpoint(db, &shadow.checkpoint).await? {
            Some(cp) => Some(RebuildStatus {
                version: cp.version,
                checkpoint: cp.position.to_string(),
                lag_events: store.count_after(cp.position, LAG_COUNT_CAP).await?,
            }),
            None => None,
        };
        out.push(ProjectionStatus {
            name: p.name(),
            version: p.version(),
            stored_version: stored.map(|c| c.version),
            checkpoint: position.to_string(),
            lag_events,
            lag_seconds,
            rebuilding,
        });
    }
    Ok(out)
}

/// The statuses as Prometheus text (gauges labelled by projection).
pub fn render_prometheus(statuses: &[ProjectionStatus], out: &mut String) {
    use std::fmt::Write;
    type Gauge = (&'static str, &'static str, fn(&ProjectionStatus) -> f64);
    let gauges: [Gauge; 4] = [
        (
            "hookrun_projection_lag_events",
            "Events stored but not yet applied to the read model.",
            |s| s.lag_events as f64,
        ),
        (
            "hookrun_projection_lag_seconds",
            "Age of the oldest event not yet applied to the read model (0 when caught up).",
            |s| s.lag_seconds,
        ),
        (
            "hookrun_projection_version",
            "Version of the projection's fold in this build.",
            |s| f64::from(s.version),
        ),
        (
            "hookrun_projection_rebuilding",
            "1 while the read model is being rebuilt in a shadow table.",
            |s| if s.rebuilding.is_some() { 1.0 } else { 0.0 },
        ),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for s in statuses {
            let _ = writeln!(out, "{name}{{projection=\"{}\"}} {}", s.name, value(s));
        }
    }
}
