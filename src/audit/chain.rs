//! `hookrun verify --chain`: reads every stored event, stream by stream, straight from
//! the `events` table (the bytes the hashes cover, not the decoded events the
//! application reads) and checks each stream's hash chain (`events::chain`).

use futures::TryStreamExt;
use sqlx::Row;
use uuid::Uuid;

use crate::db::Db;
use crate::events::chain::{ChainChecker, ChainReport, StoredLink};
use crate::with_db_read;

/// Every event in chain order, as stored (PostgreSQL's typed columns read as text).
const SELECT_SQLITE: &str = "SELECT seq, stream_id, revision, event_id, event_type, data, \
     metadata, hash FROM events ORDER BY stream_id, revision";
const SELECT_POSTGRES: &str = "SELECT seq, stream_id, revision, event_id::text AS event_id, \
     event_type, data::text AS data, metadata::text AS metadata, hash \
     FROM events ORDER BY stream_id, revision";

/// Checks the chain of every stream in the event store database `db`.
pub async fn check_all(db: &Db) -> anyhow::Result<ChainReport> {
    let legacy_max_seq: i64 = with_db_read!(db, |pool| {
        sqlx::query_scalar("SELECT legacy_max_seq FROM event_chain_start")
            .fetch_one(pool)
            .await?
    });
    let mut checker = ChainChecker::new(legacy_max_seq.max(0) as u64);
    let select = match db {
        Db::Sqlite(_) => SELECT_SQLITE,
        Db::Postgres(_) => SELECT_POSTGRES,
    };
    with_db_read!(db, |pool| {
        let mut rows = sqlx::query(select).fetch(pool);
        while let Some(row) = rows.try_next().await? {
            checker.push(&link(
                row.try_get("seq")?,
                row.try_get("stream_id")?,
                row.try_get("revision")?,
                row.try_get("event_id")?,
                row.try_get("event_type")?,
                row.try_get("data")?,
                row.try_get("metadata")?,
                row.try_get("hash")?,
            )?);
        }
    });
    Ok(checker.finish())
}

#[allow(clippy::too_many_arguments)]
fn link(
    seq: i64,
    stream_id: String,
    revision: i64,
    event_id: String,
    event_type: String,
    data: String,
    metadata: String,
    hash: Option<String>,
) -> anyhow::Result<StoredLink> {
    Ok(StoredLink {
        seq: seq.max(0) as u64,
        revision: revision.max(0) as u64,
        event_id: Uuid::parse_str(&event_id)
            .map_err(|e| anyhow::anyhow!("{stream_id} revision {revision}: bad event id: {e}"))?,
        stream_id,
        event_type,
        data,
        metadata,
        hash,
    })
}
