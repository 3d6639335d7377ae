//! The agent records the webhook path reads on every request, kept in memory for a
//! short time so that an accepted webhook costs no catalog query.
//!
//! Freshness: a change made through this process (the API) drops the agent's entry at
//! once ([`AgentCache::invalidate`]). A change made elsewhere (another node, the CLI) is
//! seen when the entry expires (`HOOKRUN_AGENT_CACHE_TTL_MS`, 1 s by default), or at
//! once when the cached record would refuse the request: the webhook handler then
//! re-reads the agent ([`AgentCache::reload`]) before answering. So a change that lets
//! more through (activation, a new secret, a wider schema) works at once everywhere; one
//! that lets less through (a pause, an expired previous secret) takes up to the TTL on
//! other processes. Unknown agent ids are never cached: an agent answers the moment it
//! is created. A TTL of 0 turns the cache off.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{AgentRecord, CatalogError, agents};
use crate::db::Db;
use crate::domain::AgentId;

/// Entries kept at most; past it, expired entries are dropped, then all of them.
const MAX_ENTRIES: usize = 100_000;

pub struct AgentCache {
    ttl: Duration,
    entries: Mutex<HashMap<AgentId, (Instant, Arc<AgentRecord>)>>,
    /// Bumped by every invalidation: a record read before one is not kept (it may
    /// predate the change that caused it).
    generation: AtomicU64,
}

/// An agent record and whether it came from memory (it may be up to a TTL old).
pub struct Cached {
    pub agent: Arc<AgentRecord>,
    pub from_memory: bool,
}

impl AgentCache {
    pub fn new(ttl: Duration) -> Self {
        AgentCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
        }
    }

    /// The agent, from memory while its entry is fresh, else from the database.
    pub async fn get(&self, db: &Db, id: &AgentId) -> Result<Option<Cached>, CatalogError> {
        let fresh = self
            .entries
            .lock()
            .expect("agent cache lock")
            .get(id)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, agent)| Arc::clone(agent));
        if let Some(agent) = fresh {
            return Ok(Some(Cached {
                agent,
                from_memory: true,
            }));
        }
        Ok(self.reload(db, id).await?.map(|agent| Cached {
            agent,
            from_memory: false,
        }))
    }

    /// The agent from the database, kept for the next requests.
    pub async fn reload(
        &self,
        db: &Db,
        id: &AgentId,
    ) -> Result<Option<Arc<AgentRecord>>, CatalogError> {
        let generation = self.generation.load(Ordering::Acquire);
        let loaded = agents::get(db, id).await?.map(Arc::new);
        let mut entries = self.entries.lock().expect("agent cache lock");
        let current = generation == self.generation.load(Ordering::Acquire);
        match &loaded {
            Some(agent) if current && !self.ttl.is_zero() => {
                if entries.len() >= MAX_ENTRIES {
                    entries.retain(|_, (at, _)| at.elapsed() < self.ttl);
                    if entries.len() >= MAX_ENTRIES {
                        entries.clear();
                    }
                }
                entries.insert(*id, (Instant::now(), Arc::clone(agent)));
            }
            _ => {
                entries.remove(id);
            }
        }
        Ok(loaded)
    }

    /// Forgets an agent (call after changing it).
    pub fn invalidate(&self, id: &AgentId) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries.lock().expect("agent cache lock").remove(id);
    }

    /// Forgets every agent (after a change to many, such as a tenant's erasure).
    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries.lock().expect("agent cache lock").clear();
    }
}
