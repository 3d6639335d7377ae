//! Master key rotation: reseal every sealed value (webhook secrets, previous webhook
//! secrets, tenant gateway keys) under the current master key.
//!
//! One agent row at a time, each with a single compare-and-set `UPDATE` that only
//! succeeds if the row still holds the values that were opened. So every step is
//! atomic and idempotent: an interrupted run loses nothing (a row is either still
//! sealed under the old key, which stays configured as decrypt-only, or already
//! under the new one), a re-run skips finished rows, and a concurrent change (a
//! secret rotation) is never overwritten — the row is read again instead.

use std::collections::BTreeMap;

use sqlx::Row;

use super::CatalogError;
use super::agents::{llm_key_aad, previous_secret_aad, webhook_secret_aad};
use crate::crypto::Sealer;
use crate::db::Db;
use crate::domain::AgentId;
use crate::{with_db, with_db_read};

/// The associated data a column's values are sealed with, for a given agent.
type Aad = fn(&AgentId) -> String;

/// The sealed columns of `agents`, and the associated data each was sealed with.
const SEALED: [(&str, Aad); 3] = [
    ("webhook_secret_sealed", webhook_secret_aad),
    ("previous_secret_sealed", previous_secret_aad),
    ("llm_key_sealed", llm_key_aad),
];

/// Rows read per page while scanning.
const PAGE: i64 = 200;

/// Attempts per row when it changes between reading and updating it.
const ATTEMPTS: usize = 3;

/// What a run did. `remaining` > 0 means it stopped at its limit (or rows failed):
/// run it again. Old keys can be removed once `by_key` names only the current key.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ResealReport {
    /// The key everything is resealed under.
    pub current_key_id: String,
    /// Rows resealed by this run.
    pub resealed_rows: u64,
    /// Rows left under an old key (the limit was reached, or they failed).
    pub remaining_rows: u64,
    /// Sealed values per key id after this run.
    pub by_key: BTreeMap<String, u64>,
    /// Rows that could not be resealed, with why (e.g. sealed with an unknown key).
    pub failures: Vec<String>,
}

/// Reseals rows sealed under an old key, at most `limit` rows (all when `None`).
pub async fn reseal_all(
    db: &Db,
    sealer: &Sealer,
    limit: Option<u64>,
) -> Result<ResealReport, CatalogError> {
    let mut report = ResealReport {
        current_key_id: sealer.current_key_id().to_string(),
        ..ResealReport::default()
    };
    let mut after = String::new();
    loop {
        let page = read_page(db, &after).await?;
        let Some(last) = page.last() else { break };
        after = last.agent_id.clone();
        for mut row in page {
            let mut attempt = 0;
            let outcome = loop {
                attempt += 1;
                if !row.needs_reseal(sealer) {
                    break Ok(false);
                }
                if limit.is_some_and(|l| report.resealed_rows >= l) {
                    break Err("limit reached".to_owned());
                }
                match reseal_row(db, sealer, &row).await? {
                    Ok(true) => break Ok(true),
                    Ok(false) if attempt < ATTEMPTS => {
                        // Changed since it was read (e.g. a secret rotation): read it again.
                        match read_row(db, &row.agent_id).await? {
                            Some(fresh) => row = fresh,
                            None => break Ok(false),
                        }
                    }
                    Ok(false) => break Err("the row kept changing; run again".to_owned()),
                    Err(why) => break Err(why),
                }
            };
            match outcome {
                Ok(resealed) => report.resealed_rows += u64::from(resealed),
                Err(why) => {
                    report.remaining_rows += 1;
                    if why != "limit reached" {
                        report
                            .failures
                            .push(format!("agent {}: {why}", row.agent_id));
                    }
                }
            }
        }
    }
    report.by_key = count_by_key(db).await?;
    Ok(report)
}

/// Sealed values per key id (to know when an old key is no longer needed).
pub async fn count_by_key(db: &Db) -> Result<BTreeMap<String, u64>, CatalogError> {
    let mut counts = BTreeMap::new();
    let mut after = String::new();
    loop {
        let page = read_page(db, &after).await?;
        let Some(last) = page.last() else { break };
        after = last.agent_id.clone();
        for value in page.iter().flat_map(|r| r.values.iter().flatten()) {
            let key_id = value.split('.').nth(1).unwrap_or("?").to_owned();
            *counts.entry(key_id).or_insert(0) += 1;
        }
    }
    Ok(counts)
}

struct SealedRow {
    agent_id: String,
    /// The values of [`SEALED`]'s columns, in order.
    values: [Option<String>; 3],
}

impl SealedRow {
    fn needs_reseal(&self, sealer: &Sealer) -> bool {
        self.values.iter().flatten().any(|v| sealer.needs_reseal(v))
    }
}

/// Opens and reseals the row's stale values, then swaps them in if the row is
/// unchanged. `Ok(Ok(false))`: the row changed meanwhile; `Ok(Err(_))`: a value
/// cannot be opened (nothing was written).
async fn reseal_row(
    db: &Db,
    sealer: &Sealer,
    row: &SealedRow,
) -> Result<Result<bool, String>, CatalogError> {
    let agent_id = AgentId::parse(&row.agent_id)
        .map_err(|e| CatalogError::Corrupt(format!("agent id {:?}: {e}", row.agent_id)))?;
    let mut changes = Vec::new();
    for ((column, aad), value) in SEALED.iter().zip(&row.values) {
        let Some(old) = value.as_deref().filter(|v| sealer.needs_reseal(v)) else {
            continue;
        };
        let aad = aad(&agent_id);
        let plain = match sealer.open(old, aad.as_bytes()) {
            Ok(plain) => plain,
            Err(e) => return Ok(Err(format!("{column}: {e}"))),
        };
        changes.push((*column, old, sealer.seal(&plain, aad.as_bytes())));
    }
    if changes.is_empty() {
        return Ok(Ok(true));
    }
    let n = changes.len();
    let set: Vec<String> = (0..n)
        .map(|i| format!("{} = ${}", changes[i].0, i + 2))
        .collect();
    let check: Vec<String> = (0..n)
        .map(|i| format!("{} = ${}", changes[i].0, n + i + 2))
        .collect();
    let sql = format!(
        "UPDATE agents SET {} WHERE agent_id = $1 AND {}",
        set.join(", "),
        check.join(" AND ")
    );
    let done = with_db!(db, |pool| {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.clone())).bind(&row.agent_id);
        for (_, _, new) in &changes {
            query = query.bind(new);
        }
        for (_, old, _) in &changes {
            query = query.bind(*old);
        }
        query.execute(pool).await?.rows_affected()
    });
    Ok(Ok(done == 1))
}

const SELECT: &str =
    "SELECT agent_id, webhook_secret_sealed, previous_secret_sealed, llm_key_sealed FROM agents";

async fn read_page(db: &Db, after: &str) -> Result<Vec<SealedRow>, CatalogError> {
    let sql = format!("{SELECT} WHERE agent_id > $1 ORDER BY agent_id LIMIT $2");
    Ok(with_db_read!(db, |pool| {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(after)
            .bind(PAGE)
            .fetch_all(pool)
            .await?
            .iter()
            .map(sealed_row)
            .collect::<Result<Vec<_>, sqlx::Error>>()?
    }))
}

async fn read_row(db: &Db, agent_id: &str) -> Result<Option<SealedRow>, CatalogError> {
    let sql = format!("{SELECT} WHERE agent_id = $1");
    // The writer pool on SQLite: the row must be read as the last write left it.
    Ok(with_db!(db, |pool| {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(agent_id)
            .fetch_optional(pool)
            .await?
            .as_ref()
            .map(sealed_row)
            .transpose()?
    }))
}

fn sealed_row<R: Row>(row: &R) -> Result<SealedRow, sqlx::Error>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(SealedRow {
        agent_id: row.try_get("agent_id")?,
        values: [
            row.try_get("webhook_secret_sealed")?,
            row.try_get("previous_secret_sealed")?,
            row.try_get("llm_key_sealed")?,
        ],
    })
}
