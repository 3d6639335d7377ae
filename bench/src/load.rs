//! The load generator: N keep-alive connections, each sending one request after
//! another until a count or a duration is reached, optionally paced to a total rate.
//!
//! Webhooks are signed per request (HMAC-SHA256 over a 1 KiB body that differs per
//! request) with a unique `X-GitHub-Delivery`, and spread round-robin over the targets.
//! Latency goes into an `hdrhistogram` in microseconds. When paced, latency is measured
//! from the request's scheduled start, so time spent waiting for a free connection
//! counts (no coordinated omission).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use hyper::Method;
use tokio::sync::mpsc;

use crate::http::{Conn, build};
use crate::sign;

/// An agent to send webhooks to.
#[derive(Clone, Debug)]
pub struct Target {
    pub agent_id: String,
    /// The HMAC key (the base64-decoded webhook secret).
    pub key: Vec<u8>,
}

#[derive(Clone)]
pub enum Kind {
    Healthz,
    Webhook(Arc<Vec<Target>>),
}

#[derive(Clone, Copy, Debug)]
pub enum Stop {
    Count(u64),
    After(Duration),
}

#[derive(Clone)]
pub struct Plan {
    pub addr: SocketAddr,
    pub kind: Kind,
    pub connections: usize,
    pub stop: Stop,
    /// Total requests per second over all connections; `None`: as fast as answered.
    pub rate: Option<f64>,
    /// Send the execution id and answer time of every n-th accepted webhook here.
    pub samples: Option<(u64, mpsc::UnboundedSender<Accepted>)>,
    /// Count the 2xx answers slower than this per [`WINDOW`] ([`Outcome::windows`]).
    pub slow: Option<Duration>,
}

/// An accepted webhook: its execution id and when the 202 arrived.
pub struct Accepted {
    pub execution_id: String,
    pub at: Instant,
}

pub struct Outcome {
    pub started: Instant,
    pub elapsed: Duration,
    /// Answers by HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that got no HTTP answer (connect, reset, timeout).
    pub transport_errors: u64,
    /// Latency of 2xx answers, in microseconds.
    pub latency: Histogram<u64>,
    /// With [`Plan::slow`], per [`WINDOW`] of the pass (by when each request was due)
    /// that had any: the 2xx answers slower than that and the slowest of them in
    /// microseconds, to tell a stall from latency spread evenly.
    pub windows: BTreeMap<u64, (u64, u64)>,
}

/// The width of [`Outcome::windows`].
pub const WINDOW: Duration = Duration::from_millis(100);

impl Outcome {
    pub fn ok(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(s, _)| (200..300).contains(*s))
            .map(|(_, n)| n)
            .sum()
    }

    /// Non-2xx answers plus transport errors.
    pub fn errors(&self) -> u64 {
        let total: u64 = self.statuses.values().sum();
        total - self.ok() + self.transport_errors
    }

    /// 2xx answers per second.
    pub fn rate(&self) -> f64 {
        self.ok() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Latency quantile in milliseconds.
    pub fn ms(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1000.0
    }

    pub fn status_summary(&self) -> String {
        let mut parts: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}×{n}"))
            .collect();
        if self.transport_errors > 0 {
            parts.push(format!("transport×{}", self.transport_errors));
        }
        parts.join(" ")
    }
}

struct Shared {
    plan: Plan,
    next: AtomicU64,
    started: Instant,
    run: String,
}

/// Runs `plan` to completion on the current tokio runtime.
pub async fn run(plan: Plan) -> anyhow::Result<Outcome> {
    let shared = Arc::new(Shared {
        next: AtomicU64::new(0),
        started: Instant::now(),
        run: uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
        plan,
    });
    let workers: Vec<_> = (0..shared.plan.connections.max(1))
        .map(|_| tokio::spawn(worker(shared.clone())))
        .collect();
    let mut outcome = Outcome {
        started: shared.started,
        elapsed: Duration::ZERO,
        statuses: BTreeMap::new(),
        transport_errors: 0,
        latency: new_histogram(),
        windows: BTreeMap::new(),
    };
    for w in workers {
        let part = w.await??;
        for (status, n) in part.statuses {
            *outcome.statuses.entry(status).or_default() += n;
        }
        outcome.transport_errors += part.transport_errors;
        outcome.latency.add(&part.latency)?;
        for (window, (n, max)) in part.windows {
            let merged = outcome.windows.entry(window).or_default();
            *merged = (merged.0 + n, merged.1.max(max));
        }
    }
    outcome.elapsed = shared.started.elapsed();
    Ok(outcome)
}

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

async fn worker(shared: Arc<Shared>) -> anyhow::Result<Outcome> {
    let plan = &shared.plan;
    let mut out = Outcome {
        started: shared.started,
        elapsed: Duration::ZERO,
        statuses: BTreeMap::new(),
        transport_errors: 0,
        latency: new_histogram(),
        windows: BTreeMap::new(),
    };
    let deadline = match plan.stop {
        Stop::After(d) => Some(shared.started + d),
        Stop::Count(_) => None,
    };
    let mut conn: Option<Conn> = None;
    loop {
        let ticket = shared.next.fetch_add(1, Ordering::Relaxed);
        if let Stop::Count(n) = plan.stop
            && ticket >= n
        {
            break;
        }
        let scheduled = plan
            .rate
            .map(|r| shared.started + Duration::from_secs_f64(ticket as f64 / r));
        if let (Some(at), Some(end)) = (scheduled, deadline)
            && at >= end
        {
            break;
        }
        if let Some(at) = scheduled {
            tokio::time::sleep_until(at.into()).await;
        }
        if deadline.is_some_and(|end| Instant::now() >= end) {
            break;
        }
        let begin = scheduled.unwrap_or_else(Instant::now);
        let req = request(&shared, ticket);
        let c = match conn.take() {
            Some(c) => c,
            None => match Conn::open(plan.addr).await {
                Ok(c) => c,
                Err(_) => {
                    out.transport_errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let mut c = c;
        match c.send(req).await {
            Ok((status, body)) => {
                let now = Instant::now();
                *out.statuses.entry(status.as_u16()).or_default() += 1;
                if status.is_success() {
                    let micros = now.duration_since(begin).as_micros() as u64;
                    out.latency.saturating_record(micros.max(1));
                    if plan
                        .slow
                        .is_some_and(|slow| micros > slow.as_micros() as u64)
                    {
                        let since = begin.duration_since(shared.started);
                        let window = out
                            .windows
                            .entry((since.as_micros() / WINDOW.as_micros()) as u64)
                            .or_default();
                        *window = (window.0 + 1, window.1.max(micros));
                    }
                }
                if status.as_u16() == 202
                    && let Some((every, tx)) = &plan.samples
                    && ticket.is_multiple_of(*every.max(&1))
                    && let Some(id) = execution_id(&body)
                {
                    let _ = tx.send(Accepted {
                        execution_id: id,
                        at: now,
                    });
                }
                conn = Some(c);
            }
            Err(_) => out.transport_errors += 1, // the connection is dropped and reopened
        }
    }
    Ok(out)
}

fn request(shared: &Shared, ticket: u64) -> hyper::Request<http_body_util::Full<Bytes>> {
    let plan = &shared.plan;
    match &plan.kind {
        Kind::Healthz => build(Method::GET, plan.addr, "/healthz", &[], None),
        Kind::Webhook(targets) => {
            let target = &targets[(ticket % targets.len() as u64) as usize];
            let body = sign::payload(ticket);
            let signature = sign::signature(&target.key, &body);
            let delivery = format!("bench-{}-{ticket}", shared.run);
            let path = format!("/webhooks/agents/{}", target.agent_id);
            build(
                Method::POST,
                plan.addr,
                &path,
                &[
                    ("content-type", "application/json"),
                    ("x-hub-signature-256", &signature),
                    ("x-github-delivery", &delivery),
                ],
                Some(Bytes::from(body)),
            )
        }
    }
}

fn execution_id(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v["execution_id"].as_str().map(str::to_owned)
}
