//! Wiring: settings → database, event store, sealer, actors, projector and HTTP server.
//! `Application::build` binds the listener first, so tests can ask for port 0 and
//! learn the real port.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::{App, HttpServer, web};
use anyhow::Context;
use tokio::sync::watch;

use crate::actors::{ExecutionDeps, Registry, run::Limits};
use crate::catalog::cache::AgentCache;
use crate::config::{DatabaseBackend, Settings};
use crate::crypto::{MasterKey, Sealer};
use crate::db::Db;
use crate::events::EventStore;
use crate::events::sealed_store::SealedStore;
use crate::events::store::{postgres::PostgresEventStore, sqlite::SqliteEventStore};
use crate::events::tenant_keys::TenantKeys;
use crate::http::rate_limit::RateLimits;
use crate::http::{AppState, Metrics};
use crate::llm::LlmClient;
use crate::projections::ProjectionRunner;
use crate::recovery::Sweeper;
use crate::webhook::SchemaCache;

/// The stores every command needs: the SQL database, the event store, the sealer.
pub struct Stores {
    pub db: Db,
    /// The event store's database, when `HOOKRUN_EVENT_STORE_URL` names one other than
    /// `db` (otherwise the events live in `db`).
    pub separate_event_db: Option<Db>,
    /// The backend wrapped in [`SealedStore`]: tenant data sealed on append, opened
    /// (and old schema versions upcast) on read.
    pub store: Arc<dyn EventStore>,
    pub sealer: Arc<Sealer>,
    /// Per-tenant data keys (shared with `store`: erasure must clear its cache).
    pub keys: Arc<TenantKeys>,
}

impl Stores {
    pub async fn open(settings: &Settings) -> anyhow::Result<Stores> {
        let db = open_db(settings, &settings.database).await?;
        let separate_event_db = if settings.event_store == settings.database {
            None
        } else {
            Some(open_db(settings, &settings.event_store).await?)
        };
        let store: Arc<dyn EventStore> = match separate_event_db.as_ref().unwrap_or(&db) {
            Db::Sqlite(sqlite) => Arc::new(SqliteEventStore::new(sqlite.clone())),
            Db::Postgres(pg) => Arc::new(PostgresEventStore::connect(pg.clone()).await?),
        };
        let sealer = Arc::new(load_sealer(settings)?);
        let keys = Arc::new(TenantKeys::new(db.clone(), sealer.clone()));
        let store: Arc<dyn EventStore> = Arc::new(SealedStore::new(store, keys.clone()));
        Ok(Stores {
            db,
            separate_event_db,
            store,
            sealer,
            keys,
        })
    }

    /// The database the events are stored in: the separate one, or `db`.
    pub fn events_db(&self) -> &Db {
        self.separate_event_db.as_ref().unwrap_or(&self.db)
    }
}

async fn open_db(settings: &Settings, backend: &DatabaseBackend) -> anyhow::Result<Db> {
    if matches!(backend, DatabaseBackend::Sqlite { .. }) {
        std::fs::create_dir_all(&settings.data_dir).with_context(|| {
            format!(
                "Failed to create the data dir {}",
                settings.data_dir.display()
            )
        })?;
    }
    Db::connect(backend.url()).await
}

/// The master key from `HOOKRUN_MASTER_KEY`, or on the embedded default a key file in
/// the data dir (created on first start, mode 0600).
fn load_sealer(settings: &Settings) -> anyhow::Result<Sealer> {
    let key = match &settings.master_key {
        Some(encoded) => MasterKey::from_base64(encoded).context("HOOKRUN_MASTER_KEY")?,
        None => {
            if matches!(settings.database, DatabaseBackend::Postgres { .. }) {
                anyhow::bail!(
                    "HOOKRUN_MASTER_KEY is required with PostgreSQL (every node must seal with the same key)"
                );
            }
            std::fs::create_dir_all(&settings.data_dir)?;
            let path = settings.data_dir.join("master.key");
            let (key, created) = crate::crypto::load_or_create_master_key_file(&path)
                .with_context(|| {
                    format!("Failed to load the master key file {}", path.display())
                })?;
            if created {
                tracing::warn!(
                    "HOOKRUN_MASTER_KEY is not set: generated a new master key at {} (mode 0600); \
                     back it up, sealed secrets cannot be read without it",
                    path.display()
                );
            }
            key
        }
    };
    let old = crate::crypto::parse_old_keys(&settings.master_key_old)?;
    Ok(Sealer::with_old_keys(key, old))
}

pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    projector: ProjectionRunner,
    sweeper: Sweeper,
    background: Vec<tokio::task::JoinHandle<()>>,
    shutdown: watch::Sender<bool>,
    state: web::Data<AppState>,
}

impl Application {
    /// Must be called inside an actix system (`#[actix_web::main]`, `#[actix_web::test]`).
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let Stores {
            db,
            separate_event_db,
            store,
            sealer,
            keys,
        } = Stores::open(&settings).await?;
        let listener = TcpListener::bind(&settings.listen)
            .with_context(|| format!("Failed to listen on {}", settings.listen))?;
        let address = listener.local_addr()?;
        let deps = Arc::new(ExecutionDeps {
            store: store.clone(),
            llm: LlmClient::new(&settings.llm_base_url, settings.llm_http)?,
            sealer: sealer.clone(),
            platform_key: settings.llm_api_key.clone(),
            node_id: settings.node_id.clone(),
            limits: Limits {
                concurrency: settings.agent_concurrency,
                queue: settings.agent_queue,
                in_flight: settings.max_in_flight,
                idle_after: settings.agent_idle_after,
            },
            llm_timeout: settings.llm_timeout,
            deadline: settings.execution_deadline,
            owned: Default::default(),
            idle: Default::default(),
        });
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let registry = Arc::new(Registry::new(deps, threads));
        let public_url = settings
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{address}"));
        let state = web::Data::new(AppState {
            db: db.clone(),
            store: store.clone(),
            registry,
            sealer,
            keys,
            schemas: SchemaCache::new(settings.schema_cache_size),
            agents: Arc::new(AgentCache::new(settings.agent_cache_ttl)),
            audit: crate::deliveries::AuditLog::start(db.clone(), settings.audit),
            rate_limits: RateLimits::new(settings.rate_agent, settings.rate_tenant),
            settings: Arc::new(settings),
            metrics: Metrics::default(),
            public_url,
        });
        let app_state = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .configure(crate::http::routes)
        })
        .listen(listener)?
        // Signals are handled in `run_until_stopped`: actix's own handling stops the
        // whole actor system, which would drop running executions on SIGTERM.
        .disable_signals()
        .shutdown_timeout(state.settings.shutdown_grace.as_secs())
        .run();
        let projector = ProjectionRunner::new(store.clone(), db.clone());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let sweeper = Sweeper {
            db,
            store,
            registry: state.registry.clone(),
            node_id: state.settings.node_id.clone(),
            interval: state.settings.sweep_interval,
            node_timeout: state.settings.node_timeout,
        };
        let mut background = vec![
            tokio::spawn(projector.clone().run(shutdown_rx.clone())),
            tokio::spawn(sweeper.clone().run(shutdown_rx.clone())),
            tokio::spawn(
                state
                    .agents
                    .clone()
                    .run_refresh(state.db.clone(), shutdown_rx.clone()),
            ),
        ];
        // Each SQLite file gets its WAL copied back beside its writer.
        for db in std::iter::once(&state.db).chain(separate_event_db.as_ref()) {
            if let Db::Sqlite(db) = db {
                background.push(tokio::spawn(
                    db.clone().run_checkpoints(shutdown_rx.clone()),
                ));
            }
        }
        tracing::info!(%address, backend = state.db.backend_name(), "hookrun listening");
        Ok(Application {
            port: address.port(),
            server,
            projector,
            sweeper,
            background,
            shutdown,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The projection runner (tests drive it or wait for it).
    pub fn projector(&self) -> ProjectionRunner {
        self.projector.clone()
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// The recovery sweeper (tests drive it).
    pub fn sweeper(&self) -> Sweeper {
        self.sweeper.clone()
    }

    /// A handle that stops the HTTP server.
    pub fn server_handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until the server stops (SIGINT/SIGTERM or a handle). Then: running
    /// executions get the grace period to finish, the projection catches up one last
    /// time, and the node leaves the node table so that whatever is still unfinished
    /// is resumed by another node (or by the next start) without waiting for a timeout.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let signals = tokio::spawn(async move {
            let reason = shutdown_signal().await;
            tracing::info!("{reason} received: stopping (new requests are refused)");
            handle.stop(true).await;
        });
        self.server.await?;
        signals.abort();
        let deps = self.state.registry.deps().clone();
        let _ = tokio::time::timeout(self.state.settings.shutdown_grace, deps.wait_idle()).await;
        let unfinished = deps.owned_count();
        if unfinished > 0 {
            tracing::warn!(
                unfinished,
                "grace period over: leaving unfinished executions to be resumed"
            );
        }
        let _ = self.shutdown.send(true);
        for task in self.background {
            let _ = task.await;
        }
        // The last requests' audit records are queued in memory: write them first.
        let flush = self.state.audit.flush();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), flush).await;
        self.state.db.close().await;
        tracing::info!("hookrun stopped");
        Ok(())
    }
}

/// Waits for SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}
