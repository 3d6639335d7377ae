//! Per-tenant data keys: created on a tenant's first sealed event, stored (sealed
//! under the master key) in `tenant_data_keys`, destroyed by erasure.
//!
//! Keys are cached in memory: a key found is kept for [`CACHE_TTL`] (so another node's
//! erasure takes effect here within that time; on the erasing node at once), a key id
//! found missing is remembered for good (a destroyed key never comes back, and a new
//! key always has a new id). Lookups for opening use the read pool only, so reading
//! events never waits for the SQLite writer.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::catalog::timestamp;
use crate::crypto::{MasterKey, Sealer};
use crate::db::Db;
use crate::events::StoreError;
use crate::{with_db, with_db_read};

/// How long a found key is trusted before it is looked up again.
pub const CACHE_TTL: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct TenantKeys {
    db: Db,
    master: Arc<Sealer>,
    cache: Mutex<Cache>,
}

#[derive(Debug, Default)]
struct Cache {
    /// tenant id → (key id, sealer, when found)
    by_tenant: HashMap<String, (String, Arc<Sealer>, Instant)>,
    /// key id → (tenant id, sealer, when found)
    by_id: HashMap<String, (String, Arc<Sealer>, Instant)>,
    destroyed: HashSet<String>,
}

fn aad(tenant: &str, key_id: &str) -> String {
    format!("tenant:{tenant}:data_key:{key_id}")
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("tenant data keys: {e}"))
}

impl TenantKeys {
    pub fn new(db: Db, master: Arc<Sealer>) -> Self {
        TenantKeys {
            db,
            master,
            cache: Mutex::new(Cache::default()),
        }
    }

    fn unseal(&self, tenant: &str, key_id: &str, sealed: &str) -> Result<Arc<Sealer>, StoreError> {
        let bytes = self
            .master
            .open(sealed, aad(tenant, key_id).as_bytes())
            .map_err(backend)?;
        let text = String::from_utf8(bytes).map_err(backend)?;
        let key = MasterKey::from_base64(&text).map_err(backend)?;
        Ok(Arc::new(Sealer::new(key)))
    }

    fn remember(&self, tenant: &str, key_id: &str, sealer: &Arc<Sealer>) {
        let mut cache = self.cache.lock().expect("key cache");
        let now = Instant::now();
        cache
            .by_tenant
            .insert(tenant.to_owned(), (key_id.to_owned(), sealer.clone(), now));
        cache
            .by_id
            .insert(key_id.to_owned(), (tenant.to_owned(), sealer.clone(), now));
    }

    /// The key to seal a tenant's data with, created on first use. A tenant that is
    /// not in the catalog (never created, or erased) gets no key: sealing fails rather
    /// than store an erased tenant's data under a fresh, readable key.
    pub async fn for_sealing(&self, tenant: &str) -> Result<Arc<Sealer>, StoreError> {
        if let Some((_, sealer, at)) = self.cache.lock().expect("key cache").by_tenant.get(tenant)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(sealer.clone());
        }
        if let Some((key_id, sealed)) = self.stored_for_tenant(tenant).await? {
            let sealer = self.unseal(tenant, &key_id, &sealed)?;
            self.remember(tenant, &key_id, &sealer);
            return Ok(sealer);
        }
        let key = MasterKey::generate();
        let key_id = key.id().to_string();
        let sealed = self
            .master
            .seal(key.to_base64().as_bytes(), aad(tenant, &key_id).as_bytes());
        with_db!(&self.db, |pool| {
            sqlx::query(
                "INSERT INTO tenant_data_keys (tenant_id, key_id, key_sealed, created_at) \
                 SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM tenants WHERE tenant_id = $1) \
                 ON CONFLICT (tenant_id) DO NOTHING",
            )
            .bind(tenant)
            .bind(&key_id)
            .bind(&sealed)
            .bind(timestamp(Utc::now()))
            .execute(pool)
            .await
            .map_err(backend)?;
        });
        // Inserted, or another node created one first: either way, read what is stored.
        match self.stored_for_tenant_on_writer(tenant).await? {
            Some((key_id, sealed)) => {
                let sealer = self.unseal(tenant, &key_id, &sealed)?;
                self.remember(tenant, &key_id, &sealer);
                Ok(sealer)
            }
            None => Err(StoreError::Backend(format!(
                "tenant {tenant} does not exist (it may have been erased): its data cannot be stored"
            ))),
        }
    }

    /// The key with this id, or `None` if it was destroyed (or never existed).
    pub async fn for_opening(&self, key_id: &str) -> Result<Option<Arc<Sealer>>, StoreError> {
        {
            let cache = self.cache.lock().expect("key cache");
            if cache.destroyed.contains(key_id) {
                return Ok(None);
            }
            if let Some((_, sealer, at)) = cache.by_id.get(key_id)
                && at.elapsed() < CACHE_TTL
            {
                return Ok(Some(sealer.clone()));
            }
        }
        let row: Option<(String, String)> = with_db_read!(&self.db, |pool| {
            sqlx::query_as("SELECT tenant_id, key_sealed FROM tenant_data_keys WHERE key_id = $1")
                .bind(key_id)
                .fetch_optional(pool)
                .await
                .map_err(backend)?
        });
        match row {
            Some((tenant, sealed)) => {
                let sealer = self.unseal(&tenant, key_id, &sealed)?;
                self.remember(&tenant, key_id, &sealer);
                Ok(Some(sealer))
            }
            None => {
                let mut cache = self.cache.lock().expect("key cache");
                cache.destroyed.insert(key_id.to_owned());
                cache.by_id.remove(key_id);
                Ok(None)
            }
        }
    }

    /// Destroys the tenant's data keys; returns how many there were.
    pub async fn destroy(&self, tenant: &str) -> Result<u64, StoreError> {
        let ids: Vec<String> = with_db!(&self.db, |pool| {
            sqlx::query_scalar("DELETE FROM tenant_data_keys WHERE tenant_id = $1 RETURNING key_id")
                .bind(tenant)
                .fetch_all(pool)
                .await
                .map_err(backend)?
        });
        let mut cache = self.cache.lock().expect("key cache");
        cache.by_tenant.remove(tenant);
        cache.by_id.retain(|_, (t, _, _)| t != tenant);
        cache.destroyed.extend(ids.iter().cloned());
        Ok(ids.len() as u64)
    }

    async fn stored_for_tenant(
        &self,
        tenant: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        Ok(with_db_read!(&self.db, |pool| {
            sqlx::query_as("SELECT key_id, key_sealed FROM tenant_data_keys WHERE tenant_id = $1")
                .bind(tenant)
                .fetch_optional(pool)
                .await
                .map_err(backend)?
        }))
    }

    /// Like [`stored_for_tenant`](Self::stored_for_tenant) but on the writer, which
    /// sees its own insert at once.
    async fn stored_for_tenant_on_writer(
        &self,
        tenant: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        Ok(with_db!(&self.db, |pool| {
            sqlx::query_as("SELECT key_id, key_sealed FROM tenant_data_keys WHERE tenant_id = $1")
                .bind(tenant)
                .fetch_optional(pool)
                .await
                .map_err(backend)?
        }))
    }
}
