//! Pipeline: webhooks → `succeeded` rows in `agent_test_executions`, with a gateway that
//! answers at once. For one agent (4 executions at a time by default) and for 100.
//!
//! Pass 1 sends N webhooks as fast as they are accepted (64 connections; the agent queue
//! is unbounded so nothing is refused) and times until all N are terminal in the read
//! model: executions/s = N / (last visible − first sent). Pass 2 is paced at half that
//! rate, so its 202-to-visible latency is the latency of a loaded but keeping-up system
//! (pass 1 latency mostly measures the backlog it built, and is reported as such).

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use tokio::sync::{mpsc, oneshot};

use super::{Ctx, Figures};
use crate::load::{self, Kind, Plan, Stop, Target};
use crate::readmodel::Db;
use crate::server::{Backend, Gateway, Server};
use crate::{api, track};

pub async fn run(ctx: &Ctx, backend: Backend) -> anyhow::Result<Figures> {
    let mut figures = Figures::new();
    for agents in [1usize, 100] {
        let gateway = Gateway::start(&ctx.env.bench, Duration::ZERO).await?;
        let server = Server::start(
            &ctx.env,
            backend,
            gateway.addr,
            &[("HOOKRUN_AGENT_QUEUE", "100000000".into())],
        )
        .await?;
        let result = measure(ctx, &server, agents).await;
        server.stop().await;
        gateway.stop().await;
        for (name, value) in result? {
            figures.push((format!("{name} ({agents} agent{})", plural(agents)), value));
        }
    }
    Ok(figures)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

async fn measure(ctx: &Ctx, server: &Server, agents: usize) -> anyhow::Result<Figures> {
    let key = api::create_tenant(server.addr, "bench").await?;
    let targets = Arc::new(api::create_agents(server.addr, &key, agents, 8).await?);
    let db = Db::open(server).await?;
    let mut figures = Figures::new();

    let n = ctx.size(if agents == 1 { 3000 } else { 5000 }, 300) as u64;
    let sat = pass(&db, server, &targets, Stop::Count(n), None).await?;
    let per_s = sat.ok as f64 / sat.seconds;
    figures.push(("executions/s".into(), per_s));
    figures.push(("backlog p50 ms".into(), sat.p50));
    figures.push(("backlog p99 ms".into(), sat.p99));

    let rate = per_s / 2.0;
    let paced = pass(&db, server, &targets, Stop::After(ctx.pass()), Some(rate)).await?;
    figures.push(("paced executions/s".into(), paced.ok as f64 / paced.seconds));
    figures.push(("202→visible p50 ms".into(), paced.p50));
    figures.push(("202→visible p99 ms".into(), paced.p99));
    figures.push(("errors".into(), (sat.errors + paced.errors) as f64));
    db.close().await;
    Ok(figures)
}

struct Pass {
    ok: u64,
    errors: u64,
    seconds: f64,
    p50: f64,
    p99: f64,
}

async fn pass(
    db: &Db,
    server: &Server,
    targets: &Arc<Vec<Target>>,
    stop: Stop,
    rate: Option<f64>,
) -> anyhow::Result<Pass> {
    let baseline = db.terminal_counts().await?;
    let (sample_tx, sample_rx) = mpsc::unbounded_channel();
    let (total_tx, total_rx) = oneshot::channel();
    let expected = match stop {
        Stop::Count(n) => n,
        Stop::After(d) => (rate.unwrap_or(1000.0) * d.as_secs_f64()) as u64,
    };
    let every = (expected / 1000).max(1);
    let plan = Plan {
        addr: server.addr,
        kind: Kind::Webhook(targets.clone()),
        connections: 64,
        stop,
        rate,
        samples: Some((every, sample_tx)),
        slow: None,
    };
    let sender = tokio::spawn(async move {
        let outcome = load::run(plan).await;
        if let Ok(o) = &outcome {
            let _ = total_tx.send(o.statuses.get(&202).copied().unwrap_or(0));
        }
        outcome
    });
    let seen = track::follow(db, sample_rx, total_rx, baseline, Duration::from_secs(300));
    let (outcome, seen) = tokio::join!(sender, seen);
    let outcome = outcome??;
    let seen = seen?;
    if outcome.ok() == 0 {
        bail!("no webhook accepted: {}", outcome.status_summary());
    }
    if outcome.errors() > 0 {
        eprintln!("  pipeline: {}", outcome.status_summary());
    }
    Ok(Pass {
        ok: outcome.ok(),
        errors: outcome.errors() + seen.failed + seen.stuck,
        seconds: seen
            .all_visible_at
            .duration_since(outcome.started)
            .as_secs_f64(),
        p50: seen.latency.value_at_quantile(0.5) as f64 / 1000.0,
        p99: seen.latency.value_at_quantile(0.99) as f64 / 1000.0,
    })
}
