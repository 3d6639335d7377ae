//! Reads of `agent_test_executions` (the same SQL on SQLite and PostgreSQL). The table
//! is written only by the projection runner (`batch.rs`).

use super::executions::ExecutionRow;
use super::rows::{Bind, column_list, fetch_rows};
use crate::db::Db;

/// The row of one execution, if the projection has seen it.
pub async fn find(db: &Db, execution_id: &str) -> Result<Option<ExecutionRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {} FROM agent_test_executions WHERE execution_id = $1",
        column_list::<ExecutionRow>()
    );
    Ok(fetch_rows(db, sql, &[Bind::Text(execution_id.to_owned())])
        .await?
        .pop())
}

/// Filters of an agent's execution list; timestamps are in the stored form.
#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    pub status: Option<String>,
    /// `queued_at >= since`
    pub since: Option<String>,
    /// `queued_at < until`
    pub until: Option<String>,
    /// Continue after this `(queued_at, execution_id)` (the last row of the previous page).
    pub after: Option<(String, String)>,
}

/// A page of one tenant's agent's executions, newest first (keyset pagination on
/// `(queued_at, execution_id)`, served by an index on `(agent_id, queued_at, execution_id)`).
pub async fn list_for_agent(
    db: &Db,
    tenant_id: &str,
    agent_id: &str,
    filter: &ExecutionFilter,
    limit: u32,
) -> Result<Vec<ExecutionRow>, sqlx::Error> {
    let mut binds = vec![
        Bind::Text(agent_id.to_owned()),
        Bind::Text(tenant_id.to_owned()),
    ];
    let mut sql = format!(
        "SELECT {} FROM agent_test_executions WHERE agent_id = $1 AND tenant_id = $2",
        column_list::<ExecutionRow>()
    );
    let mut add = |clause: &str, values: Vec<String>, binds: &mut Vec<Bind>| {
        let mut clause = clause.to_owned();
        for value in values {
            binds.push(Bind::Text(value));
            clause = clause.replacen('?', &format!("${}", binds.len()), 1);
        }
        sql.push_str(" AND ");
        sql.push_str(&clause);
    };
    if let Some(status) = &filter.status {
        add("status = ?", vec![status.clone()], &mut binds);
    }
    if let Some(since) = &filter.since {
        add("queued_at >= ?", vec![since.clone()], &mut binds);
    }
    if let Some(until) = &filter.until {
        add("queued_at < ?", vec![until.clone()], &mut binds);
    }
    if let Some((queued_at, id)) = &filter.after {
        add(
            "(queued_at < ? OR (queued_at = ? AND execution_id < ?))",
            vec![queued_at.clone(), queued_at.clone(), id.clone()],
            &mut binds,
        );
    }
    binds.push(Bind::Int(i64::from(limit)));
    sql.push_str(&format!(
        " ORDER BY queued_at DESC, execution_id DESC LIMIT ${}",
        binds.len()
    ));
    fetch_rows(db, sql, &binds).await
}
