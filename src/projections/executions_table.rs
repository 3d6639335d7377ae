//! SQL for the `agent_test_executions` table: the same statements on SQLite and
//! PostgreSQL. Written only by the projection runner; read by the HTTP layer.

use super::executions::ExecutionRow;
use crate::db::Db;
use crate::with_db_read;

pub const COLUMNS: &str = "execution_id, agent_id, tenant_id, delivery_id, status, output, error, \
    error_kind, model, key_source, prompt_tokens, completion_tokens, total_tokens, attempts, \
    queued_at, started_at, completed_at, duration_ms, llm_latency_ms, node, lease_expires_at, \
    last_revision";

/// Upsert that never moves a row backwards: two runners (two nodes) applying the same
/// events concurrently end with the newest state.
pub const UPSERT: &str = "INSERT INTO agent_test_executions (execution_id, agent_id, tenant_id, \
    delivery_id, status, output, error, error_kind, model, key_source, prompt_tokens, \
    completion_tokens, total_tokens, attempts, queued_at, started_at, completed_at, duration_ms, \
    llm_latency_ms, node, lease_expires_at, last_revision) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
    $20, $21, $22) \
    ON CONFLICT (execution_id) DO UPDATE SET status = excluded.status, output = excluded.output, \
    error = excluded.error, error_kind = excluded.error_kind, model = excluded.model, \
    key_source = excluded.key_source, prompt_tokens = excluded.prompt_tokens, \
    completion_tokens = excluded.completion_tokens, total_tokens = excluded.total_tokens, \
    attempts = excluded.attempts, started_at = excluded.started_at, \
    completed_at = excluded.completed_at, duration_ms = excluded.duration_ms, \
    llm_latency_ms = excluded.llm_latency_ms, node = excluded.node, \
    lease_expires_at = excluded.lease_expires_at, last_revision = excluded.last_revision \
    WHERE agent_test_executions.last_revision < excluded.last_revision";

/// Binds a row to [`UPSERT`] and runs it on any executor (both backends).
macro_rules! upsert_row {
    ($exec:expr, $row:expr) => {{
        let r: &ExecutionRow = $row;
        sqlx::query($crate::projections::executions_table::UPSERT)
            .bind(&r.execution_id)
            .bind(&r.agent_id)
            .bind(&r.tenant_id)
            .bind(&r.delivery_id)
            .bind(&r.status)
            .bind(&r.output)
            .bind(&r.error)
            .bind(&r.error_kind)
            .bind(&r.model)
            .bind(&r.key_source)
            .bind(r.prompt_tokens)
            .bind(r.completion_tokens)
            .bind(r.total_tokens)
            .bind(r.attempts)
            .bind(&r.queued_at)
            .bind(&r.started_at)
            .bind(&r.completed_at)
            .bind(r.duration_ms)
            .bind(r.llm_latency_ms)
            .bind(&r.node)
            .bind(&r.lease_expires_at)
            .bind(r.last_revision)
            .execute($exec)
            .await
            .map(|done| done.rows_affected())
    }};
}
pub(crate) use upsert_row;

/// Loads a row inside the runner's transaction.
macro_rules! load_row {
    ($exec:expr, $id:expr) => {{
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM agent_test_executions WHERE execution_id = $1",
            $crate::projections::executions_table::COLUMNS
        ));
        sqlx::query_as::<_, ExecutionRow>(sql)
            .bind($id)
            .fetch_optional($exec)
            .await
    }};
}
pub(crate) use load_row;

/// The row of one execution, if the projection has seen it.
pub async fn find(db: &Db, execution_id: &str) -> Result<Option<ExecutionRow>, sqlx::Error> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM agent_test_executions WHERE execution_id = $1"
    ));
    with_db_read!(db, |pool| {
        sqlx::query_as::<_, ExecutionRow>(sql)
            .bind(execution_id)
            .fetch_optional(pool)
            .await
    })
}
