//! Shadow tables: copies of a read model's table that a rebuild (or `hookrun verify`)
//! fills beside the live one, the atomic swap that puts a rebuilt copy in place, and
//! the removal of the table it replaced.
//!
//! A shadow is created from the live table itself (SQLite: its stored `CREATE TABLE`;
//! PostgreSQL: `LIKE … INCLUDING DEFAULTS INCLUDING CONSTRAINTS` plus the primary key),
//! so it always has the columns the migrations gave the live table. It starts with the
//! primary key only — rows go in faster without the secondary indexes, which are built
//! once at the end under the live table's index names.

use std::time::Instant;

use sqlx::Row;

use super::batch::Target;
use super::behind::{Pace, Window};
use super::sql::{self, Tx};
use crate::db::Db;
use crate::events::Position;

async fn sqlite_has_table(
    conn: impl sqlx::SqliteExecutor<'_>,
    table: &str,
) -> Result<bool, sqlx::Error> {
    Ok(
        sqlx::query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = $1")
            .bind(table)
            .fetch_optional(conn)
            .await?
            .is_some(),
    )
}

/// Whether `table` is there, as last committed. On SQLite it looks on a reader, so that
/// a caller does not wait for the one writer to find out.
pub async fn table_exists(db: &Db, table: &str) -> Result<bool, sqlx::Error> {
    Ok(match db {
        Db::Sqlite(s) => sqlite_has_table(&s.reader, table).await?,
        Db::Postgres(pg) => sqlx::query(
            "SELECT 1 FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = $1",
        )
        .bind(table)
        .fetch_optional(pg)
        .await?
        .is_some(),
    })
}

/// Makes `shadow` an empty copy of `live` at the start of the history, or keeps it as
/// it is when `resume` and it was left, at `version`, by an interrupted run (its rows
/// and checkpoint were committed together, so it can simply carry on).
/// Returns the shadow's checkpoint.
pub async fn prepare(
    db: &Db,
    live: &str,
    key: &str,
    shadow: &Target,
    version: u32,
    resume: bool,
) -> anyhow::Result<Position> {
    if resume
        && let Some(cp) = sql::read_checkpoint(db, &shadow.checkpoint).await?
        && cp.version == version
        && table_exists(db, &shadow.table).await?
        && (cp.position == Position::START || has_rows(db, &shadow.table).await?)
    {
        return Ok(cp.position);
    }
    let mut tx = Tx::begin(db, &[&shadow.checkpoint]).await?;
    let table = &shadow.table;
    tx.execute(format!("DROP TABLE IF EXISTS \"{table}\""))
        .await?;
    let create = match &mut tx {
        Tx::Sqlite(t) => {
            let stored: String = sqlx::query_scalar(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = $1",
            )
            .bind(live)
            .fetch_one(&mut **t)
            .await?;
            let columns = stored
                .find('(')
                .map(|i| &stored[i..])
                .ok_or_else(|| anyhow::anyhow!("unexpected definition of {live}: {stored}"))?;
            vec![format!("CREATE TABLE \"{table}\" {columns}")]
        }
        Tx::Postgres(_) => vec![
            // Unlogged: the shadow's rows skip the write-ahead log while it fills (a
            // crash empties it, which `prepare` notices); `make_durable` logs it
            // before it is swapped in.
            format!(
                "CREATE UNLOGGED TABLE \"{table}\" (LIKE \"{live}\" INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
            ),
            format!(
                "ALTER TABLE \"{table}\" ADD CONSTRAINT \"{table}_pkey\" PRIMARY KEY (\"{key}\")"
            ),
        ],
    };
    for statement in create {
        tx.execute(statement).await?;
    }
    sql::set_checkpoint(&mut tx, &shadow.checkpoint, Position::START, version).await?;
    tx.commit().await?;
    Ok(Position::START)
}

/// Whether a table has any row. On PostgreSQL an unlogged shadow is emptied by a crash
/// while its checkpoint (a logged row) survives: such a shadow cannot be resumed.
async fn has_rows(db: &Db, table: &str) -> Result<bool, sqlx::Error> {
    let sql = sqlx::AssertSqlSafe(format!("SELECT EXISTS (SELECT 1 FROM \"{table}\")"));
    Ok(match db {
        Db::Sqlite(s) => {
            sqlx::query_scalar::<_, bool>(sql)
                .fetch_one(&s.writer)
                .await?
        }
        Db::Postgres(pg) => sqlx::query_scalar::<_, bool>(sql).fetch_one(pg).await?,
    })
}

/// PostgreSQL: writes the (unlogged) shadow to the write-ahead log, so that once
/// swapped in it is as durable as any table. Done before the swap, outside its lock.
pub async fn make_durable(db: &Db, shadow: &Target) -> anyhow::Result<()> {
    if let Db::Postgres(pg) = db {
        let sql = format!("ALTER TABLE \"{}\" SET LOGGED", shadow.table);
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(pg).await?;
    }
    Ok(())
}

/// Drops a shadow and its checkpoint.
pub async fn drop(db: &Db, shadow: &Target) -> anyhow::Result<()> {
    let mut tx = Tx::begin(db, &[&shadow.checkpoint]).await?;
    tx.execute(format!("DROP TABLE IF EXISTS \"{}\"", shadow.table))
        .await?;
    sql::delete_checkpoint(&mut tx, &shadow.checkpoint).await?;
    tx.commit().await?;
    Ok(())
}

/// The live table's secondary indexes: `(name, definition)`.
async fn secondary_indexes(tx: &mut Tx, live: &str) -> Result<Vec<(String, String)>, sqlx::Error> {
    let rows = match tx {
        Tx::Sqlite(t) => sqlx::query(
            "SELECT name, sql AS def FROM sqlite_master \
             WHERE type = 'index' AND tbl_name = $1 AND sql IS NOT NULL ORDER BY name",
        )
        .bind(live)
        .fetch_all(&mut **t)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("name")?, r.try_get("def")?)))
        .collect::<Result<Vec<_>, sqlx::Error>>()?,
        Tx::Postgres(t) => sqlx::query(
            "SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS def \
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE i.indrelid = $1::regclass AND NOT i.indisprimary ORDER BY c.relname",
        )
        .bind(live)
        .fetch_all(&mut **t)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("name")?, r.try_get("def")?)))
        .collect::<Result<Vec<_>, sqlx::Error>>()?,
    };
    Ok(rows)
}

/// PostgreSQL: builds the live table's secondary indexes on the shadow, under
/// temporary names, before the swap — so the swap itself only renames. (SQLite cannot
/// rename an index: it builds them inside the swap.)
pub async fn index_before_swap(db: &Db, live: &str, shadow: &Target) -> anyhow::Result<()> {
    let Db::Postgres(_) = db else {
        return Ok(());
    };
    let mut tx = Tx::begin(db, &[&shadow.checkpoint]).await?;
    for (name, def) in secondary_indexes(&mut tx, live).await? {
        let using = def
            .find(" USING ")
            .map(|i| &def[i..])
            .ok_or_else(|| anyhow::anyhow!("unexpected index definition {def}"))?;
        let unique = if def.starts_with("CREATE UNIQUE") {
            "UNIQUE "
        } else {
            ""
        };
        tx.execute(format!("DROP INDEX IF EXISTS \"{name}__rebuild\""))
            .await?;
        tx.execute(format!(
            "CREATE {unique}INDEX \"{name}__rebuild\" ON \"{}\"{using}",
            shadow.table
        ))
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Inside the swap transaction: replaces `live` by `shadow` under the live names.
pub async fn swap_in(tx: &mut Tx, live: &str, shadow: &str) -> anyhow::Result<()> {
    let indexes = secondary_indexes(tx, live).await?;
    if tx.is_postgres() {
        tx.execute(format!("DROP TABLE \"{live}\"")).await?;
        tx.execute(format!("ALTER TABLE \"{shadow}\" RENAME TO \"{live}\""))
            .await?;
        tx.execute(format!(
            "ALTER TABLE \"{live}\" RENAME CONSTRAINT \"{shadow}_pkey\" TO \"{live}_pkey\""
        ))
        .await?;
        for (name, _) in indexes {
            tx.execute(format!(
                "ALTER INDEX \"{name}__rebuild\" RENAME TO \"{name}\""
            ))
            .await?;
        }
        return Ok(());
    }
    // SQLite cannot rename an index: the live names are freed and the indexes built
    // again on the shadow. Nor can it drop a table without visiting (and, with
    // `secure_delete`, overwriting) every page of it, which here would about double the
    // time the swap holds the one writer: the replaced table is set aside instead, and
    // [`retire`] removes it after the swap in short steps.
    let retired = retired(live);
    tx.execute(format!("DROP TABLE IF EXISTS \"{retired}\""))
        .await?;
    tx.execute(format!("ALTER TABLE \"{live}\" RENAME TO \"{retired}\""))
        .await?;
    for (name, _) in &indexes {
        tx.execute(format!("DROP INDEX \"{name}\"")).await?;
    }
    tx.execute(format!("ALTER TABLE \"{shadow}\" RENAME TO \"{live}\""))
        .await?;
    for (_, def) in indexes {
        // The stored definition names the live table, which the shadow now is.
        tx.execute(def).await?;
    }
    Ok(())
}

/// Rows [`retire`] deletes per step: about 10 ms of the writer on SQLite.
pub const RETIRE_ROWS: u32 = 10_000;

/// Where a SQLite swap sets the table it replaced (`{live}__retired`).
pub fn retired(live: &str) -> String {
    format!("{live}__retired")
}

/// What [`retire`] did: rows deleted, and in how many transactions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retired {
    pub rows: u64,
    pub steps: u32,
}

/// Removes the table a swap set aside — by this rebuild, or by one interrupted after
/// its swap. On SQLite its rows go `rows_per_step` at a time, by rowid (a read model's
/// table has one), each step a transaction of its own followed by the pause `pace`
/// asks for; the step that empties it drops it. On PostgreSQL it is dropped at once.
/// Two callers may retire the same table at once: each SQLite step looks for it again.
pub async fn retire(
    db: &Db,
    live: &str,
    rows_per_step: u32,
    pace: Pace,
) -> anyhow::Result<Retired> {
    let table = retired(live);
    let rows_per_step = rows_per_step.max(1);
    let mut done = Retired::default();
    // Most calls find nothing, and look without waiting for the writer.
    if !table_exists(db, &table).await? {
        return Ok(done);
    }
    let drop_table = format!("DROP TABLE IF EXISTS \"{table}\"");
    let writer = match db {
        Db::Postgres(pg) => {
            sqlx::query(sqlx::AssertSqlSafe(drop_table))
                .execute(pg)
                .await?;
            done.steps = 1;
            return Ok(done);
        }
        Db::Sqlite(s) => &s.writer,
    };
    let delete = format!(
        "DELETE FROM \"{table}\" WHERE rowid IN (SELECT rowid FROM \"{table}\" LIMIT {rows_per_step})"
    );
    loop {
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
        let began = Instant::now();
        if !sqlite_has_table(&mut *tx, &table).await? {
            return Ok(done);
        }
        let deleted = sqlx::query(sqlx::AssertSqlSafe(delete.clone()))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let emptied = deleted < u64::from(rows_per_step);
        if emptied {
            sqlx::query(sqlx::AssertSqlSafe(drop_table.clone()))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        let held = Window {
            began,
            ended: Instant::now(),
        };
        done.rows += deleted;
        done.steps += 1;
        if emptied {
            return Ok(done);
        }
        tokio::time::sleep_until(pace.next_flush(held).into()).await;
    }
}
