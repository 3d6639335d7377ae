//! Accept: signed 1 KiB webhooks to one agent with a payload schema, at 1, 8, 32 and 64
//! connections, each level beside a `GET /healthz` pass of the same length on the same
//! server; then a pass paced at half the best accept rate, for latency under load,
//! generated on one thread (the figure the target is checked against) and again on the
//! generator's usual two threads (shown for comparison: on two cores, the second thread
//! competes with the server for CPU and that shows in the server's tail latency).
//!
//! The gateway answers after 60 s here and the agent queue is unbounded, so only the
//! four executions the agent runs at once proceed and the accept path (verify,
//! schema, append `ExecutionQueued`, 202) is measured alone; the pipeline scenario
//! measures everything together. Beside the paced pass it records how busy the whole
//! machine was and how much CPU time the hypervisor took ([`crate::machine`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Ctx, Figures, healthz_for, paced_on_one_thread, webhooks_for};
use crate::api;
use crate::machine::CpuTimes;
use crate::server::{Backend, Gateway, Server};

pub const LEVELS: [usize; 4] = [1, 8, 32, 64];

pub async fn run(ctx: &Ctx, backend: Backend) -> anyhow::Result<Figures> {
    let gateway = Gateway::start(&ctx.env.bench, Duration::from_secs(60)).await?;
    let server = Server::start(
        &ctx.env,
        backend,
        gateway.addr,
        &[
            ("HOOKRUN_AGENT_QUEUE", "100000000".into()),
            // Accepted executions pile up behind the stalled gateway: no node limit.
            ("HOOKRUN_MAX_IN_FLIGHT", "100000000".into()),
        ],
    )
    .await?;
    let result = measure(ctx, &server).await;
    server.stop().await;
    gateway.stop().await;
    result
}

async fn measure(ctx: &Ctx, server: &Server) -> anyhow::Result<Figures> {
    let key = api::create_tenant(server.addr, "bench").await?;
    let targets = Arc::new(vec![api::create_agent(server.addr, &key, "accept").await?]);
    let mut figures = Figures::new();
    let (mut best_accept, mut best_healthz, mut errors) = (0.0f64, 0.0f64, 0);
    for c in LEVELS {
        let health = healthz_for(server.addr, c, ctx.pass()).await?;
        let accept = webhooks_for(server.addr, &targets, c, ctx.pass(), None).await?;
        if accept.errors() > 0 {
            eprintln!("  accept c={c}: {}", accept.status_summary());
        }
        errors += accept.errors() + health.errors();
        best_accept = best_accept.max(accept.rate());
        best_healthz = best_healthz.max(health.rate());
        figures.push((format!("healthz req/s c={c}"), health.rate()));
        figures.push((format!("accept req/s c={c}"), accept.rate()));
        figures.push((format!("accept p50 ms c={c}"), accept.ms(0.5)));
        figures.push((format!("accept p99 ms c={c}"), accept.ms(0.99)));
        figures.push((
            format!("accept/healthz c={c}"),
            accept.rate() / health.rate().max(1e-9),
        ));
    }
    figures.push(("accept max req/s".into(), best_accept));
    figures.push(("healthz max req/s".into(), best_healthz));
    figures.push((
        "accept/healthz (max/max)".into(),
        best_accept / best_healthz.max(1e-9),
    ));
    let half = best_accept / 2.0;
    // Latency at half the max rate is a steady-state figure: the passes at the max rate
    // leave the read models behind, and their catching up is not load at half the rate.
    let waited = Instant::now();
    server
        .wait_projections_caught_up(Duration::from_secs(300))
        .await?;
    figures.push((
        "read models caught up after max passes s".into(),
        waited.elapsed().as_secs_f64(),
    ));
    let cpu_before = CpuTimes::now();
    let paced = paced_on_one_thread(server.addr, &targets, 64, ctx.pass(), half).await?;
    let cpu = cpu_before.zip(CpuTimes::now());
    let paced2 = webhooks_for(server.addr, &targets, 64, ctx.pass(), Some(half)).await?;
    errors += paced.errors() + paced2.errors();
    figures.push(("half-rate target req/s".into(), half));
    figures.push(("half-rate achieved req/s".into(), paced.rate()));
    figures.push(("half-rate p50 ms".into(), paced.ms(0.5)));
    figures.push(("half-rate p99 ms".into(), paced.ms(0.99)));
    figures.push(("half-rate p99.9 ms".into(), paced.ms(0.999)));
    if let Some((before, after)) = cpu {
        let (busy, stolen) = after.shares_since(&before);
        figures.push(("half-rate machine CPU busy %".into(), busy));
        figures.push(("half-rate CPU stolen by the hypervisor %".into(), stolen));
    }
    figures.push(("half-rate p99 ms, 2 load threads".into(), paced2.ms(0.99)));
    figures.push(("errors".into(), errors as f64));
    Ok(figures)
}
