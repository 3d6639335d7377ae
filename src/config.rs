//! Settings, read from the environment (`HOOKRUN_*`). Every key is documented where it
//! is read; `README.md` has the same table.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

/// Where state is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseBackend {
    /// The embedded default: `hookrun.db` in the data dir, or a `sqlite:` URL.
    Sqlite { url: String },
    /// `postgres://…`
    Postgres { url: String },
}

impl DatabaseBackend {
    pub fn from_url(url: &str) -> anyhow::Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(DatabaseBackend::Postgres {
                url: url.to_owned(),
            })
        } else if url.starts_with("sqlite:") {
            Ok(DatabaseBackend::Sqlite {
                url: url.to_owned(),
            })
        } else {
            anyhow::bail!("unsupported database URL {url:?}: expected sqlite:… or postgres://…")
        }
    }

    pub fn url(&self) -> &str {
        match self {
            DatabaseBackend::Sqlite { url } | DatabaseBackend::Postgres { url } => url,
        }
    }
}

/// The HTTP version spoken to the LLM gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlmHttp {
    /// HTTP/1.1: one connection per call in flight. Every gateway speaks it.
    Http1,
    /// HTTP/2 only (prior knowledge, also without TLS): every call is a stream on one of
    /// `connections` connections (taken in turn), so a call in flight costs a few KiB
    /// instead of a socket and its buffers. A gateway limits the streams of one
    /// connection (LiteLLM under Granian: 200); beyond connections × that limit, calls
    /// wait for a free stream.
    Http2 { connections: NonZeroUsize },
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// `HOOKRUN_LISTEN`: address to listen on (default `127.0.0.1:8080`; port 0 picks one).
    pub listen: String,
    /// `HOOKRUN_DATA_DIR`: embedded database and generated master key (default `./data`).
    pub data_dir: PathBuf,
    /// `HOOKRUN_DATABASE_URL`: read models and catalog (default SQLite in the data dir).
    pub database: DatabaseBackend,
    /// `HOOKRUN_EVENT_STORE_URL`: the event store (default: the same as the database).
    pub event_store: DatabaseBackend,
    /// `HOOKRUN_LLM_BASE_URL`: OpenAI-compatible gateway (default `http://127.0.0.1:4000`).
    pub llm_base_url: String,
    /// `HOOKRUN_LLM_API_KEY`: the platform key, used when a tenant has no key of its own.
    pub llm_api_key: Option<String>,
    /// `HOOKRUN_LLM_HTTP`: how to talk to the gateway, `1.1` (default) or `2`; with `2`,
    /// `HOOKRUN_LLM_HTTP2_CONNECTIONS` connections (default 1) carry the calls.
    pub llm_http: LlmHttp,
    /// `HOOKRUN_MASTER_KEY`: base64 of 32 bytes, seals secrets at rest. Unset on the
    /// embedded default: generated into `<data dir>/master.key` (0600) on first start.
    pub master_key: Option<String>,
    /// `HOOKRUN_ADMIN_TOKEN`: bearer token of the admin API (unset: admin API disabled).
    pub admin_token: Option<String>,
    /// `HOOKRUN_PUBLIC_URL`: base of the webhook URLs shown to users (default `http://{listen}`).
    pub public_url: Option<String>,
    /// `HOOKRUN_MAX_BODY_BYTES`: largest webhook body accepted (default 1 MiB).
    pub max_body_bytes: usize,
    /// `HOOKRUN_AGENT_CONCURRENCY`: executions of one agent running at once (default 4).
    pub agent_concurrency: usize,
    /// `HOOKRUN_AGENT_QUEUE`: accepted-but-unfinished executions per agent before 429
    /// (default 1000); also the agent actor's mailbox capacity.
    pub agent_queue: usize,
    /// `HOOKRUN_LLM_TIMEOUT_S`: LLM request timeout (default 120 s).
    pub llm_timeout: Duration,
    /// `HOOKRUN_NODE_ID`: this node's name in `ExecutionStarted` (default host name + pid).
    pub node_id: String,
    /// `HOOKRUN_MAX_IN_FLIGHT`: unfinished executions on this node before new webhooks
    /// get 503 (default 20000).
    pub max_in_flight: usize,
    /// `HOOKRUN_EXECUTION_DEADLINE_S`: longest time from 202 to a terminal event
    /// (default 900 s); past it the execution fails with `deadline_exceeded`.
    pub execution_deadline: Duration,
    /// `HOOKRUN_AGENT_CACHE_TTL_MS`: how long the webhook path keeps an agent record in
    /// memory (default 1000 ms; 0: read it on every request). See `catalog::cache`.
    pub agent_cache_ttl: Duration,
    /// `HOOKRUN_AGENT_IDLE_MS`: an agent actor with nothing queued or running for this
    /// long is let go, its memory freed (default 300000 ms).
    pub agent_idle_after: Duration,
    /// `HOOKRUN_SCHEMA_CACHE_SIZE`: agents whose compiled payload schemas are kept in
    /// memory (default 10000; the least recently used go first).
    pub schema_cache_size: usize,
    /// `HOOKRUN_SWEEP_INTERVAL_MS`: how often a node heartbeats and looks for orphaned
    /// executions (default 5000 ms).
    pub sweep_interval: Duration,
    /// `HOOKRUN_NODE_TIMEOUT_S`: a node silent this long is taken for dead and its
    /// executions are resumed elsewhere (default 15 s).
    pub node_timeout: Duration,
    /// `HOOKRUN_SHUTDOWN_GRACE_S`: on SIGTERM, how long running executions may take to
    /// finish before the process exits anyway (default 30 s).
    pub shutdown_grace: Duration,
    /// `HOOKRUN_MASTER_KEY_OLD`: comma-separated base64 master keys that only open
    /// sealed values, never seal new ones: kept configured during a master key rotation
    /// until `hookrun keys rotate` has resealed everything under `HOOKRUN_MASTER_KEY`.
    pub master_key_old: Vec<String>,
    /// `HOOKRUN_RATE_AGENT_PER_S` and `HOOKRUN_RATE_AGENT_BURST`: webhooks one agent
    /// takes per second (token bucket, per process). Unset or 0: no limit (the default).
    pub rate_agent: Option<RateLimit>,
    /// `HOOKRUN_RATE_TENANT_PER_S` and `HOOKRUN_RATE_TENANT_BURST`: the same, across all
    /// agents of one tenant. Unset or 0: no limit (the default).
    pub rate_tenant: Option<RateLimit>,
    /// Bounds of the delivery audit log (`HOOKRUN_AUDIT_*`, see [`AuditSettings`]).
    pub audit: AuditSettings,
}

impl Settings {
    pub fn from_env() -> anyhow::Result<Settings> {
        Self::from_lookup(|key| std::env::var(key).ok().filter(|v| !v.is_empty()))
    }

    /// Reads settings through `get` (the environment in production, a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Settings> {
        let data_dir = PathBuf::from(get("HOOKRUN_DATA_DIR").unwrap_or_else(|| "./data".into()));
        let database = match get("HOOKRUN_DATABASE_URL") {
            Some(url) => DatabaseBackend::from_url(&url).context("HOOKRUN_DATABASE_URL")?,
            None => DatabaseBackend::Sqlite {
                url: format!("sqlite://{}", data_dir.join("hookrun.db").display()),
            },
        };
        let event_store = match get("HOOKRUN_EVENT_STORE_URL") {
            Some(url) => DatabaseBackend::from_url(&url).context("HOOKRUN_EVENT_STORE_URL")?,
            None => database.clone(),
        };
        Ok(Settings {
            listen: get("HOOKRUN_LISTEN").unwrap_or_else(|| "127.0.0.1:8080".into()),
            data_dir,
            database,
            event_store,
            llm_base_url: get("HOOKRUN_LLM_BASE_URL")
                .unwrap_or_else(|| "http://127.0.0.1:4000".into())
                .trim_end_matches('/')
                .to_owned(),
            llm_api_key: get("HOOKRUN_LLM_API_KEY"),
            llm_http: match get("HOOKRUN_LLM_HTTP").as_deref().map(str::trim) {
                None | Some("1.1") => LlmHttp::Http1,
                Some("2") => LlmHttp::Http2 {
                    connections: NonZeroUsize::new(number(
                        &get,
                        "HOOKRUN_LLM_HTTP2_CONNECTIONS",
                        1,
                    )?)
                    .unwrap_or(NonZeroUsize::MIN),
                },
                Some(other) => anyhow::bail!("HOOKRUN_LLM_HTTP must be 1.1 or 2, not {other:?}"),
            },
            master_key: get("HOOKRUN_MASTER_KEY"),
            admin_token: get("HOOKRUN_ADMIN_TOKEN"),
            public_url: get("HOOKRUN_PUBLIC_URL").map(|u| u.trim_end_matches('/').to_owned()),
            max_body_bytes: number(&get, "HOOKRUN_MAX_BODY_BYTES", 1024 * 1024)?,
            agent_concurrency: number(&get, "HOOKRUN_AGENT_CONCURRENCY", 4)?.max(1),
            agent_queue: number(&get, "HOOKRUN_AGENT_QUEUE", 1000)?.max(1),
            llm_timeout: Duration::from_secs(number(&get, "HOOKRUN_LLM_TIMEOUT_S", 120)? as u64),
            node_id: get("HOOKRUN_NODE_ID").unwrap_or_else(default_node_id),
            max_in_flight: number(&get, "HOOKRUN_MAX_IN_FLIGHT", 20_000)?.max(1),
            execution_deadline: secs(number(&get, "HOOKRUN_EXECUTION_DEADLINE_S", 900)?),
            agent_cache_ttl: Duration::from_millis(number(
                &get,
                "HOOKRUN_AGENT_CACHE_TTL_MS",
                1_000,
            )? as u64),
            agent_idle_after: Duration::from_millis(
                number(&get, "HOOKRUN_AGENT_IDLE_MS", 300_000)?.max(1) as u64,
            ),
            schema_cache_size: number(
                &get,
                "HOOKRUN_SCHEMA_CACHE_SIZE",
                crate::webhook::SCHEMA_CACHE_DEFAULT,
            )?
            .max(1),
            sweep_interval: Duration::from_millis(
                number(&get, "HOOKRUN_SWEEP_INTERVAL_MS", 5_000)?.max(10) as u64,
            ),
            node_timeout: secs(number(&get, "HOOKRUN_NODE_TIMEOUT_S", 15)?.max(1)),
            shutdown_grace: secs(number(&get, "HOOKRUN_SHUTDOWN_GRACE_S", 30)?),
            master_key_old: get("HOOKRUN_MASTER_KEY_OLD")
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|k| !k.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            rate_agent: RateLimit::from_env(&get, "HOOKRUN_RATE_AGENT")?,
            rate_tenant: RateLimit::from_env(&get, "HOOKRUN_RATE_TENANT")?,
            audit: AuditSettings {
                keep_per_agent: number(&get, "HOOKRUN_AUDIT_KEEP_PER_AGENT", 1000)?.max(1),
                keep_unknown: number(&get, "HOOKRUN_AUDIT_KEEP_UNKNOWN", 1000)?.max(1),
                detail_per_min: number(&get, "HOOKRUN_AUDIT_DETAIL_PER_MIN", 600)?.max(1),
                detail_burst: number(&get, "HOOKRUN_AUDIT_DETAIL_BURST", 100)?.max(1),
            },
        })
    }
}

fn number(
    get: &impl Fn(&str) -> Option<String>,
    key: &str,
    default: usize,
) -> anyhow::Result<usize> {
    match get(key) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .with_context(|| format!("{key} must be a whole number, got {v:?}")),
    }
}

/// A token bucket: `per_second` tokens refill continuously, at most `burst` are saved up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

impl RateLimit {
    /// `{prefix}_PER_S` (a decimal number; unset or 0: no limit) and `{prefix}_BURST`
    /// (default: `per_second` rounded up, at least 1).
    fn from_env(
        get: &impl Fn(&str) -> Option<String>,
        prefix: &str,
    ) -> anyhow::Result<Option<Self>> {
        let key = format!("{prefix}_PER_S");
        let Some(raw) = get(&key) else {
            return Ok(None);
        };
        let per_second: f64 = raw
            .trim()
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v >= 0.0)
            .with_context(|| {
                format!("{key} must be a number of requests per second, got {raw:?}")
            })?;
        if per_second == 0.0 {
            return Ok(None);
        }
        let default_burst = per_second.ceil().clamp(1.0, f64::from(u32::MAX)) as usize;
        let burst = number(get, &format!("{prefix}_BURST"), default_burst)?.max(1);
        Ok(Some(RateLimit {
            per_second,
            burst: u32::try_from(burst).unwrap_or(u32::MAX),
        }))
    }
}

/// How much the delivery audit log keeps (see `crate::audit` and docs/security.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditSettings {
    /// `HOOKRUN_AUDIT_KEEP_PER_AGENT`: per agent, the newest rejected rows and the newest
    /// duplicate rows kept (each; default 1000). Accepted rows are kept: there is one per
    /// execution, like the execution's own events.
    pub keep_per_agent: usize,
    /// `HOOKRUN_AUDIT_KEEP_UNKNOWN`: rows kept, in total, for requests naming no existing
    /// agent (default 1000).
    pub keep_unknown: usize,
    /// `HOOKRUN_AUDIT_DETAIL_PER_MIN` and `HOOKRUN_AUDIT_DETAIL_BURST`: rejected or
    /// duplicate requests recorded one row each, per agent (and for unknown agents
    /// together), per minute (default 600, burst 100). Beyond that they are counted
    /// into one aggregate row (`count` > 1) per agent, written every few seconds.
    pub detail_per_min: usize,
    pub detail_burst: usize,
}

fn secs(n: usize) -> Duration {
    Duration::from_secs(n as u64)
}

fn default_node_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "node".into());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_to_sqlite_in_the_data_dir_for_both_stores() {
        let s = settings(&[("HOOKRUN_DATA_DIR", "/tmp/x")]).unwrap();
        assert_eq!(
            s.database,
            DatabaseBackend::Sqlite {
                url: "sqlite:///tmp/x/hookrun.db".into()
            }
        );
        assert_eq!(s.event_store, s.database);
        assert_eq!(s.listen, "127.0.0.1:8080");
        assert_eq!(s.agent_concurrency, 4);
        assert_eq!(s.max_body_bytes, 1024 * 1024);
    }

    #[test]
    fn rate_limits_are_off_unless_set_and_old_keys_are_a_list() {
        let s = settings(&[]).unwrap();
        assert_eq!((s.rate_agent, s.rate_tenant), (None, None));
        assert!(s.master_key_old.is_empty());
        let s = settings(&[
            ("HOOKRUN_RATE_AGENT_PER_S", "2.5"),
            ("HOOKRUN_RATE_TENANT_PER_S", "10"),
            ("HOOKRUN_RATE_TENANT_BURST", "50"),
            ("HOOKRUN_MASTER_KEY_OLD", " a, b ,,"),
        ])
        .unwrap();
        assert_eq!(
            s.rate_agent,
            Some(RateLimit {
                per_second: 2.5,
                burst: 3
            })
        );
        assert_eq!(
            s.rate_tenant,
            Some(RateLimit {
                per_second: 10.0,
                burst: 50
            })
        );
        assert_eq!(s.master_key_old, ["a", "b"]);
        assert_eq!(
            settings(&[("HOOKRUN_RATE_AGENT_PER_S", "0")])
                .unwrap()
                .rate_agent,
            None
        );
        let err = settings(&[("HOOKRUN_RATE_AGENT_PER_S", "-1")]).unwrap_err();
        assert!(
            format!("{err:#}").contains("HOOKRUN_RATE_AGENT_PER_S"),
            "{err:#}"
        );
    }

    #[test]
    fn rejects_unknown_schemes_and_bad_numbers() {
        assert!(settings(&[("HOOKRUN_DATABASE_URL", "mysql://x")]).is_err());
        let err = settings(&[("HOOKRUN_AGENT_CONCURRENCY", "four")]).unwrap_err();
        assert!(format!("{err:#}").contains("HOOKRUN_AGENT_CONCURRENCY"));
    }

    #[test]
    fn the_gateway_is_called_over_http_1_1_unless_http_2_is_asked_for() {
        assert_eq!(settings(&[]).unwrap().llm_http, LlmHttp::Http1);
        let h2 = settings(&[("HOOKRUN_LLM_HTTP", "2")]).unwrap();
        assert_eq!(
            h2.llm_http,
            LlmHttp::Http2 {
                connections: NonZeroUsize::MIN
            }
        );
        let h2 = settings(&[
            ("HOOKRUN_LLM_HTTP", "2"),
            ("HOOKRUN_LLM_HTTP2_CONNECTIONS", "8"),
        ])
        .unwrap();
        assert_eq!(
            h2.llm_http,
            LlmHttp::Http2 {
                connections: NonZeroUsize::new(8).unwrap()
            }
        );
        let zero = settings(&[
            ("HOOKRUN_LLM_HTTP", "2"),
            ("HOOKRUN_LLM_HTTP2_CONNECTIONS", "0"),
        ])
        .unwrap();
        assert_eq!(
            zero.llm_http,
            LlmHttp::Http2 {
                connections: NonZeroUsize::MIN
            }
        );
        let err = settings(&[
            ("HOOKRUN_LLM_HTTP", "2"),
            ("HOOKRUN_LLM_HTTP2_CONNECTIONS", "many"),
        ])
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("HOOKRUN_LLM_HTTP2_CONNECTIONS"),
            "{err:#}"
        );
        let err = settings(&[("HOOKRUN_LLM_HTTP", "3")]).unwrap_err();
        assert!(format!("{err:#}").contains("HOOKRUN_LLM_HTTP"), "{err:#}");
    }
}
