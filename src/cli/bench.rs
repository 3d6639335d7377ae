//! `hookrun projections bench`: seeds synthetic executions straight into the `events`
//! table of an EMPTY scratch database (one SQL statement per chunk: `generate_series`
//! on PostgreSQL, a recursive CTE on SQLite), then rebuilds a projection and prints
//! the rate. `scripts/bench-rebuild.sh` runs it on both backends.
//!
//! Each execution is the four events of a successful run (queued, started, LLM called,
//! succeeded) of one of 100 agents of 10 tenants, one second apart; `--interleave N`
//! stores an execution's events N executions apart (the seed is written in chunks of
//! 50,000 executions, so each chunk's last ones end up closer). The seeded rows
//! carry no hash (they bypass the append path), so `verify --chain` reports them.

use std::time::Instant;

use super::progress::ProgressPrinter;
use crate::config::Settings;
use crate::db::Db;
use crate::projections::rebuild::Pace;
use crate::projections::runner::{all_projections, projection};
use crate::startup::Stores;

/// Executions seeded per statement (four events each).
const CHUNK: u64 = 50_000;

const SEED_POSTGRES: &str = r#"
INSERT INTO events (stream_id, revision, event_id, event_type, data, metadata)
SELECT 'execution-' || x.id, r.r, md5('bench-event/' || x.i || '/' || r.r)::uuid,
  (ARRAY['ExecutionQueued', 'ExecutionStarted', 'LlmCalled', 'ExecutionSucceeded'])[r.r + 1],
  CASE r.r
    WHEN 0 THEN json_build_object('type', 'ExecutionQueued', 'execution_id', x.id,
      'agent_id', x.agent, 'tenant_id', x.tenant, 'delivery_id', 'd-' || x.i,
      'payload', json_build_object('ticket_id', x.i, 'text', 'bench payload'),
      'queued_at', x.ts, 'node', 'bench')
    WHEN 1 THEN json_build_object('type', 'ExecutionStarted', 'node', 'bench', 'attempt', 1,
      'lease_expires_at', x.ts, 'started_at', x.ts)
    WHEN 2 THEN json_build_object('type', 'LlmCalled', 'model', 'gpt-4o-mini',
      'key_source', 'platform', 'attempt', 1, 'called_at', x.ts)
    ELSE json_build_object('type', 'ExecutionSucceeded', 'output', 'answer ' || x.i,
      'prompt_tokens', 11, 'completion_tokens', 7, 'total_tokens', 18,
      'llm_latency_ms', 40 + x.i % 200, 'duration_ms', 50 + x.i % 400, 'completed_at', x.ts)
  END,
  json_build_object('event_id', md5('bench-event/' || x.i || '/' || r.r)::uuid,
    'tenant_id', x.tenant, 'agent_id', x.agent, 'correlation_id', 'd-' || x.i,
    'causation_id', NULL, 'occurred_at', x.ts, 'schema_version', 1)
FROM (
  SELECT i, md5('bench-execution/' || i)::uuid::text AS id, 'agent-' || (i % 100) AS agent,
    'tenant-' || (i % 10) AS tenant,
    to_char(timestamp '2026-11-01' + i * interval '1 second', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS ts
  FROM generate_series($1::bigint, $2::bigint) AS i
) x CROSS JOIN generate_series(0, 3) AS r(r)
ORDER BY x.i + r.r * $3::bigint, r.r
"#;

const SEED_SQLITE: &str = r#"
WITH RECURSIVE n(i) AS (SELECT $1 UNION ALL SELECT i + 1 FROM n WHERE i < $2),
x AS (
  SELECT i, printf('%08x-0000-4000-8000-%012x', i, i) AS id, 'agent-' || (i % 100) AS agent,
    'tenant-' || (i % 10) AS tenant,
    strftime('%Y-%m-%dT%H:%M:%S.000Z', '2026-11-01', '+' || i || ' seconds') AS ts
  FROM n
),
r(r) AS (VALUES (0), (1), (2), (3))
INSERT INTO events (stream_id, revision, event_id, event_type, data, metadata, recorded_at)
SELECT 'execution-' || x.id, r.r, printf('%08x-%04x-4000-8000-%012x', x.i, r.r, x.i),
  CASE r.r WHEN 0 THEN 'ExecutionQueued' WHEN 1 THEN 'ExecutionStarted'
    WHEN 2 THEN 'LlmCalled' ELSE 'ExecutionSucceeded' END,
  CASE r.r
    WHEN 0 THEN json_object('type', 'ExecutionQueued', 'execution_id', x.id,
      'agent_id', x.agent, 'tenant_id', x.tenant, 'delivery_id', 'd-' || x.i,
      'payload', json_object('ticket_id', x.i, 'text', 'bench payload'),
      'queued_at', x.ts, 'node', 'bench')
    WHEN 1 THEN json_object('type', 'ExecutionStarted', 'node', 'bench', 'attempt', 1,
      'lease_expires_at', x.ts, 'started_at', x.ts)
    WHEN 2 THEN json_object('type', 'LlmCalled', 'model', 'gpt-4o-mini',
      'key_source', 'platform', 'attempt', 1, 'called_at', x.ts)
    ELSE json_object('type', 'ExecutionSucceeded', 'output', 'answer ' || x.i,
      'prompt_tokens', 11, 'completion_tokens', 7, 'total_tokens', 18,
      'llm_latency_ms', 40 + x.i % 200, 'duration_ms', 50 + x.i % 400, 'completed_at', x.ts)
  END,
  json_object('event_id', printf('%08x-%04x-4000-8000-%012x', x.i, r.r, x.i),
    'tenant_id', x.tenant, 'agent_id', x.agent, 'correlation_id', 'd-' || x.i,
    'causation_id', NULL, 'occurred_at', x.ts, 'schema_version', 1),
  x.ts
FROM x CROSS JOIN r
ORDER BY x.i + r.r * $3, r.r
"#;

/// Seeds `events` events (with each execution's spread `interleave` executions apart)
/// and rebuilds projection `name` (or all of them).
pub(super) async fn run(
    settings: Settings,
    events: u64,
    name: &str,
    interleave: u64,
) -> anyhow::Result<()> {
    let stores = Stores::open(&settings).await?;
    let db = &stores.db;
    // The events are seeded where the event store keeps them; the rebuild reads them
    // through the store.
    let events_db = stores.events_db();
    let existing: i64 = crate::with_db_read!(events_db, |pool| {
        sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(pool)
            .await?
    });
    if existing > 0 {
        anyhow::bail!(
            "the benchmark only seeds an empty database (this one holds {existing} events): \
             point HOOKRUN_DATABASE_URL / HOOKRUN_DATA_DIR at a scratch database"
        );
    }
    let executions = events.div_ceil(4);
    let seeding = Instant::now();
    let mut first = 1u64;
    while first <= executions {
        let last = (first + CHUNK - 1).min(executions);
        match events_db {
            Db::Postgres(pg) => sqlx::query(SEED_POSTGRES)
                .bind(first as i64)
                .bind(last as i64)
                .bind(interleave as i64)
                .execute(pg)
                .await?
                .rows_affected(),
            Db::Sqlite(s) => sqlx::query(SEED_SQLITE)
                .bind(first as i64)
                .bind(last as i64)
                .bind(interleave as i64)
                .execute(&s.writer)
                .await?
                .rows_affected(),
        };
        eprintln!("seeded {} of {} events", last * 4, executions * 4);
        first = last + 1;
    }
    let seeded = executions * 4;
    let seed_secs = seeding.elapsed().as_secs_f64();
    if let Db::Postgres(pg) = events_db {
        sqlx::query("ANALYZE events").execute(pg).await?;
    }
    println!(
        "backend {}: seeded {seeded} events in {seed_secs:.1}s ({:.0} events/s)",
        db.backend_name(),
        seeded as f64 / seed_secs.max(1e-3)
    );
    let targets = if name == "all" {
        all_projections()
    } else {
        vec![projection(name).ok_or_else(|| anyhow::anyhow!("no projection {name:?}"))?]
    };
    for p in targets {
        let printer = ProgressPrinter::new(format!("rebuild {}", p.name()));
        let report = p
            .rebuild(&stores.store, db, Pace::Full, &|progress| {
                printer.report(progress)
            })
            .await?;
        println!(
            "backend {}: rebuilt {} from {} events in {:.2}s = {:.0} events/s",
            db.backend_name(),
            p.name(),
            report.events,
            report.elapsed.as_secs_f64(),
            report.rate()
        );
    }
    Ok(())
}
