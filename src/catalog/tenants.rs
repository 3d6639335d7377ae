//! Tenants and their API keys (stored as SHA-256 hashes only).

use chrono::Utc;
use sqlx::Row;

use super::{CatalogError, is_unique_violation, timestamp};
use crate::db::Db;
use crate::domain::TenantId;
use crate::{with_db, with_db_read};

/// Creates a tenant with its first API key (given as id + hash; the key itself is
/// shown once by the caller and never stored).
pub async fn create(
    db: &Db,
    tenant: &TenantId,
    key_id: &str,
    key_hash: &str,
) -> Result<(), CatalogError> {
    let now = timestamp(Utc::now());
    with_db!(db, |pool| {
        let mut tx = pool.begin().await?;
        let inserted = sqlx::query("INSERT INTO tenants (tenant_id, created_at) VALUES ($1, $2)")
            .bind(tenant.as_ref())
            .bind(&now)
            .execute(&mut *tx)
            .await;
        if let Err(e) = inserted {
            return Err(if is_unique_violation(&e) {
                CatalogError::AlreadyExists(format!("tenant {tenant}"))
            } else {
                e.into()
            });
        }
        sqlx::query(
            "INSERT INTO tenant_api_keys (key_id, tenant_id, key_hash, created_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(key_id)
        .bind(tenant.as_ref())
        .bind(key_hash)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    })
}

/// The tenant owning an unrevoked API key with this hash.
pub async fn tenant_for_key_hash(
    db: &Db,
    key_hash: &str,
) -> Result<Option<TenantId>, CatalogError> {
    let row = with_db_read!(db, |pool| {
        sqlx::query(
            "SELECT tenant_id FROM tenant_api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        )
        .bind(key_hash)
        .fetch_optional(pool)
        .await?
        .map(|r| r.try_get::<String, _>("tenant_id"))
        .transpose()?
    });
    row.map(|t| TenantId::parse(&t).map_err(|e| CatalogError::Corrupt(e.0)))
        .transpose()
}

pub async fn exists(db: &Db, tenant: &TenantId) -> Result<bool, CatalogError> {
    Ok(with_db_read!(db, |pool| {
        sqlx::query("SELECT 1 FROM tenants WHERE tenant_id = $1")
            .bind(tenant.as_ref())
            .fetch_optional(pool)
            .await?
            .is_some()
    }))
}

/// Adds an API key (id + hash) to an existing tenant.
pub async fn add_key(
    db: &Db,
    tenant: &TenantId,
    key_id: &str,
    key_hash: &str,
) -> Result<(), CatalogError> {
    if !exists(db, tenant).await? {
        return Err(CatalogError::NotFound(format!("tenant {tenant}")));
    }
    let now = timestamp(Utc::now());
    with_db!(db, |pool| {
        sqlx::query(
            "INSERT INTO tenant_api_keys (key_id, tenant_id, key_hash, created_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(key_id)
        .bind(tenant.as_ref())
        .bind(key_hash)
        .bind(&now)
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// Revokes one of the tenant's keys. Returns false when the tenant has no such key;
/// revoking a revoked key again is a no-op that keeps the first revocation time.
pub async fn revoke_key(db: &Db, tenant: &TenantId, key_id: &str) -> Result<bool, CatalogError> {
    let now = timestamp(Utc::now());
    let found = with_db!(db, |pool| {
        sqlx::query(
            "UPDATE tenant_api_keys SET revoked_at = COALESCE(revoked_at, $3) \
             WHERE tenant_id = $1 AND key_id = $2",
        )
        .bind(tenant.as_ref())
        .bind(key_id)
        .bind(&now)
        .execute(pool)
        .await?
        .rows_affected()
    });
    Ok(found == 1)
}

/// One API key as listed to the operator (never the key or its hash).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ApiKeyInfo {
    pub key_id: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// The tenant's keys, oldest first.
pub async fn list_keys(db: &Db, tenant: &TenantId) -> Result<Vec<ApiKeyInfo>, CatalogError> {
    Ok(with_db_read!(db, |pool| {
        sqlx::query(
            "SELECT key_id, created_at, revoked_at FROM tenant_api_keys \
             WHERE tenant_id = $1 ORDER BY created_at, key_id",
        )
        .bind(tenant.as_ref())
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| {
            Ok(ApiKeyInfo {
                key_id: r.try_get("key_id")?,
                created_at: r.try_get("created_at")?,
                revoked_at: r.try_get("revoked_at")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?
    }))
}
