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
//!
//! Agents that receive webhooks stay in memory: [`AgentCache::run_refresh`] reads every
//! record used since its last round again, all in one query, every half TTL, so their
//! entries never expire on a webhook's path. Without it, webhooks spread over many
//! agents each paid a catalog query once per TTL and agent (1,000 agents: 1,000
//! queries a second). The bound above is unchanged: no record served is older than
//! the TTL.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{AgentRecord, CatalogError, agents};
use crate::db::Db;
use crate::domain::AgentId;

/// Entries kept at most; past it, expired entries are dropped, then all of them.
const MAX_ENTRIES: usize = 100_000;

pub struct AgentCache {
    ttl: Duration,
    entries: Mutex<HashMap<AgentId, Entry>>,
    /// Bumped by every invalidation: a record read before one is not kept (it may
    /// predate the change that caused it).
    generation: AtomicU64,
    /// Records read one at a time, on a request's path (a miss or a re-read).
    misses: AtomicU64,
}

struct Entry {
    /// When the read that gave `agent` started.
    read_at: Instant,
    /// Served since the last refresh round.
    used: bool,
    agent: Arc<AgentRecord>,
}

/// Agents read again per query in a refresh round.
const REFRESH_CHUNK: usize = 500;

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
            misses: AtomicU64::new(0),
        }
    }

    /// Records read one at a time on a request's path so far.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// The agent, from memory while its entry is fresh, else from the database.
    pub async fn get(&self, db: &Db, id: &AgentId) -> Result<Option<Cached>, CatalogError> {
        let fresh = self
            .entries
            .lock()
            .expect("agent cache lock")
            .get_mut(id)
            .filter(|entry| entry.read_at.elapsed() < self.ttl)
            .map(|entry| {
                entry.used = true;
                Arc::clone(&entry.agent)
            });
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
        self.misses.fetch_add(1, Ordering::Relaxed);
        let generation = self.generation.load(Ordering::Acquire);
        let read_at = Instant::now();
        let loaded = agents::get(db, id).await?.map(Arc::new);
        let mut entries = self.entries.lock().expect("agent cache lock");
        let current = generation == self.generation.load(Ordering::Acquire);
        match &loaded {
            Some(agent) if current && !self.ttl.is_zero() => {
                if entries.len() >= MAX_ENTRIES {
                    entries.retain(|_, entry| entry.read_at.elapsed() < self.ttl);
                    if entries.len() >= MAX_ENTRIES {
                        entries.clear();
                    }
                }
                let entry = Entry {
                    read_at,
                    used: true,
                    agent: Arc::clone(agent),
                };
                entries.insert(*id, entry);
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

    /// Reads every record served since the last round again (in queries of
    /// [`REFRESH_CHUNK`]), so that agents in use do not expire on a webhook's path.
    /// Agents no longer stored are forgotten; the others' entries start over, unless a
    /// request read theirs again meanwhile. Records read while an invalidation happened
    /// are dropped, as in [`AgentCache::reload`].
    pub async fn refresh(&self, db: &Db) -> Result<(), CatalogError> {
        let used: Vec<AgentId> = {
            let mut entries = self.entries.lock().expect("agent cache lock");
            entries
                .iter_mut()
                .filter_map(|(id, entry)| std::mem::take(&mut entry.used).then_some(*id))
                .collect()
        };
        for ids in used.chunks(REFRESH_CHUNK) {
            let generation = self.generation.load(Ordering::Acquire);
            let read_at = Instant::now();
            let mut loaded: HashMap<AgentId, AgentRecord> = agents::get_many(db, ids)
                .await?
                .into_iter()
                .map(|agent| (agent.agent_id, agent))
                .collect();
            let mut entries = self.entries.lock().expect("agent cache lock");
            if generation != self.generation.load(Ordering::Acquire) {
                continue;
            }
            for id in ids {
                match loaded.remove(id) {
                    // A record read on a request's path since the round began is newer.
                    Some(agent) => {
                        if let Some(entry) = entries.get_mut(id)
                            && entry.read_at <= read_at
                        {
                            entry.read_at = read_at;
                            entry.agent = Arc::new(agent);
                        }
                    }
                    None => {
                        entries.remove(id);
                    }
                }
            }
        }
        Ok(())
    }

    /// Runs [`AgentCache::refresh`] every half TTL until `shutdown` changes (not at all
    /// when the cache is off).
    pub async fn run_refresh(self: Arc<Self>, db: Db, mut shutdown: watch::Receiver<bool>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut every = tokio::time::interval(self.ttl / 2);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = shutdown.changed() => return,
            }
            if let Err(e) = self.refresh(&db).await {
                tracing::warn!("agent records not refreshed (they are read again on use): {e}");
            }
        }
    }
}
