//! Row writes built before they run: each statement with every value it binds. A
//! rebuild's flush builds its writes and only then begins its transaction, which on
//! SQLite holds the one writer that webhooks' appends also need: the transaction then
//! spends its time in SQLite, not waiting for the rebuild's thread (which runs at a
//! low priority, `aside.rs`) to build the next statement.
//!
//! Upserts are multi-row: `unnest` of one array per column on PostgreSQL (one
//! statement, however many rows), multi-row `VALUES` on SQLite (as many rows per
//! statement as its parameter limit allows).

use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::sqlite::SqliteArguments;
use sqlx::{AssertSqlSafe, Postgres, Sqlite};

use super::model::{Cell, Kind, Record};
use super::rows::{column_list, key_column};
use super::sql::Tx;
use crate::db::Db;

/// Statements to run in order, in one transaction, on the backend they were built for.
pub enum Writes {
    Sqlite(Vec<Query<'static, Sqlite, SqliteArguments>>),
    Postgres(Vec<Query<'static, Postgres, PgArguments>>),
}

impl Writes {
    /// No writes yet, for `db`'s backend.
    pub fn on(db: &Db) -> Self {
        match db {
            Db::Sqlite(_) => Writes::Sqlite(Vec::new()),
            Db::Postgres(_) => Writes::Postgres(Vec::new()),
        }
    }

    /// No writes yet, for the backend of `tx`.
    pub fn within(tx: &Tx) -> Self {
        match tx {
            Tx::Sqlite(_) => Writes::Sqlite(Vec::new()),
            Tx::Postgres(_) => Writes::Postgres(Vec::new()),
        }
    }

    /// Inserts `rows` into `table`, or replaces the rows with their keys (keys must be
    /// distinct). Fixed columns of a row that exists are left as they are.
    pub fn upsert<R: Record>(mut self, table: &str, rows: &[&R]) -> Self {
        if rows.is_empty() {
            return self;
        }
        match &mut self {
            Writes::Postgres(queries) => queries.push(postgres_upsert(table, rows)),
            Writes::Sqlite(queries) => {
                // SQLite allows 32766 parameters per statement.
                let per_statement = (30_000 / R::COLUMNS.len()).max(1);
                for chunk in rows.chunks(per_statement) {
                    let sql = sqlite_upsert::<R>(table, chunk.len());
                    let mut query = sqlx::query(AssertSqlSafe(sql));
                    for row in chunk {
                        for cell in row.to_cells() {
                            query = match cell {
                                Cell::Text(v) => query.bind(v),
                                Cell::Int(v) => query.bind(v),
                            };
                        }
                    }
                    queries.push(query);
                }
            }
        }
        self
    }

    /// Deletes the rows of `table` with these keys.
    pub fn delete<R: Record>(mut self, table: &str, keys: &[&str]) -> Self {
        if keys.is_empty() {
            return self;
        }
        let key = key_column::<R>();
        match &mut self {
            Writes::Sqlite(queries) => {
                let sql = format!(
                    "DELETE FROM \"{table}\" WHERE \"{key}\" IN (SELECT value FROM json_each($1))"
                );
                let keys = serde_json::to_string(keys).expect("strings serialize");
                queries.push(sqlx::query(AssertSqlSafe(sql)).bind(keys));
            }
            Writes::Postgres(queries) => {
                let sql = format!("DELETE FROM \"{table}\" WHERE \"{key}\" = ANY($1::text[])");
                let keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
                queries.push(sqlx::query(AssertSqlSafe(sql)).bind(keys));
            }
        }
        self
    }

    /// Runs the statements in `tx`, in the order they were added.
    pub async fn run(self, tx: &mut Tx) -> Result<(), sqlx::Error> {
        match (self, tx) {
            (Writes::Sqlite(queries), Tx::Sqlite(t)) => {
                for query in queries {
                    query.execute(&mut **t).await?;
                }
            }
            (Writes::Postgres(queries), Tx::Postgres(t)) => {
                for query in queries {
                    query.execute(&mut **t).await?;
                }
            }
            _ => {
                return Err(sqlx::Error::Configuration(
                    "row writes built for one backend were run on the other".into(),
                ));
            }
        }
        Ok(())
    }
}

/// One statement for any number of rows: an array per column.
fn postgres_upsert<R: Record>(table: &str, rows: &[&R]) -> Query<'static, Postgres, PgArguments> {
    let (columns, key, updates) = (column_list::<R>(), key_column::<R>(), update_clause::<R>());
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
    query
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

#[cfg(test)]
mod tests {
    use sqlx::Row;

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
