//! Erasing a tenant (`DELETE /api/tenants/{id}`) by crypto-shredding.
//!
//! The tenant's payloads, outputs and gateway error texts are stored sealed under its
//! data key (`events::sealing`), so erasure never rewrites history: it
//! 1. destroys the tenant's data keys — from then on its sealed data cannot be read;
//! 2. deletes its catalog entries (API keys, agents, the tenant);
//! 3. appends `TenantErased` to `tenant-{id}`, which every read model folds by deleting
//!    the tenant's rows (a rebuild replays it too, so the rows never come back);
//! 4. catches the projections up past that event, so the rows are gone (on disk, see
//!    `ProjectionRunner::catch_up_to`) when it answers;
//! 5. removes the table a rebuild may just have swapped out, which still holds them
//!    (`shadow::retire`);
//! 6. on SQLite, checkpoints the WAL into the database file and truncates it: deleted
//!    content is zeroed (`secure_delete`), and no older copy of a page stays behind in
//!    the WAL.

use std::sync::Arc;

use chrono::Utc;
use serde::Serialize;

use crate::db::Db;
use crate::domain::TenantId;
use crate::events::envelope::{SCHEMA_VERSION, fresh_event_id};
use crate::events::tenant::{TenantEvent, stream_name};
use crate::events::tenant_keys::TenantKeys;
use crate::events::{EventMetadata, EventStore, ExpectedVersion, NewEvent, Position};
use crate::projections::ProjectionRunner;
use crate::projections::rebuild::Pace;
use crate::with_db;

#[derive(Debug, Clone, Serialize)]
pub struct Erasure {
    pub tenant_id: String,
    pub keys_destroyed: u64,
    pub agents_deleted: u64,
    /// Position of the `TenantErased` event.
    pub position: Position,
}

#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    #[error("tenant {0} not found")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] crate::events::StoreError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

pub async fn erase_tenant(
    db: &Db,
    store: &Arc<dyn EventStore>,
    keys: &TenantKeys,
    tenant: &TenantId,
) -> Result<Erasure, EraseError> {
    let id = tenant.as_ref();
    let exists = crate::catalog::tenants::exists(db, tenant)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if !exists {
        return Err(EraseError::NotFound(id.to_owned()));
    }
    let keys_destroyed = keys.destroy(id).await?;
    let agents_deleted = with_db!(db, |pool| {
        let mut tx = pool.begin().await?;
        for statement in [
            "DELETE FROM tenant_api_keys WHERE tenant_id = $1",
            "DELETE FROM tenant_data_keys WHERE tenant_id = $1",
        ] {
            sqlx::query(statement).bind(id).execute(&mut *tx).await?;
        }
        let agents = sqlx::query("DELETE FROM agents WHERE tenant_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM tenants WHERE tenant_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        agents
    });
    let erased = TenantEvent::TenantErased {
        tenant_id: id.to_owned(),
        erased_at: Utc::now(),
        keys_destroyed,
    };
    let meta = EventMetadata {
        event_id: fresh_event_id(),
        tenant_id: id.to_owned(),
        agent_id: String::new(),
        correlation_id: format!("erase-{id}"),
        causation_id: None,
        occurred_at: Utc::now(),
        schema_version: SCHEMA_VERSION,
    };
    let event = NewEvent::from_typed(erased.event_type(), &erased, &meta)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let appended = store
        .append(&stream_name(id), ExpectedVersion::Any, vec![event])
        .await?;
    let projections = ProjectionRunner::new(store.clone(), db.clone());
    projections.catch_up_to(appended.position).await?;
    // A table a rebuild has just swapped out still holds the tenant's rows until it is
    // removed, which the erasure does not wait for.
    projections.remove_replaced(Pace::Full).await?;
    if let Db::Sqlite(s) = db {
        truncate_wal(&s.writer).await?;
    }
    tracing::info!(tenant = id, keys_destroyed, agents_deleted, "tenant erased");
    Ok(Erasure {
        tenant_id: id.to_owned(),
        keys_destroyed,
        agents_deleted,
        position: appended.position,
    })
}

/// Copies every WAL frame into the database file and truncates the WAL to zero bytes.
/// A reader in the middle of a transaction can make a checkpoint stop short; readers
/// are brief, so it is retried a few times.
async fn truncate_wal(writer: &sqlx::SqlitePool) -> anyhow::Result<()> {
    for attempt in 0..50 {
        let (busy, log, done): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(writer)
            .await?;
        if busy == 0 && log == done {
            return Ok(());
        }
        tracing::debug!(
            attempt,
            busy,
            log,
            done,
            "WAL checkpoint incomplete; retrying"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    anyhow::bail!(
        "could not checkpoint the WAL (readers kept it busy); erased rows may linger in it until the next checkpoint"
    )
}
