//! The row SQL every read model shares, generic over [`Record`]: loading the rows a
//! batch touches, multi-row upserts (`unnest` on PostgreSQL, multi-row `VALUES` on
//! SQLite), deletes, and the reads the API serves. Table names are always chosen by
//! code (a projection's name, or that name with a shadow suffix), never by input, and
//! are quoted.

use std::collections::HashMap;

use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, Row};

use super::model::{Cell, Kind, Record};
use super::sql::{Tx, on_tx};
use crate::db::Db;

/// `"c1", "c2", …` of a record's columns.
pub fn column_list<R: Record>() -> String {
    R::COLUMNS
        .iter()
        .map(|c| format!("\"{}\"", c.name))
        .collect::<Vec<_>>()
        .join(", ")
}

fn key_column<R: Record>() -> &'static str {
    R::COLUMNS[0].name
}

macro_rules! decode_cells {
    ($row:expr, $r:ty) => {{
        let mut cells = Vec::with_capacity(<$r>::COLUMNS.len());
        for (i, column) in <$r>::COLUMNS.iter().enumerate() {
            cells.push(match column.kind {
                Kind::Text => Cell::Text($row.try_get::<Option<String>, _>(i)?),
                Kind::Int => Cell::Int($row.try_get::<Option<i64>, _>(i)?),
            });
        }
        <$r>::from_cells(cells).map_err(|e| sqlx::Error::Decode(e.into()))
    }};
}

pub fn decode_sqlite<R: Record>(row: &SqliteRow) -> Result<R, sqlx::Error> {
    decode_cells!(row, R)
}

pub fn decode_postgres<R: Record>(row: &PgRow) -> Result<R, sqlx::Error> {
    decode_cells!(row, R)
}

/// The stored rows with these keys, by key, read in the batch's transaction.
pub async fn load_rows<R: Record>(
    tx: &mut Tx,
    table: &str,
    keys: &[&str],
) -> Result<HashMap<String, R>, sqlx::Error> {
    match tx {
        Tx::Sqlite(t) => select_sqlite(&mut **t, table, keys).await,
        Tx::Postgres(t) => select_postgres(&mut **t, table, keys).await,
    }
}

/// The stored rows with these keys, by key, read outside any transaction (on SQLite
/// from the read pool: the one writer is not taken).
pub async fn read_rows<R: Record>(
    db: &Db,
    table: &str,
    keys: &[&str],
) -> Result<HashMap<String, R>, sqlx::Error> {
    match db {
        Db::Sqlite(s) => select_sqlite(&s.reader, table, keys).await,
        Db::Postgres(pg) => select_postgres(pg, table, keys).await,
    }
}

async fn select_sqlite<'c, R: Record>(
    conn: impl sqlx::SqliteExecutor<'c>,
    table: &str,
    keys: &[&str],
) -> Result<HashMap<String, R>, sqlx::Error> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = select_by_keys::<R>(table, "IN (SELECT value FROM json_each($1))");
    let keys = serde_json::to_string(keys).expect("strings serialize");
    let rows = sqlx::query(sql).bind(keys).fetch_all(conn).await?;
    by_key(rows.iter().map(decode_sqlite::<R>))
}

async fn select_postgres<'c, R: Record>(
    conn: impl sqlx::PgExecutor<'c>,
    table: &str,
    keys: &[&str],
) -> Result<HashMap<String, R>, sqlx::Error> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = select_by_keys::<R>(table, "= ANY($1::text[])");
    let rows = sqlx::query(sql).bind(keys).fetch_all(conn).await?;
    by_key(rows.iter().map(decode_postgres::<R>))
}

/// `SELECT` of `R`'s columns from `table` where the key `matches` the keys in `$1`.
fn select_by_keys<R: Record>(table: &str, matches: &str) -> AssertSqlSafe<String> {
    let (columns, key) = (column_list::<R>(), key_column::<R>());
    AssertSqlSafe(format!(
        "SELECT {columns} FROM \"{table}\" WHERE \"{key}\" {matches}"
    ))
}

fn by_key<R: Record>(
    rows: impl Iterator<Item = Result<R, sqlx::Error>>,
) -> Result<HashMap<String, R>, sqlx::Error> {
    rows.map(|r| r.map(|r| (r.key().to_owned(), r))).collect()
}

/// Inserts or replaces `rows` (keys must be distinct).
pub async fn upsert_rows<R: Record>(
    tx: &mut Tx,
    table: &str,
    rows: &[&R],
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    match tx {
        Tx::Postgres(t) => {
            // One array per column: one statement and a handful of parameters however
            // many rows there are.
            let (columns, key, updates) =
                (column_list::<R>(), key_column::<R>(), update_clause::<R>());
            let arrays = R::COLUMNS
                .iter()
                .enumerate()
                .map(|(i, c)| match c.kind {
                    Kind::Text => format!("${}::text[]", i + 1),
                    Kind::Int => format!("${}::int8[]", i + 1),
                })
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "INSERT INTO \"{table}\" ({columns}) SELECT * FROM unnest({arrays}) \
                 ON CONFLICT (\"{key}\") DO UPDATE SET {updates}"
            );
            let cells: Vec<Vec<Cell>> = rows.iter().map(|r| r.to_cells()).collect();
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for (i, column) in R::COLUMNS.iter().enumerate() {
                query = match column.kind {
                    Kind::Text => query.bind(
                        cells
                            .iter()
                            .map(|row| match &row[i] {
                                Cell::Text(v) => v.clone(),
                                Cell::Int(v) => v.map(|n| n.to_string()),
                            })
                            .collect::<Vec<Option<String>>>(),
                    ),
                    Kind::Int => query.bind(
                        cells
                            .iter()
                            .map(|row| match &row[i] {
                                Cell::Int(v) => *v,
                                Cell::Text(_) => None,
                            })
                            .collect::<Vec<Option<i64>>>(),
                    ),
                };
            }
            query.execute(&mut **t).await?;
        }
        Tx::Sqlite(t) => {
            // SQLite allows 32766 parameters per statement.
            let per_statement = (30_000 / R::COLUMNS.len()).max(1);
            for chunk in rows.chunks(per_statement) {
                let mut query = sqlx::query(AssertSqlSafe(sqlite_upsert::<R>(table, chunk.len())));
                for row in chunk {
                    for cell in row.to_cells() {
                        query = match cell {
                            Cell::Text(v) => query.bind(v),
                            Cell::Int(v) => query.bind(v),
                        };
                    }
                }
                query.execute(&mut **t).await?;
            }
        }
    }
    Ok(())
}

/// `col = excluded.col` for every column an update may change: not the key, and not
/// the [`fixed`](super::model::Column::fixed) ones.
fn update_clause<R: Record>() -> String {
    R::COLUMNS[1..]
        .iter()
        .filter(|c| !c.fixed)
        .map(|c| format!("\"{0}\" = excluded.\"{0}\"", c.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// SQLite's upsert of `rows` rows into `table`.
fn sqlite_upsert<R: Record>(table: &str, rows: usize) -> String {
    let placeholders = format!("({})", vec!["?"; R::COLUMNS.len()].join(", "));
    let values = vec![placeholders.as_str(); rows].join(", ");
    format!(
        "INSERT INTO \"{table}\" ({}) VALUES {values} ON CONFLICT (\"{}\") DO UPDATE SET {}",
        column_list::<R>(),
        key_column::<R>(),
        update_clause::<R>()
    )
}

pub async fn delete_keys<R: Record>(
    tx: &mut Tx,
    table: &str,
    keys: &[&str],
) -> Result<(), sqlx::Error> {
    if keys.is_empty() {
        return Ok(());
    }
    let key = key_column::<R>();
    match tx {
        Tx::Sqlite(t) => {
            let sql = format!(
                "DELETE FROM \"{table}\" WHERE \"{key}\" IN (SELECT value FROM json_each($1))"
            );
            let keys = serde_json::to_string(keys).expect("strings serialize");
            sqlx::query(AssertSqlSafe(sql))
                .bind(keys)
                .execute(&mut **t)
                .await?;
        }
        Tx::Postgres(t) => {
            let sql = format!("DELETE FROM \"{table}\" WHERE \"{key}\" = ANY($1::text[])");
            sqlx::query(AssertSqlSafe(sql))
                .bind(keys)
                .execute(&mut **t)
                .await?;
        }
    }
    Ok(())
}

/// Deletes every row of a tenant (erasure). Every read model has a `tenant_id` column.
pub async fn delete_tenant(tx: &mut Tx, table: &str, tenant: &str) -> Result<u64, sqlx::Error> {
    let sql = format!("DELETE FROM \"{table}\" WHERE tenant_id = $1");
    on_tx!(tx, |c| Ok(sqlx::query(AssertSqlSafe(sql))
        .bind(tenant)
        .execute(c)
        .await?
        .rows_affected()))
}

/// A parameter of a read query.
#[derive(Debug, Clone)]
pub enum Bind {
    Text(String),
    Int(i64),
}

/// Runs a read query selecting `R`'s columns (in order) on either backend.
pub async fn fetch_rows<R: Record>(
    db: &Db,
    sql: String,
    binds: &[Bind],
) -> Result<Vec<R>, sqlx::Error> {
    macro_rules! bound {
        ($sql:expr) => {{
            let mut query = sqlx::query(AssertSqlSafe($sql));
            for bind in binds {
                query = match bind {
                    Bind::Text(v) => query.bind(v.clone()),
                    Bind::Int(v) => query.bind(*v),
                };
            }
            query
        }};
    }
    match db {
        Db::Sqlite(s) => bound!(sql)
            .fetch_all(&s.reader)
            .await?
            .iter()
            .map(decode_sqlite::<R>)
            .collect(),
        Db::Postgres(pg) => bound!(sql)
            .fetch_all(pg)
            .await?
            .iter()
            .map(decode_postgres::<R>)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projections::agents::AgentSummary;
    use crate::projections::daily::DailyStats;
    use crate::projections::executions::ExecutionRow;

    /// How many index entries SQLite's upsert into `table` deletes (and inserts again)
    /// when the row exists: one per index on a column its update sets.
    async fn index_rewrites<R: Record>(db: &Db, table: &str) -> usize {
        let Db::Sqlite(s) = db else {
            unreachable!("opened as SQLite")
        };
        let sql = format!("EXPLAIN {}", sqlite_upsert::<R>(table, 1)).replace('?', "NULL");
        sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&s.writer)
            .await
            .unwrap()
            .iter()
            .filter(|step| step.get::<String, _>("opcode") == "IdxDelete")
            .count()
    }

    /// With deliveries spread over many agents, every index entry an update rewrites is
    /// one more page written per agent and pass. Updates leave the indexes on fixed
    /// columns alone: only `agent_test_executions_unfinished (status, queued_at)` is
    /// rewritten, since an execution's status changes.
    #[tokio::test]
    async fn sqlite_updates_rewrite_only_indexes_on_columns_that_change() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_sqlite_file(&dir.path().join("hookrun.db"))
            .await
            .unwrap();
        assert_eq!(
            index_rewrites::<AgentSummary>(&db, "agent_summaries").await,
            0
        );
        assert_eq!(
            index_rewrites::<DailyStats>(&db, "agent_daily_stats").await,
            0
        );
        assert_eq!(
            index_rewrites::<ExecutionRow>(&db, "agent_test_executions").await,
            1
        );
    }
}
