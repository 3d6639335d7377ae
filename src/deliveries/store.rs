//! SQL of the delivery audit log (`webhook_deliveries`): insert with pruning, and
//! listing newest first with a cursor.

use std::collections::HashSet;

use sqlx::Row;

use super::{DeliveryRecord, Outcome};
use crate::catalog::timestamp;
use crate::config::AuditSettings;
use crate::db::Db;
use crate::domain::AgentId;
use crate::{with_db_read, with_relaxed_tx};

/// Largest page a listing returns.
pub const MAX_LIMIT: i64 = 500;

/// Rows per insert statement (12 parameters each: well under both backends' limits).
const INSERT_CHUNK: usize = 256;

/// Inserts `records` and prunes what exceeds the bounds, in one transaction that does
/// not wait for the disk.
pub async fn insert_and_prune(
    db: &Db,
    settings: &AuditSettings,
    records: &[DeliveryRecord],
) -> Result<(), sqlx::Error> {
    // What to prune: each (agent, outcome) that got a non-accepted row.
    let touched: HashSet<(Option<String>, Outcome)> = records
        .iter()
        .filter(|r| r.outcome != Outcome::Accepted)
        .map(|r| (r.agent.as_ref().map(|(id, _)| id.to_string()), r.outcome))
        .collect();
    // Relaxed: the rows already wait in memory before they are written (a crash of
    // the process loses those), and the next append's durable commit syncs them too;
    // an fsync of their own would only delay the appends behind them on the writer.
    with_relaxed_tx!(db, |tx| {
        // One statement per chunk (not per record): it shares the writer connection
        // with the event store's group commit. Not kept prepared: its text varies with
        // the number of rows, and it would push the hot statements out of the cache.
        for chunk in records.chunks(INSERT_CHUNK) {
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO webhook_deliveries (agent_id, tenant_id, requested_agent, \
                 delivery_id, execution_id, outcome, reason, status, source_addr, \
                 received_at, duration_ms, count) ",
            );
            insert.push_values(chunk, |mut row, r| {
                row.push_bind(r.agent.as_ref().map(|(id, _)| id.to_string()))
                    .push_bind(r.agent.as_ref().map(|(_, t)| t.to_string()))
                    .push_bind(r.requested_agent.clone())
                    .push_bind(r.delivery_id.clone())
                    .push_bind(r.execution_id.clone())
                    .push_bind(r.outcome.as_str())
                    .push_bind(r.reason)
                    .push_bind(i32::from(r.status))
                    .push_bind(r.source_addr.clone())
                    .push_bind(timestamp(r.received_at))
                    .push_bind(r.duration_ms)
                    .push_bind(i64::try_from(r.count).unwrap_or(i64::MAX));
            });
            insert.build().persistent(false).execute(&mut *tx).await?;
        }
        for (agent, outcome) in &touched {
            // Keep the newest `keep` rows: delete from the (keep+1)-th newest down.
            // Unknown agents share one budget whatever their outcome.
            let keep = match agent {
                Some(_) => settings.keep_per_agent,
                None => settings.keep_unknown,
            };
            let keep = i64::try_from(keep).unwrap_or(i64::MAX);
            let query = match agent {
                Some(agent) => sqlx::query(
                    // `outcome <> 'accepted'` lets both find the rows through the
                    // partial index `webhook_deliveries_prunable_by_agent`.
                    "DELETE FROM webhook_deliveries WHERE agent_id = $1 AND outcome = $2 \
                     AND outcome <> 'accepted' AND id <= (SELECT id FROM webhook_deliveries \
                     WHERE agent_id = $1 AND outcome = $2 AND outcome <> 'accepted' \
                     ORDER BY id DESC LIMIT 1 OFFSET $3)",
                )
                .bind(agent)
                .bind(outcome.as_str())
                .bind(keep),
                None => sqlx::query(
                    "DELETE FROM webhook_deliveries WHERE agent_id IS NULL \
                     AND id <= (SELECT id FROM webhook_deliveries \
                     WHERE agent_id IS NULL ORDER BY id DESC LIMIT 1 OFFSET $1)",
                )
                .bind(keep),
            };
            query.execute(&mut *tx).await?;
        }
        tx.commit().await
    })
}

/// One row as the API and CLI show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeliveryRow {
    pub id: i64,
    pub agent_id: Option<String>,
    pub tenant_id: Option<String>,
    pub requested_agent: String,
    pub delivery_id: Option<String>,
    pub execution_id: Option<String>,
    pub outcome: String,
    pub reason: Option<String>,
    pub status: i32,
    pub source_addr: Option<String>,
    pub received_at: String,
    pub duration_ms: f64,
    pub count: i64,
}

/// An agent's deliveries (`None`: those naming no existing agent), newest first,
/// with ids below `before` (the previous page's cursor).
pub async fn list(
    db: &Db,
    agent: Option<&AgentId>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    // `$1 IS NULL` lists the rows of unknown agents with the same statement shape.
    let filter = match agent {
        Some(_) => "agent_id = $1",
        None => "agent_id IS NULL AND CAST($1 AS TEXT) IS NULL",
    };
    let sql = format!(
        "SELECT id, agent_id, tenant_id, requested_agent, delivery_id, execution_id, outcome, \
         reason, status, source_addr, received_at, duration_ms, count \
         FROM webhook_deliveries WHERE {filter} AND id < $2 ORDER BY id DESC LIMIT $3"
    );
    let agent = agent.map(|a| a.to_string());
    Ok(with_db_read!(db, |pool| {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(agent.as_deref())
            .bind(before.unwrap_or(i64::MAX))
            .bind(limit.clamp(1, MAX_LIMIT))
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| {
                Ok(DeliveryRow {
                    id: r.try_get("id")?,
                    agent_id: r.try_get("agent_id")?,
                    tenant_id: r.try_get("tenant_id")?,
                    requested_agent: r.try_get("requested_agent")?,
                    delivery_id: r.try_get("delivery_id")?,
                    execution_id: r.try_get("execution_id")?,
                    outcome: r.try_get("outcome")?,
                    reason: r.try_get("reason")?,
                    status: r.try_get("status")?,
                    source_addr: r.try_get("source_addr")?,
                    received_at: r.try_get("received_at")?,
                    duration_ms: r.try_get("duration_ms")?,
                    count: r.try_get("count")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?
    }))
}
