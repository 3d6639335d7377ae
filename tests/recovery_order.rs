//! The sweeper's choice of orphans (`recovery::nodes::orphans`) on a busy node: a dead
//! node's executions come before the node's own, however many of those are unfinished.

use crate::support;

use chrono::{Duration, Utc};
use hookrun::catalog::timestamp;
use hookrun::db::Db;
use hookrun::recovery::nodes;
use support::app::{Backend, spawn_app};

on_both_backends!(a_dead_nodes_executions_come_before_a_busy_nodes_own);

async fn execution(db: &Db, id: &str, node: &str, queued_at: chrono::DateTime<Utc>) {
    hookrun::with_db!(db, |pool| {
        sqlx::query(
            "INSERT INTO agent_test_executions (execution_id, agent_id, tenant_id, delivery_id, \
             status, queued_at, last_revision, node, lease_expires_at) \
             VALUES ($1, 'agent', 'tenant', $1, 'running', $2, 1, $3, $4)",
        )
        .bind(id)
        .bind(timestamp(queued_at))
        .bind(node)
        .bind(timestamp(queued_at + Duration::hours(1)))
        .execute(pool)
        .await
        .map(|_| ())
        .expect("insert execution row")
    });
}

async fn a_dead_nodes_executions_come_before_a_busy_nodes_own(backend: Backend) {
    let Some(app) = spawn_app(backend, "recovery_order").await else {
        return;
    };
    let db = &app.state.db;
    let now = Utc::now();
    // This node runs three older executions; a node that never sent a heartbeat left one.
    for i in 0..3 {
        execution(
            db,
            &format!("own-{i}"),
            "busy",
            now - Duration::minutes(10 - i),
        )
        .await;
    }
    execution(db, "orphan", "dead", now - Duration::minutes(1)).await;

    let alive_since = now - Duration::seconds(15);
    let first_two = nodes::orphans(db, "busy", now, alive_since, 2)
        .await
        .unwrap();
    let ids: Vec<&str> = first_two.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["orphan", "own-0"]);
    let all = nodes::orphans(db, "busy", now, alive_since, 10)
        .await
        .unwrap();
    assert_eq!(all.len(), 4, "{all:?}");
}
