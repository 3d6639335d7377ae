//! The benchmark scenarios. Each `run` starts what it needs on a fresh database,
//! measures, stops everything, and returns named figures for one run on one backend.
//!
//! - [`accept`]: webhook accept rate and latency vs `GET /healthz`.
//! - [`pipeline`]: webhook → `succeeded` in the read model, one agent and 100 agents.
//! - [`fanin`]: 10,000 executions waiting on a slow gateway: peak memory, errors.
//! - [`many_agents`]: 100,000 registered agents: throughput spread over 1,000 of them,
//!   and memory per agent actor.
//! - [`rebuild`]: projection rebuild speed over 1,000,000 seeded events.

pub mod accept;
pub mod fanin;
pub mod many_agents;
pub mod pipeline;
pub mod rebuild;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::load::{self, Kind, Outcome, Plan, Stop, Target};
use crate::server::Env;

/// One figure of one run: `(metric name, value)`.
pub type Figures = Vec<(String, f64)>;

/// What every scenario is given.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub env: Env,
    /// A smoke run: small counts, sub-second passes.
    pub quick: bool,
    /// How long the gateway takes to answer in the fan-in scenario.
    pub fanin_delay: Duration,
}

impl Ctx {
    /// Length of one timed load pass.
    pub fn pass(&self) -> Duration {
        if self.quick {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(5)
        }
    }

    /// `full` normally, `quick` on a smoke run.
    pub fn size(&self, full: usize, quick: usize) -> usize {
        if self.quick { quick } else { full }
    }
}

/// A timed webhook pass with `connections` senders, optionally paced.
pub async fn webhooks_for(
    addr: SocketAddr,
    targets: &Arc<Vec<Target>>,
    connections: usize,
    length: Duration,
    rate: Option<f64>,
) -> anyhow::Result<Outcome> {
    load::run(Plan {
        addr,
        kind: Kind::Webhook(targets.clone()),
        connections,
        stop: Stop::After(length),
        rate,
        samples: None,
        slow: None,
    })
    .await
}

/// A paced webhook pass like [`webhooks_for`], generated on one thread of its own
/// (a runtime in a thread, while this runtime's threads wait idle): at a fixed rate the
/// generator needs little CPU, and a second thread of it would only take turns on the
/// two cores with the server whose latency is being measured.
pub async fn paced_on_one_thread(
    addr: SocketAddr,
    targets: &Arc<Vec<Target>>,
    connections: usize,
    length: Duration,
    rate: f64,
) -> anyhow::Result<Outcome> {
    let targets = targets.clone();
    tokio::task::spawn_blocking(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(webhooks_for(
                addr,
                &targets,
                connections,
                length,
                Some(rate),
            ))
    })
    .await?
}

/// A timed `GET /healthz` pass.
pub async fn healthz_for(
    addr: SocketAddr,
    connections: usize,
    length: Duration,
) -> anyhow::Result<Outcome> {
    load::run(Plan {
        addr,
        kind: Kind::Healthz,
        connections,
        stop: Stop::After(length),
        rate: None,
        samples: None,
        slow: None,
    })
    .await
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
