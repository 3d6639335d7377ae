//! The whole suite: every selected scenario on every selected backend, `runs` times
//! (interleaved: run 1 of everything, then run 2, …), medians, the tables and the
//! targets, printed and (unless told otherwise) written into BENCHMARKS.md.

use std::path::PathBuf;
use std::time::Instant;

use crate::report::{self, Results};
use crate::scenarios::{self, Ctx};
use crate::server::Backend;

pub struct Options {
    pub ctx: Ctx,
    pub runs: usize,
    pub scenarios: Vec<String>,
    pub backends: Vec<Backend>,
    pub out: Option<PathBuf>,
    pub commit: String,
    pub command: String,
}

pub const SCENARIOS: [&str; 5] = ["accept", "pipeline", "fan-in", "many agents", "rebuild"];

/// The targets table's heading: what its figures are.
fn targets_heading(runs: usize) -> String {
    if runs == 1 {
        "Targets (one run)".to_owned()
    } else {
        format!("Targets (medians of {runs} runs; in brackets the lowest and highest run)")
    }
}

pub async fn run(opts: Options) -> anyhow::Result<()> {
    let began = Instant::now();
    let mut results = Results::default();
    let names: Vec<&'static str> = opts.backends.iter().map(|b| b.name()).collect();
    let selected: Vec<&'static str> = SCENARIOS
        .into_iter()
        .filter(|s| {
            opts.scenarios
                .iter()
                .any(|o| o.replace('-', " ") == s.replace('-', " "))
        })
        .collect();
    let mut failed = 0;
    for run in 1..=opts.runs {
        for &scenario in &selected {
            for &backend in &opts.backends {
                let t = Instant::now();
                eprintln!(
                    "[run {run}/{}] {scenario} on {} …",
                    opts.runs,
                    backend.name()
                );
                let outcome = one(&opts.ctx, scenario, backend).await;
                match outcome {
                    Ok(figures) => results.add(scenario, backend.name(), figures),
                    Err(e) => {
                        failed += 1;
                        eprintln!("  failed: {e:#}");
                        results.notes.push((
                            scenario,
                            backend.name(),
                            format!("run {run} failed: {e:#}"),
                        ));
                    }
                }
                eprintln!("  done in {:.1} s", t.elapsed().as_secs_f64());
            }
        }
    }
    let tables = results.tables(&names);
    let targets = report::target_table(&results, &names);
    let heading = targets_heading(opts.runs);
    println!("{tables}\n\n### {heading}\n\n{targets}");
    let took = began.elapsed().as_secs_f64();
    println!("suite took {took:.0} s");
    if let Some(path) = &opts.out {
        let generated = format!(
            "{}\n## {heading}\n\n{targets}\n## Figures{tables}\n",
            header(&opts, took).await,
        );
        let existing = std::fs::read_to_string(path).ok();
        std::fs::write(path, report::splice(existing.as_deref(), &generated))?;
        eprintln!("wrote {}", path.display());
    }
    if failed > 0 {
        // A scenario that could not run is a broken suite, not a slow server.
        anyhow::bail!("{failed} scenario run(s) failed (see above)");
    }
    Ok(())
}

async fn one(ctx: &Ctx, scenario: &str, backend: Backend) -> anyhow::Result<scenarios::Figures> {
    match scenario {
        "accept" => scenarios::accept::run(ctx, backend).await,
        "pipeline" => scenarios::pipeline::run(ctx, backend).await,
        "fan-in" => scenarios::fanin::run(ctx, backend).await,
        "many agents" => scenarios::many_agents::run(ctx, backend).await,
        "rebuild" => scenarios::rebuild::run(ctx, backend).await,
        other => anyhow::bail!("unknown scenario {other}"),
    }
}

/// Where and how the figures were measured.
async fn header(opts: &Options, took: f64) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let pg = postgres_version(&opts.ctx.env.pg_admin_url).await;
    let apart = if opts.ctx.env.sqlite_events_apart {
        ", with the events in a file of their own (`HOOKRUN_EVENT_STORE_URL`, \
         `--sqlite-events-apart`)"
    } else {
        ""
    };
    format!(
        "Measured {} at commit `{}` with `{}` ({:.0} s).\n\n\
         - Machine: {cores} cores ({cpu}), {mem_gib:.1} GiB memory; server, database, gateway \
         and load generator all share it (loopback only).\n\
         - hookrun: release build, default settings except where a scenario says; SQLite is \
         the embedded default (WAL, `synchronous = FULL`){apart}; {pg}.\n\
         - Each figure is the median of {} run{}{}.\n",
        crate::seed::chrono_like_now(),
        opts.commit,
        opts.command,
        took,
        opts.runs,
        if opts.runs == 1 { "" } else { "s" },
        if opts.ctx.quick {
            " (--quick: smoke-sized counts and 0.5 s passes)"
        } else {
            " (5 s passes)"
        },
    )
}

async fn postgres_version(url: &str) -> String {
    use sqlx::Connection;
    match sqlx::PgConnection::connect(url).await {
        Ok(mut c) => sqlx::query_scalar::<_, String>("SHOW server_version")
            .fetch_one(&mut c)
            .await
            .map_or_else(
                |_| "PostgreSQL".into(),
                |v| format!("PostgreSQL {v} on 127.0.0.1"),
            ),
        Err(_) => "PostgreSQL not reachable".into(),
    }
}
