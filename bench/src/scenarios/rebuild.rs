//! Rebuild: how fast `hookrun projections rebuild` folds 1,000,000 events into
//! `agent_test_executions`, twice: with each execution's four events back to back, and
//! interleaved as a busy service stores them (`--interleave 1500`: an execution's next
//! event 1,500 executions, about 6,000 events, later — so most executions straddle the
//! rebuild's read batches).
//!
//! `hookrun projections bench` (the command `scripts/bench-rebuild.sh` runs) seeds the
//! events of 250,000 finished executions straight into the events table of a fresh
//! database, then times a full rebuild of the projection: reading, folding, writing the
//! shadow table, building its indexes and the swap (docs/rebuild-benchmark.md). Like
//! every scenario it runs in each run of the suite (both layouts ~35 s on SQLite and
//! ~65 s on PostgreSQL here, seeding included): one run's rate is too noisy to judge
//! alone.

use anyhow::{Context, bail};

use super::{Ctx, Figures};
use crate::server::{Backend, Scratch};

/// An execution's events this many executions apart in the interleaved layout.
const INTERLEAVE: u64 = 1_500;

pub async fn run(ctx: &Ctx, backend: Backend) -> anyhow::Result<Figures> {
    let mut figures = Figures::new();
    for (interleave, suffix) in [(0, ""), (INTERLEAVE, ", interleaved")] {
        let scratch = Scratch::new(&ctx.env, backend).await?;
        let result = measure(ctx, &scratch, interleave).await;
        scratch.remove().await;
        figures.extend(
            result?
                .into_iter()
                .map(|(metric, value)| (format!("{metric}{suffix}"), value)),
        );
    }
    Ok(figures)
}

async fn measure(ctx: &Ctx, scratch: &Scratch, interleave: u64) -> anyhow::Result<Figures> {
    let events = ctx.size(1_000_000, 20_000);
    let output = scratch
        .hookrun(&ctx.env)
        .args([
            "projections",
            "bench",
            "--projection",
            "agent_test_executions",
        ])
        .args(["--events", &events.to_string()])
        .args(["--interleave", &interleave.to_string()])
        .env("HOOKRUN_LOG", "warn,sqlx=error")
        .output()
        .await
        .with_context(|| format!("run {} projections bench", ctx.env.hookrun.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "`hookrun projections bench` exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // "backend postgres: rebuilt agent_test_executions from 1000000 events in 13.95s = 71685 events/s"
    let line = stdout
        .lines()
        .find(|l| l.contains(" rebuilt "))
        .with_context(|| format!("no `rebuilt` line in: {stdout}"))?;
    let number_before = |marker: &str| -> anyhow::Result<f64> {
        let head = line
            .split_once(marker)
            .with_context(|| format!("{marker:?} in {line:?}"))?
            .0;
        let word = head.rsplit(' ').next().unwrap_or_default();
        word.trim_end_matches('s')
            .parse()
            .with_context(|| format!("a number before {marker:?} in {line:?}"))
    };
    let seconds = number_before(" = ")?;
    let rate = number_before(" events/s")?;
    Ok(vec![
        ("events rebuilt".into(), events as f64),
        ("rebuild s".into(), seconds),
        ("rebuild events/s".into(), rate),
    ])
}
