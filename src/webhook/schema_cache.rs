//! [`SchemaCache`]: compiled payload schemas per agent, bounded.
//!
//! Only the latest config version of an agent is kept, so the cache holds at most one
//! schema per agent, and at most `capacity` agents: past it, the least recently used
//! tenth is dropped (recompiled on its agent's next webhook). Memory thus stays flat
//! however many agents ever received a webhook.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use serde_json::Value;

use super::schema::{PayloadSchema, SchemaError};

/// Agents whose schemas are kept by default (`HOOKRUN_SCHEMA_CACHE_SIZE`).
pub const DEFAULT_CAPACITY: usize = 10_000;

#[derive(Debug)]
struct Entry {
    version: i64,
    schema: Arc<PayloadSchema>,
    /// The cache's clock at the last use (for eviction).
    used: AtomicU64,
}

#[derive(Debug)]
pub struct SchemaCache {
    by_agent: RwLock<HashMap<String, Entry>>,
    capacity: usize,
    clock: AtomicU64,
}

impl Default for SchemaCache {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl SchemaCache {
    pub fn new(capacity: usize) -> Self {
        SchemaCache {
            by_agent: RwLock::new(HashMap::new()),
            capacity: capacity.max(1),
            clock: AtomicU64::new(0),
        }
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    /// The compiled schema of `agent_id` at `config_version`, compiling `schema` on
    /// a miss. Compilation happens outside the lock; if two requests race, both
    /// compile and the first insert wins (harmless: same input, same result).
    pub fn get_or_compile(
        &self,
        agent_id: &str,
        config_version: i64,
        schema: &Value,
    ) -> Result<Arc<PayloadSchema>, SchemaError> {
        // A poisoned lock only means a panic elsewhere mid-insert; the map is still usable.
        let cached = self
            .by_agent
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(agent_id)
            .filter(|e| e.version == config_version)
            .map(|e| {
                e.used.store(self.tick(), Ordering::Relaxed);
                e.schema.clone()
            });
        if let Some(compiled) = cached {
            return Ok(compiled);
        }
        let compiled = Arc::new(PayloadSchema::compile(schema)?);
        let mut map = self
            .by_agent
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let current = map.get(agent_id).map(|e| (e.version, e.schema.clone()));
        match current {
            // Another request compiled the same version meanwhile: share its copy.
            Some((version, existing)) if version == config_version => return Ok(existing),
            // Never replace a newer version with an older one (a slow, stale request).
            Some((version, _)) if version > config_version => {}
            current => {
                if current.is_none() && map.len() >= self.capacity {
                    evict_least_recent(&mut map, self.capacity / 10 + 1);
                }
                let entry = Entry {
                    version: config_version,
                    schema: compiled.clone(),
                    used: AtomicU64::new(self.tick()),
                };
                map.insert(agent_id.to_owned(), entry);
            }
        }
        Ok(compiled)
    }

    /// Drops an agent's schema (e.g. when the agent is deleted).
    pub fn invalidate(&self, agent_id: &str) {
        self.by_agent
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(agent_id);
    }

    pub fn len(&self) -> usize {
        self.by_agent
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Drops the `n` entries used longest ago.
fn evict_least_recent(map: &mut HashMap<String, Entry>, n: usize) {
    let mut by_use: Vec<(u64, String)> = map
        .iter()
        .map(|(id, e)| (e.used.load(Ordering::Relaxed), id.clone()))
        .collect();
    by_use.sort_unstable();
    for (_, id) in by_use.into_iter().take(n) {
        map.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ticket_schema() -> Value {
        json!({"type": "object", "required": ["ticket_id"]})
    }

    #[test]
    fn cache_reuses_per_version_and_replaces_on_update() {
        let cache = SchemaCache::new(100);
        let v1 = cache
            .get_or_compile("agent-1", 1, &ticket_schema())
            .unwrap();
        let again = cache
            .get_or_compile("agent-1", 1, &json!({"type": "null"}))
            .unwrap();
        assert!(Arc::ptr_eq(&v1, &again), "same version must not recompile");
        let v2 = cache
            .get_or_compile("agent-1", 2, &json!({"type": "null"}))
            .unwrap();
        assert!(v2.validate(&json!(null)).is_ok());
        // A late request for the older version compiles it but does not evict v2.
        cache
            .get_or_compile("agent-1", 1, &ticket_schema())
            .unwrap();
        let current = cache
            .get_or_compile("agent-1", 2, &ticket_schema())
            .unwrap();
        assert!(Arc::ptr_eq(&v2, &current));
        assert_eq!(cache.len(), 1);
        assert!(
            cache
                .get_or_compile("agent-2", 1, &json!({"type": 5}))
                .is_err()
        );
        assert_eq!(cache.len(), 1);
        cache.invalidate("agent-1");
        assert!(cache.is_empty());
    }

    #[test]
    fn past_its_capacity_the_least_recently_used_schemas_go() {
        let cache = SchemaCache::new(20);
        let schema = ticket_schema();
        for i in 0..20 {
            cache.get_or_compile(&format!("a{i}"), 1, &schema).unwrap();
        }
        // a0 is used again: a1 and a2 are now the least recently used.
        let a0 = cache.get_or_compile("a0", 1, &schema).unwrap();
        cache.get_or_compile("new", 1, &schema).unwrap();
        // A tenth (+1) went: 20 - 3 + 1.
        assert_eq!(cache.len(), 18);
        assert!(Arc::ptr_eq(
            &a0,
            &cache.get_or_compile("a0", 1, &schema).unwrap()
        ));
        let map = cache.by_agent.read().unwrap();
        assert!(!map.contains_key("a1") && !map.contains_key("a2") && !map.contains_key("a3"));
        assert!(map.contains_key("a4") && map.contains_key("new"));
    }

    #[test]
    fn the_cache_can_be_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SchemaCache>();
    }
}
