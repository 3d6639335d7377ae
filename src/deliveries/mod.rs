//! The delivery audit log: one row per webhook request — accepted, duplicate or
//! rejected — with who sent it, what came of it and how long it took.
//!
//! Recording never holds a request and never turns an answer into an error: the
//! handler hands a [`DeliveryRecord`] to [`AuditLog::record`], which only does
//! in-memory work (a rate check and a `try_send` on a bounded queue); a background
//! task ([`writer`]) writes the queue in batches, one transaction each.
//!
//! Bounded, so that a flood of bad requests cannot fill the disk (docs/security.md):
//! - per agent, only the newest `keep_per_agent` rejected rows and as many duplicate
//!   rows are kept (older ones are pruned as new ones are written); requests naming
//!   no existing agent share one budget of `keep_unknown` rows. Accepted rows are
//!   not pruned: there is exactly one per execution, next to its events.
//! - beyond `detail_per_min` (burst `detail_burst`) rejected or duplicate requests
//!   per agent, requests are not written one by one but counted into one aggregate
//!   row per (agent, outcome, reason), flushed every few seconds (`count` > 1).
//! - if the queue is full (the database cannot keep up), records are dropped and
//!   counted in `hookrun_audit_dropped_total` rather than slowing webhooks down.
//!
//! - `store.rs`: the SQL (insert, prune, list).
//! - `writer.rs`: the background task and the aggregation of suppressed records.

pub mod store;
mod writer;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use governor::{DefaultKeyedRateLimiter, Quota};
use tokio::sync::{mpsc, oneshot};

use crate::config::AuditSettings;
use crate::db::Db;
use crate::domain::{AgentId, TenantId};

/// Records waiting to be written before new ones are dropped.
pub const QUEUE_CAPACITY: usize = 10_000;

/// Longest `requested_agent` kept (the path segment is attacker-controlled).
const MAX_REQUESTED_AGENT_LEN: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Accepted,
    Duplicate,
    Rejected,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Duplicate => "duplicate",
            Outcome::Rejected => "rejected",
        }
    }
}

/// One webhook request, as recorded.
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    /// The agent, when the path named an existing one.
    pub agent: Option<(AgentId, TenantId)>,
    /// The agent id as it appeared in the path (truncated).
    pub requested_agent: String,
    pub delivery_id: Option<String>,
    pub execution_id: Option<String>,
    pub outcome: Outcome,
    /// The error code of a rejection.
    pub reason: Option<&'static str>,
    pub status: u16,
    /// The peer's IP address (a proxy's, behind one: forwarding headers are not trusted).
    pub source_addr: Option<String>,
    pub received_at: DateTime<Utc>,
    pub duration_ms: f64,
    /// How many requests this row stands for (1, or more for an aggregate row).
    pub count: u64,
}

impl DeliveryRecord {
    pub fn requested_agent(raw: &str) -> String {
        raw.chars().take(MAX_REQUESTED_AGENT_LEN).collect()
    }
}

/// Cheap to clone; every clone feeds the same writer.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

struct Inner {
    queue: mpsc::Sender<writer::Msg>,
    /// Per agent (`None`: unknown agents), how many rejected/duplicate rows may be
    /// written one by one.
    detail: DefaultKeyedRateLimiter<Option<AgentId>>,
    /// Requests over the detail rate, waiting to be written as aggregate rows.
    suppressed: Arc<Mutex<HashMap<writer::AggregateKey, DeliveryRecord>>>,
    dropped: AtomicU64,
    suppressed_total: AtomicU64,
}

impl AuditLog {
    /// Starts the writer task (needs a tokio runtime).
    pub fn start(db: Db, settings: AuditSettings) -> AuditLog {
        let (queue, rx) = mpsc::channel(QUEUE_CAPACITY);
        let suppressed = Arc::new(Mutex::new(HashMap::new()));
        tokio::spawn(writer::run(db, settings, rx, suppressed.clone()));
        let nz = |n: usize| NonZeroU32::new(u32::try_from(n).unwrap_or(u32::MAX).max(1)).unwrap();
        let quota =
            Quota::per_minute(nz(settings.detail_per_min)).allow_burst(nz(settings.detail_burst));
        AuditLog {
            inner: Arc::new(Inner {
                queue,
                detail: DefaultKeyedRateLimiter::keyed(quota),
                suppressed,
                dropped: AtomicU64::new(0),
                suppressed_total: AtomicU64::new(0),
            }),
        }
    }

    /// Queues a record; never waits and never fails (see the module docs for what is
    /// aggregated or dropped under load).
    pub fn record(&self, record: DeliveryRecord) {
        let inner = &self.inner;
        if record.outcome != Outcome::Accepted {
            let key = record.agent.as_ref().map(|(id, _)| *id);
            if inner.detail.check_key(&key).is_err() {
                inner.suppressed_total.fetch_add(1, Ordering::Relaxed);
                writer::fold(&inner.suppressed, record);
                return;
            }
        }
        if inner.queue.try_send(writer::Msg::Record(record)).is_err() {
            let dropped = inner.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "audit log queue full: delivery records dropped");
            }
        }
    }

    /// Waits until everything recorded so far, aggregates included, is written.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.inner.queue.send(writer::Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Records dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Requests folded into aggregate rows instead of a row each.
    pub fn suppressed(&self) -> u64 {
        self.inner.suppressed_total.load(Ordering::Relaxed)
    }
}
