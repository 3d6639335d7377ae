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

pub(super) fn key_column<R: Record>() -> &'static str {
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
