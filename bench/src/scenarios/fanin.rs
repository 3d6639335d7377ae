//! Fan-in: 10,000 executions in flight against a slow gateway (20 s by default, so that
//! all 10,000 are in flight at once: sending them takes longer than the 2 s the issue
//! names; `--fanin-delay-ms 2000` runs the literal setup),
//! spread over 100 agents that may each run 100 at once (so none waits in a queue):
//! the server's peak resident memory (`VmHWM`) and the error count (non-202 answers,
//! transport errors, failed or missing executions).
//!
//! Measured twice, on a fresh server each time, once per way hookrun can talk to the
//! gateway (`HOOKRUN_LLM_HTTP`): HTTP/1.1 holds one socket per call in flight, with
//! the HTTP client's fixed buffers for each; HTTP/2 makes every call a stream on one
//! connection. Figures are named `HTTP/1.1: …` and `HTTP/2: …`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{Ctx, Figures, mib};
use crate::api;
use crate::load::{self, Kind, Plan, Stop};
use crate::readmodel::Db;
use crate::server::{Backend, Gateway, Server, proc_memory_kib};

/// `(label, HOOKRUN_LLM_HTTP)` of each pass.
const VERSIONS: [(&str, &str); 2] = [("HTTP/1.1", "1.1"), ("HTTP/2", "2")];

pub async fn run(ctx: &Ctx, backend: Backend) -> anyhow::Result<Figures> {
    let mut figures = Figures::new();
    for (label, version) in VERSIONS {
        let pass = run_one(ctx, backend, version).await?;
        figures.extend(
            pass.into_iter()
                .map(|(name, value)| (format!("{label}: {name}"), value)),
        );
    }
    Ok(figures)
}

async fn run_one(ctx: &Ctx, backend: Backend, version: &str) -> anyhow::Result<Figures> {
    let agents = ctx.size(100, 10);
    let per_agent = ctx.size(100, 50);
    // A smoke run sends its few hundred webhooks well within 2 s.
    let delay = if ctx.quick {
        ctx.fanin_delay.min(Duration::from_secs(2))
    } else {
        ctx.fanin_delay
    };
    let gateway = Gateway::start(&ctx.env.bench, delay).await?;
    let server = Server::start(
        &ctx.env,
        backend,
        gateway.addr,
        &[
            ("HOOKRUN_AGENT_CONCURRENCY", per_agent.to_string()),
            ("HOOKRUN_AGENT_QUEUE", (per_agent * 2).to_string()),
            ("HOOKRUN_LLM_HTTP", version.to_string()),
        ],
    )
    .await?;
    let result = measure(&server, &gateway, agents, per_agent, delay).await;
    server.stop().await;
    gateway.stop().await;
    result
}

async fn measure(
    server: &Server,
    gateway: &Gateway,
    agents: usize,
    per_agent: usize,
    delay: Duration,
) -> anyhow::Result<Figures> {
    let key = api::create_tenant(server.addr, "bench").await?;
    let targets = Arc::new(api::create_agents(server.addr, &key, agents, 8).await?);
    let db = Db::open(server).await?;
    let (rss_before, _) = server.memory_kib();
    let n = (agents * per_agent) as u64;

    // Watch resident memory while the executions are in flight.
    let pid = server.pid();
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(proc_memory_kib(pid).0);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            peak
        })
    };
    let started = Instant::now();
    let outcome = load::run(Plan {
        addr: server.addr,
        kind: Kind::Webhook(targets),
        connections: 64,
        stop: Stop::Count(n),
        rate: None,
        samples: None,
        slow: None,
    })
    .await?;
    let sent_in = started.elapsed();
    let accepted = outcome.statuses.get(&202).copied().unwrap_or(0);
    let deadline = Instant::now() + delay + Duration::from_secs(120);
    let (ok, failed) = loop {
        let (ok, failed) = db.terminal_counts().await?;
        if ok + failed >= accepted || Instant::now() > deadline {
            break (ok, failed);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let drained_in = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let peak_rss = watcher.await?;
    let (rss_after, hwm) = server.memory_kib();
    let (_, max_in_flight) = gateway.in_flight().await?;
    db.close().await;
    if outcome.errors() > 0 {
        eprintln!("  fan-in: {}", outcome.status_summary());
    }
    let missing = accepted.saturating_sub(ok + failed);
    Ok(vec![
        ("executions".into(), n as f64),
        ("gateway delay s".into(), delay.as_secs_f64()),
        ("send s".into(), sent_in.as_secs_f64()),
        ("all terminal s".into(), drained_in.as_secs_f64()),
        ("gateway max in flight".into(), max_in_flight as f64),
        (
            "in flight at once / executions".into(),
            max_in_flight as f64 / n as f64,
        ),
        ("RSS before MiB".into(), mib(rss_before)),
        ("peak RSS (sampled) MiB".into(), mib(peak_rss)),
        ("peak RSS (VmHWM) MiB".into(), mib(hwm)),
        ("RSS after MiB".into(), mib(rss_after)),
        (
            "errors".into(),
            (outcome.errors() + failed + missing) as f64,
        ),
    ])
}
