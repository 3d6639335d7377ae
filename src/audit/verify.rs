//! `hookrun verify`: replays the whole history into a scratch copy of every read model
//! (`{name}__verify`, built by the same fold and SQL as the live table) and reports
//! every row where the live table differs.
//!
//! The live rows and their checkpoint are read from one consistent snapshot (a read
//! transaction on SQLite, `REPEATABLE READ` on PostgreSQL), and the scratch copy is
//! replayed up to exactly that checkpoint, so a running service — whose projections
//! keep moving — does not show up as a difference.

use std::sync::Arc;

use crate::db::Db;
use crate::events::{EventStore, Position};
use crate::projections::batch::Target;
use crate::projections::model::{Cell, Projection, Record};
use crate::projections::rebuild::{self, Pace};
use crate::projections::rows::{self, Bind, column_list, fetch_rows};
use crate::projections::runner::all_projections;
use crate::projections::shadow;

/// Rows of a table as `(key, cells)`.
pub type LiveRows = Vec<(String, Vec<Cell>)>;

/// A row where the live read model and the replay disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub projection: &'static str,
    pub key: String,
    pub what: String,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: row {}: {}", self.projection, self.key, self.what)
    }
}

/// Verifies every read model; an empty list means they all match their history.
pub async fn verify_all(store: &Arc<dyn EventStore>, db: &Db) -> anyhow::Result<Vec<Difference>> {
    let mut differences = Vec::new();
    for projection in all_projections() {
        let (checkpoint, live) = projection.snapshot(db).await?;
        differences.extend(
            projection
                .replay_and_compare(store, db, checkpoint, live)
                .await?,
        );
    }
    Ok(differences)
}

fn as_rows<R: Record>(rows: Vec<R>) -> LiveRows {
    rows.into_iter()
        .map(|r| (r.key().to_owned(), r.to_cells()))
        .collect()
}

/// The live checkpoint and rows of `P`, from one snapshot.
pub async fn snapshot<P: Projection>(db: &Db) -> anyhow::Result<(Position, LiveRows)> {
    let select_cp = "SELECT commit_pos, prepare_pos FROM projection_checkpoints WHERE name = $1";
    let select_rows = sqlx::AssertSqlSafe(format!(
        "SELECT {} FROM \"{}\"",
        column_list::<P::Row>(),
        P::NAME
    ));
    let (cp, rows): (Option<(i64, i64)>, Vec<P::Row>) = match db {
        Db::Sqlite(s) => {
            let mut tx = s.reader.begin().await?;
            let cp = sqlx::query_as(select_cp)
                .bind(P::NAME)
                .fetch_optional(&mut *tx)
                .await?;
            let rows = sqlx::query(select_rows)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(rows::decode_sqlite::<P::Row>)
                .collect::<Result<_, _>>()?;
            tx.commit().await?;
            (cp, rows)
        }
        Db::Postgres(pg) => {
            let mut tx = pg.begin().await?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await?;
            let cp = sqlx::query_as(select_cp)
                .bind(P::NAME)
                .fetch_optional(&mut *tx)
                .await?;
            let rows = sqlx::query(select_rows)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(rows::decode_postgres::<P::Row>)
                .collect::<Result<_, _>>()?;
            tx.commit().await?;
            (cp, rows)
        }
    };
    let position = cp.map_or(Position::START, |(c, p)| Position {
        commit: c.max(0) as u64,
        prepare: p.max(0) as u64,
    });
    Ok((position, as_rows(rows)))
}

/// Replays `P` up to `stop` into a scratch table and compares it with `live`.
pub async fn replay_and_compare<P: Projection>(
    store: &Arc<dyn EventStore>,
    db: &Db,
    stop: Position,
    live: LiveRows,
) -> anyhow::Result<Vec<Difference>> {
    let scratch = Target::beside(P::NAME, "verify");
    let key = <P::Row as Record>::COLUMNS[0].name;
    shadow::prepare(db, P::NAME, key, &scratch, P::VERSION, false).await?;
    let replayed = async {
        if stop > Position::START {
            rebuild::fill::<P>(store, db, &scratch, Some(stop), Pace::Full, |_| {}).await?;
        }
        let sql = format!(
            "SELECT {} FROM \"{}\"",
            column_list::<P::Row>(),
            scratch.table
        );
        anyhow::Ok(fetch_rows::<P::Row>(db, sql, &[] as &[Bind]).await?)
    }
    .await;
    shadow::drop(db, &scratch).await?;
    Ok(compare(
        P::NAME,
        <P::Row as Record>::COLUMNS,
        live,
        as_rows(replayed?),
    ))
}

/// Every row present on one side only, and every column that differs.
pub fn compare(
    projection: &'static str,
    columns: &[crate::projections::model::Column],
    mut live: LiveRows,
    mut replayed: LiveRows,
) -> Vec<Difference> {
    live.sort_by(|a, b| a.0.cmp(&b.0));
    replayed.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::new();
    let (mut l, mut r) = (live.into_iter().peekable(), replayed.into_iter().peekable());
    let differ = |key: String, what: String| Difference {
        projection,
        key,
        what,
    };
    loop {
        let order = match (l.peek(), r.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(a), Some(b)) => a.0.cmp(&b.0),
        };
        match order {
            std::cmp::Ordering::Less => {
                let (key, _) = l.next().expect("peeked");
                out.push(differ(
                    key,
                    "in the live table but not in the replay".into(),
                ));
            }
            std::cmp::Ordering::Greater => {
                let (key, _) = r.next().expect("peeked");
                out.push(differ(
                    key,
                    "in the replay but missing from the live table".into(),
                ));
            }
            std::cmp::Ordering::Equal => {
                let ((key, a), (_, b)) = (l.next().expect("peeked"), r.next().expect("peeked"));
                for ((column, x), y) in columns.iter().zip(&a).zip(&b) {
                    if x != y {
                        let what = format!(
                            "column {}: live {}, replay {}",
                            column.name,
                            show(x),
                            show(y)
                        );
                        out.push(differ(key.clone(), what));
                    }
                }
            }
        }
    }
    out
}

fn show(cell: &Cell) -> String {
    match cell {
        Cell::Text(Some(t)) => format!("{t:?}"),
        Cell::Int(Some(n)) => n.to_string(),
        Cell::Text(None) | Cell::Int(None) => "null".into(),
    }
}
