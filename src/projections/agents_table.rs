//! Reads of `agent_summaries` and `agent_daily_stats` (written only by their
//! projections).

use super::agents::AgentSummary;
use super::daily::DailyStats;
use super::rows::{Bind, column_list, fetch_rows};
use crate::db::Db;

/// A page of a tenant's agents in registration order (keyset pagination on
/// `(registered_at, agent_id)`).
pub async fn list_for_tenant(
    db: &Db,
    tenant_id: &str,
    after: Option<(String, String)>,
    limit: u32,
) -> Result<Vec<AgentSummary>, sqlx::Error> {
    let columns = column_list::<AgentSummary>();
    let (sql, binds) = match after {
        None => (
            format!(
                "SELECT {columns} FROM agent_summaries WHERE tenant_id = $1 \
                 ORDER BY registered_at, agent_id LIMIT $2"
            ),
            vec![Bind::Text(tenant_id.into()), Bind::Int(i64::from(limit))],
        ),
        Some((registered_at, agent_id)) => (
            format!(
                "SELECT {columns} FROM agent_summaries WHERE tenant_id = $1 \
                 AND (registered_at > $2 OR (registered_at = $2 AND agent_id > $3)) \
                 ORDER BY registered_at, agent_id LIMIT $4"
            ),
            vec![
                Bind::Text(tenant_id.into()),
                Bind::Text(registered_at),
                Bind::Text(agent_id),
                Bind::Int(i64::from(limit)),
            ],
        ),
    };
    fetch_rows(db, sql, &binds).await
}

/// One agent's daily rows between two days (`YYYY-MM-DD`, inclusive), oldest first.
pub async fn daily_stats(
    db: &Db,
    tenant_id: &str,
    agent_id: &str,
    from_day: &str,
    to_day: &str,
) -> Result<Vec<DailyStats>, sqlx::Error> {
    let sql = format!(
        "SELECT {} FROM agent_daily_stats WHERE agent_id = $1 AND tenant_id = $2 \
         AND day >= $3 AND day <= $4 ORDER BY day",
        column_list::<DailyStats>()
    );
    let binds = [agent_id, tenant_id, from_day, to_day].map(|s| Bind::Text(s.to_owned()));
    fetch_rows(db, sql, &binds).await
}
