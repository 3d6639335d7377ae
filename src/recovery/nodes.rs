//! The `nodes` table: who is alive, and which unfinished executions have no live owner.

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::catalog::timestamp;
use crate::db::Db;
use crate::{with_db, with_db_read};

/// Records that `node` is alive now.
pub async fn heartbeat(db: &Db, node: &str, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    let now = timestamp(now);
    with_db!(db, |pool| {
        sqlx::query(
            "INSERT INTO nodes (node_id, started_at, heartbeat_at) VALUES ($1, $2, $2) \
             ON CONFLICT (node_id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
        )
        .bind(node)
        .bind(&now)
        .execute(pool)
        .await
        .map(|_| ())
    })
}

/// Forgets `node` (on a clean shutdown), so others take over its work at once.
pub async fn remove(db: &Db, node: &str) -> Result<(), sqlx::Error> {
    with_db!(db, |pool| {
        sqlx::query("DELETE FROM nodes WHERE node_id = $1")
            .bind(node)
            .execute(pool)
            .await
            .map(|_| ())
    })
}

/// Unfinished executions that `node` may take: owned by a node whose heartbeat is older
/// than `alive_since`, or with an expired lease, or by no node — plus `node`'s own
/// (the caller skips those it is running). Returns (execution id, agent id): other
/// nodes' orphans first, then `node`'s own, oldest first within each. (Own first, a
/// busy node's running executions would fill every batch and keep a dead node's work
/// waiting until the load drops.)
pub async fn orphans(
    db: &Db,
    node: &str,
    now: DateTime<Utc>,
    alive_since: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    let (now, alive_since) = (timestamp(now), timestamp(alive_since));
    with_db_read!(db, |pool| {
        sqlx::query(
            "SELECT e.execution_id, e.agent_id FROM agent_test_executions e \
             LEFT JOIN nodes n ON n.node_id = e.node AND n.heartbeat_at >= $2 \
             WHERE e.status IN ('queued', 'running') \
             AND (n.node_id IS NULL OR e.node = $1 OR e.lease_expires_at < $3) \
             ORDER BY CASE WHEN e.node = $1 THEN 1 ELSE 0 END, e.queued_at LIMIT $4",
        )
        .bind(node)
        .bind(&alive_since)
        .bind(&now)
        .bind(limit)
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(|r| Ok((r.try_get("execution_id")?, r.try_get("agent_id")?)))
        .collect()
    })
}
