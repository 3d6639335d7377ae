//! Many agents: 100,000 registered agents (the first 1,000 through the API, the rest
//! inserted directly: see `seed.rs`), then
//! 1. accept throughput at 64 connections to one agent vs spread over 1,000 agents
//!    (gateway stalled as in the accept scenario, so only the accept path is measured),
//!    in the order one, spread, spread, one: the tables grow with every pass, and the
//!    mean of an early and a late pass of each case cancels that drift.
//!    A first, untimed-for-the-target pass wakes every agent up with 4 webhooks each, so
//!    each agent's actor exists, its schema is compiled and its 4 execution slots are
//!    busy; the timed passes then only queue. The cold figure (a pass over 1,000 agents
//!    nobody has sent to yet, which also starts 4 executions per agent) is reported too;
//! 2. after a restart with an instant gateway: idle memory per agent actor, as the
//!    growth of resident memory when one webhook each wakes up fresh agents, divided by
//!    the growth of `hookrun_agent_actors` (both read once every execution is done).
//!    The figure includes everything hookrun keeps per agent it has seen (the actor,
//!    its registry entry, the compiled payload schema in the schema cache).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::{Ctx, Figures, webhooks_for};
use crate::load::{self, Kind, Plan, Stop, Target};
use crate::readmodel::Db;
use crate::server::{Backend, Gateway, Server};
use crate::{api, seed};

pub async fn run(ctx: &Ctx, backend: Backend) -> anyhow::Result<Figures> {
    let stalled = Gateway::start(&ctx.env.bench, Duration::from_secs(60)).await?;
    let instant = Gateway::start(&ctx.env.bench, Duration::ZERO).await?;
    let mut server = Server::start(
        &ctx.env,
        backend,
        stalled.addr,
        &[
            ("HOOKRUN_AGENT_QUEUE", "100000000".into()),
            // Accepted executions pile up behind the stalled gateway: no node limit.
            ("HOOKRUN_MAX_IN_FLIGHT", "100000000".into()),
        ],
    )
    .await?;
    let result = measure(ctx, &mut server, &stalled, &instant).await;
    server.stop().await;
    stalled.stop().await;
    instant.stop().await;
    result
}

async fn measure(
    ctx: &Ctx,
    server: &mut Server,
    stalled: &Gateway,
    instant: &Gateway,
) -> anyhow::Result<Figures> {
    let total = ctx.size(100_000, 2_000);
    let via_api = ctx.size(1_000, 100);
    let spread = ctx.size(1_000, 100);
    let wake = ctx.size(2_000, 500);
    let mut figures = Figures::new();

    let key = api::create_tenant(server.addr, "bench").await?;
    let t = Instant::now();
    let mut agents = api::create_agents(server.addr, &key, via_api, 16).await?;
    figures.push((
        "agents created via API /s".into(),
        via_api as f64 / t.elapsed().as_secs_f64(),
    ));
    let db = Db::open(server).await?;
    let t = Instant::now();
    agents.extend(seed::insert_agents(&db, "bench", total - via_api).await?);
    figures.push((
        "agents inserted directly /s".into(),
        (total - via_api) as f64 / t.elapsed().as_secs_f64(),
    ));
    figures.push(("registered agents".into(), agents.len() as f64));
    let last = agents.last().context("no agents")?.clone();
    let check = send(server, vec![last], 1, 1).await?;
    if check.0 != 1 {
        bail!(
            "a directly inserted agent did not accept a signed webhook: the seeder's sealing no longer matches hookrun's"
        );
    }

    // Cold: agents nobody has sent to yet (they are woken up as the pass goes).
    let cold_agents = Arc::new(agents[spread..2 * spread].to_vec());
    let cold = webhooks_for(server.addr, &cold_agents, 64, ctx.pass(), None).await?;
    // Warm up the measured agents: 4 webhooks each fill their execution slots.
    let (_, mut errors) = send(server, agents[..spread].to_vec(), 4 * spread as u64, 64).await?;
    // Time again once the started executions have recorded their first steps: every
    // execution slot's call is waiting at the stalled gateway.
    wait_slots_at_gateway(server, &db, stalled).await?;
    // One agent, spread, spread, one agent: every pass runs on larger tables than the
    // one before, so each case is the mean of an early and a late pass.
    let one = Arc::new(vec![agents[0].clone()]);
    let many = Arc::new(agents[..spread].to_vec());
    let single_a = webhooks_for(server.addr, &one, 64, ctx.pass(), None).await?;
    let wide_a = webhooks_for(server.addr, &many, 64, ctx.pass(), None).await?;
    let wide_b = webhooks_for(server.addr, &many, 64, ctx.pass(), None).await?;
    let single_b = webhooks_for(server.addr, &one, 64, ctx.pass(), None).await?;
    let single = (single_a.rate() + single_b.rate()) / 2.0;
    let wide = (wide_a.rate() + wide_b.rate()) / 2.0;
    figures.push(("1 agent req/s, first pass".into(), single_a.rate()));
    figures.push(("1 agent req/s, last pass".into(), single_b.rate()));
    figures.push((format!("{spread} agents req/s, 2nd pass"), wide_a.rate()));
    figures.push((format!("{spread} agents req/s, 3rd pass"), wide_b.rate()));
    figures.push(("1 agent req/s".into(), single));
    figures.push((format!("{spread} agents req/s"), wide));
    figures.push((
        format!("{spread} agents p99 ms"),
        wide_a.ms(0.99).max(wide_b.ms(0.99)),
    ));
    figures.push((
        format!("{spread} agents / 1 agent"),
        wide / single.max(1e-9),
    ));
    figures.push((format!("{spread} cold agents req/s"), cold.rate()));
    figures.push((
        format!("{spread} cold agents / 1 agent"),
        cold.rate() / single.max(1e-9),
    ));
    errors +=
        cold.errors() + single_a.errors() + wide_a.errors() + wide_b.errors() + single_b.errors();

    server.restart(&ctx.env, instant.addr, &[]).await?;
    let warm = agents[0].clone();
    errors += send_and_wait(server, &db, vec![warm; 200], 200, 8).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss1, _) = server.memory_kib();
    let actors1 = server.metric("hookrun_agent_actors").await?;
    let fresh = agents[2 * spread..2 * spread + wake].to_vec();
    errors += send_and_wait(server, &db, fresh, wake as u64, 16).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss2, _) = server.memory_kib();
    let actors2 = server.metric("hookrun_agent_actors").await?;
    let started = (actors2 - actors1).max(1.0);
    figures.push(("actors started".into(), actors2 - actors1));
    figures.push((
        "RSS growth MiB".into(),
        super::mib(rss2.saturating_sub(rss1)),
    ));
    figures.push((
        "KiB per idle actor".into(),
        rss2.saturating_sub(rss1) as f64 / started,
    ));
    figures.push(("errors".into(), errors as f64));
    db.close().await;
    Ok(figures)
}

/// hookrun's default execution slots per agent (`HOOKRUN_AGENT_CONCURRENCY`).
const SLOTS: u32 = 4;

/// Waits until the stalled gateway holds as many calls as the accepted executions can
/// run at once (every ExecutionStarted and LlmCalled before them is stored).
async fn wait_slots_at_gateway(server: &Server, db: &Db, gateway: &Gateway) -> anyhow::Result<()> {
    server
        .wait_projections_caught_up(Duration::from_secs(120))
        .await?;
    let startable = db.startable(SLOTS).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (in_flight, _) = gateway.in_flight().await?;
        if in_flight >= startable {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{in_flight} of {startable} execution slots reached the gateway after 120 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `count` webhooks round-robin over `targets`; `(accepted, errors)`.
async fn send(
    server: &Server,
    targets: Vec<Target>,
    count: u64,
    connections: usize,
) -> anyhow::Result<(u64, u64)> {
    let outcome = load::run(Plan {
        addr: server.addr,
        kind: Kind::Webhook(Arc::new(targets)),
        connections,
        stop: Stop::Count(count),
        rate: None,
        samples: None,
        slow: None,
    })
    .await?;
    Ok((
        outcome.statuses.get(&202).copied().unwrap_or(0),
        outcome.errors(),
    ))
}

/// Sends like [`send`], then waits until every accepted execution is terminal in the
/// read model; returns the errors (refused, failed, transport).
async fn send_and_wait(
    server: &Server,
    db: &Db,
    targets: Vec<Target>,
    count: u64,
    connections: usize,
) -> anyhow::Result<u64> {
    let (ok0, bad0) = db.terminal_counts().await?;
    let (accepted, errors) = send(server, targets, count, connections).await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (ok, bad) = db.terminal_counts().await?;
        if ok + bad >= ok0 + bad0 + accepted {
            return Ok(errors + (bad - bad0));
        }
        if Instant::now() > deadline {
            bail!(
                "only {} of {accepted} executions terminal after 300 s",
                ok + bad - ok0 - bad0
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
