//! `hookrun deliveries`: the delivery audit log as JSON lines, newest first.

use std::io::Write;

use crate::config::Settings;
use crate::deliveries::store;
use crate::domain::AgentId;
use crate::startup::Stores;

/// `agent` `None`: the rows of requests that named no existing agent.
pub(super) async fn run(
    settings: Settings,
    agent: Option<String>,
    limit: i64,
) -> anyhow::Result<()> {
    let stores = Stores::open(&settings).await?;
    let agent = agent.as_deref().map(AgentId::parse).transpose()?;
    let mut out = std::io::stdout().lock();
    let mut before = None;
    let mut left = limit.max(0);
    while left > 0 {
        let page = left.min(store::MAX_LIMIT);
        let rows = store::list(&stores.db, agent.as_ref(), before, page).await?;
        for row in &rows {
            writeln!(out, "{}", serde_json::to_string(row)?)?;
        }
        left -= rows.len() as i64;
        match rows.last() {
            Some(last) if rows.len() as i64 == page => before = Some(last.id),
            _ => break,
        }
    }
    Ok(())
}
