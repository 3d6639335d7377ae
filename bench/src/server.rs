//! The processes a scenario needs: `hookrun serve` on a fresh database (a temp data
//! dir for SQLite, a new database for PostgreSQL) and the benchmark gateway.
//!
//! Both are child processes, stopped (and their data removed) by [`Server::stop`] and
//! [`Gateway::stop`]; dropping them kills the process as a last resort.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use hyper::{Method, StatusCode};
use sqlx::Connection;
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

use crate::http;

/// The master key every benchmark server seals with (the seeder seals with it too).
pub const MASTER_KEY: [u8; 32] = [7; 32];
pub const ADMIN_TOKEN: &str = "bench-admin-token";

static INSTANCE: AtomicU32 = AtomicU32::new(0);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Where to find things: the hookrun binary and the PostgreSQL server.
#[derive(Clone, Debug)]
pub struct Env {
    pub hookrun: PathBuf,
    pub bench: PathBuf,
    /// Maintenance database URL used to create and drop the per-run databases.
    pub pg_admin_url: String,
    /// SQLite servers keep their events in a file of their own
    /// (`HOOKRUN_EVENT_STORE_URL`), not in the database file (the default).
    pub sqlite_events_apart: bool,
}

/// A fresh place for hookrun's data: a temp dir (the SQLite file, the server log) and,
/// for PostgreSQL, a new database. [`Scratch::remove`] deletes both.
pub struct Scratch {
    pub dir: PathBuf,
    /// The database (SQLite file URL or PostgreSQL URL).
    pub db_url: String,
    pg_database: Option<String>,
    pg_admin_url: String,
}

impl Scratch {
    pub async fn new(env: &Env, backend: Backend) -> anyhow::Result<Scratch> {
        let n = INSTANCE.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}_{n}", std::process::id());
        let dir = std::env::temp_dir().join(format!("hookrun-bench-{tag}"));
        std::fs::create_dir_all(&dir)?;
        let (db_url, pg_database) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}", dir.join("hookrun.db").display()),
                None,
            ),
            Backend::Postgres => {
                let name = format!("hookrun_bench_{tag}");
                let mut admin = sqlx::PgConnection::connect(&env.pg_admin_url)
                    .await
                    .context("connect to PostgreSQL (is it running on 127.0.0.1:5432?)")?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut admin)
                    .await?;
                let base = env.pg_admin_url.rsplit_once('/').map_or("", |(b, _)| b);
                (format!("{base}/{name}"), Some(name))
            }
        };
        Ok(Scratch {
            dir,
            db_url,
            pg_database,
            pg_admin_url: env.pg_admin_url.clone(),
        })
    }

    /// A `hookrun` command on this data and nothing else of this process's environment
    /// (the benchmark's master key; the events in a file of their own if `env` says so).
    pub fn hookrun(&self, env: &Env) -> Command {
        let mut cmd = Command::new(&env.hookrun);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOOKRUN_DATA_DIR", &self.dir)
            .env("HOOKRUN_DATABASE_URL", &self.db_url)
            .env(
                "HOOKRUN_MASTER_KEY",
                base64::engine::general_purpose::STANDARD.encode(MASTER_KEY),
            )
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if env.sqlite_events_apart && self.db_url.starts_with("sqlite:") {
            let events = self.dir.join("hookrun-events.db");
            cmd.env(
                "HOOKRUN_EVENT_STORE_URL",
                format!("sqlite://{}", events.display()),
            );
        }
        cmd
    }

    /// Removes the dir and drops the database.
    pub async fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(name) = &self.pg_database
            && let Ok(mut admin) = sqlx::PgConnection::connect(&self.pg_admin_url).await
        {
            let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut admin)
                .await;
        }
    }
}

pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub backend: Backend,
    pub scratch: Scratch,
}

impl Server {
    /// Starts `hookrun serve` against `gateway` with `extra` env vars, and waits for
    /// `/healthz`.
    pub async fn start(
        env: &Env,
        backend: Backend,
        gateway: SocketAddr,
        extra: &[(&str, String)],
    ) -> anyhow::Result<Server> {
        let scratch = Scratch::new(env, backend).await?;
        let addr = free_port()?;
        let child = spawn(env, &scratch, addr, gateway, extra)?;
        let mut server = Server {
            child,
            addr,
            backend,
            scratch,
        };
        server.wait_healthy().await?;
        Ok(server)
    }

    /// Stops the process and starts it again on the same data with new settings.
    pub async fn restart(
        &mut self,
        env: &Env,
        gateway: SocketAddr,
        extra: &[(&str, String)],
    ) -> anyhow::Result<()> {
        self.stop_process().await;
        self.child = spawn(env, &self.scratch, self.addr, gateway, extra)?;
        self.wait_healthy().await
    }

    async fn stop_process(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }

    async fn wait_healthy(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("hookrun exited with {status}; log: {}", self.log_tail());
            }
            if let Ok((StatusCode::OK, _, _)) =
                http::request(self.addr, Method::GET, "/healthz", None, None).await
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("hookrun not healthy within 60 s; log: {}", self.log_tail())
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.scratch.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().rev().take(10).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// `(VmRSS, VmHWM)` of the server in KiB.
    pub fn memory_kib(&self) -> (u64, u64) {
        proc_memory_kib(self.pid())
    }

    /// A gauge or counter from `/metrics`: the sum of its series, whatever their labels
    /// (the one value of an unlabelled metric).
    pub async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let (_, _, body) = http::request(self.addr, Method::GET, "/metrics", None, None).await?;
        let text = String::from_utf8_lossy(&body);
        let values: Vec<f64> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (key, value) = l.rsplit_once(' ')?;
                (key.split('{').next() == Some(name)).then(|| value.parse().ok())?
            })
            .collect();
        anyhow::ensure!(!values.is_empty(), "metric {name} not in /metrics");
        Ok(values.iter().sum())
    }

    /// Waits (at most `limit`) until every read model has applied every stored event.
    pub async fn wait_projections_caught_up(&self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let lag = self.metric("hookrun_projection_lag_events").await?;
            if lag == 0.0 {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "read models still {lag} events behind after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGTERM, a short grace period, then SIGKILL; keeps the server log in
    /// `$TMPDIR/hookrun-bench-logs/` and removes the data dir and database.
    pub async fn stop(mut self) {
        self.stop_process().await;
        let logs = std::env::temp_dir().join("hookrun-bench-logs");
        if std::fs::create_dir_all(&logs).is_ok()
            && let Some(name) = self.scratch.dir.file_name()
        {
            let to = logs.join(format!(
                "{}-{}.log",
                name.to_string_lossy(),
                self.backend.name()
            ));
            let _ = std::fs::copy(self.scratch.dir.join("server.log"), to);
        }
        self.scratch.remove().await;
    }
}

/// `(VmRSS, VmHWM)` of a process in KiB (zeros when it is gone).
pub fn proc_memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// `hookrun serve` with the benchmark's settings; output goes to `dir/server.log`.
fn spawn(
    env: &Env,
    scratch: &Scratch,
    addr: SocketAddr,
    gateway: SocketAddr,
    extra: &[(&str, String)],
) -> anyhow::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(scratch.dir.join("server.log"))?;
    let mut cmd = scratch.hookrun(env);
    cmd.arg("serve")
        .env("HOOKRUN_LISTEN", addr.to_string())
        .env("HOOKRUN_LLM_BASE_URL", format!("http://{gateway}"))
        .env("HOOKRUN_LLM_API_KEY", "sk-bench")
        .env("HOOKRUN_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdout(log.try_clone()?)
        .stderr(log);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.spawn()
        .with_context(|| format!("start {}", env.hookrun.display()))
}

fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// The benchmark gateway as a child process (`hookrun-bench gateway`).
pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
}

impl Gateway {
    pub async fn start(bench: &Path, delay: Duration) -> anyhow::Result<Gateway> {
        let mut child = Command::new(bench)
            .args(["gateway", "--listen", "127.0.0.1:0", "--delay-ms"])
            .arg(delay.as_millis().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {} gateway", bench.display()))?;
        let stdout = child.stdout.take().context("gateway stdout")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .context("gateway did not start in 10 s")??
            .context("gateway exited")?;
        let addr = line
            .strip_prefix("listening on ")
            .context("unexpected gateway output")?
            .parse()?;
        Ok(Gateway { child, addr })
    }

    /// `(in_flight, max_in_flight)`: calls the gateway holds now, and at most so far.
    pub async fn in_flight(&self) -> anyhow::Result<(u64, u64)> {
        let (_, v, _) = http::request(self.addr, Method::GET, "/stats", None, None).await?;
        Ok((
            v["in_flight"].as_u64().unwrap_or(0),
            v["max_in_flight"].as_u64().unwrap_or(0),
        ))
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
