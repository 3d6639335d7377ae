//! The `hookrun` commands. Each opens what it needs from the same settings as the
//! server (`HOOKRUN_*`), so the CLI and a running server share one database.
//!
//! One file per command group; this file holds the argument types and the dispatch.

mod agents;
mod bench;
mod deliveries;
mod events;
mod keys;
mod progress;
mod projections;
mod sign;
mod verify;

use clap::{Parser, Subcommand};

use crate::catalog::commands;
use crate::config::Settings;
use crate::domain::TenantId;
use crate::startup::{Application, Stores};

#[derive(Parser)]
#[command(
    name = "hookrun",
    version,
    about = "Signed webhooks in, LLM agent runs out, every step an event."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the HTTP server, the agent actors and the projections.
    Serve,
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Manage tenants.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Manage agents.
    Agent {
        #[command(subcommand)]
        command: AgentCommand,
    },
    /// Print a ready-to-run curl command that sends a correctly signed webhook.
    Sign {
        /// The agent's id.
        #[arg(long)]
        agent: String,
        /// The JSON payload, or @FILE to read it from a file (sent byte for byte).
        #[arg(long)]
        payload: String,
        /// Base URL of the server (default: HOOKRUN_PUBLIC_URL or http://HOOKRUN_LISTEN).
        #[arg(long)]
        url: Option<String>,
    },
    /// Print events as JSON lines: one stream, a category of streams, or all events in
    /// global order (from a position), and optionally keep following new ones.
    Events {
        /// A stream name (`execution-…`, `agent-…`, `tenant-…`).
        #[arg(long, conflicts_with = "category")]
        stream: Option<String>,
        /// Every stream of a category: `execution` is all `execution-…` streams.
        #[arg(long)]
        category: Option<String>,
        /// Start after this position (`<commit>/<prepare>`, as printed in `position`).
        #[arg(long)]
        from: Option<crate::events::Position>,
        /// Keep printing events as they are stored (until interrupted).
        #[arg(long)]
        follow: bool,
    },
    /// Read models: rebuild, status.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Check the read models against a replay of the events (exit status 1 on a
    /// difference); with --chain, check every stream's hash chain instead.
    Verify {
        /// Check the hash chains of the stored events instead of the read models.
        #[arg(long)]
        chain: bool,
    },
    /// Print the delivery audit log of an agent as JSON lines, newest first.
    Deliveries {
        /// The agent's id.
        #[arg(long, required_unless_present = "unknown_agents")]
        agent: Option<String>,
        /// Instead: requests that named no existing agent.
        #[arg(long, conflicts_with = "agent")]
        unknown_agents: bool,
        /// Rows to print at most.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Master keys: reseal everything under the current key, or show what uses which key.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
pub enum ProjectionsCommand {
    /// Replay every event into a shadow table and swap it in (the live table is
    /// served meanwhile). NAME is a projection, or `all`.
    Rebuild { name: String },
    /// Checkpoints, versions and lag of every projection, as JSON.
    Status,
    /// Benchmark: seed an EMPTY scratch database with synthetic events straight into
    /// the events table, rebuild, and print events/s (see scripts/bench-rebuild.sh).
    Bench {
        /// How many events to seed.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// The projection to rebuild (or `all`).
        #[arg(long, default_value = "agent_test_executions")]
        projection: String,
        /// Spread each execution's four events this many executions apart, as a busy
        /// service interleaves them (0: each execution's events back to back).
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=10_000))]
        interleave: u64,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Reseal every sealed value under HOOKRUN_MASTER_KEY (old keys in
    /// HOOKRUN_MASTER_KEY_OLD open them). Safe to interrupt and to run again.
    Rotate {
        /// Reseal at most this many agent rows, then stop (run again to continue).
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Count sealed values per master key id.
    Status,
}

#[derive(Subcommand)]
pub enum TenantCommand {
    /// Create a tenant and print its API key (shown once).
    Create { tenant_id: String },
    /// Issue another API key for a tenant (shown once).
    CreateKey { tenant_id: String },
    /// Revoke one of a tenant's API keys (it gets 401 from then on).
    RevokeKey { tenant_id: String, key_id: String },
}

#[derive(Subcommand)]
pub enum AgentCommand {
    /// Create an agent and print it with its webhook secret.
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        system_prompt: String,
        /// The gateway model name (shortcut for --llm-config '{"model": …}').
        #[arg(long, default_value = "gpt-4o-mini")]
        model: String,
        /// Full llm_config JSON (overrides --model).
        #[arg(long)]
        llm_config: Option<String>,
        /// JSON Schema the payloads must match (JSON, or @FILE).
        #[arg(long)]
        payload_schema: Option<String>,
        /// How senders sign: github (default), standard or stripe.
        #[arg(long)]
        signature_scheme: Option<String>,
        /// Replay window of timestamped schemes, in seconds (default 300).
        #[arg(long)]
        timestamp_tolerance_s: Option<u64>,
    },
    /// Replace an agent's webhook secret; the old one keeps verifying for a while.
    RotateSecret {
        #[arg(long)]
        agent: String,
        /// How long the old secret keeps verifying (default 86400; 0: not at all).
        #[arg(long)]
        previous_expires_in_s: Option<u64>,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    match cli.command {
        Command::Serve => {
            Application::build(settings)
                .await?
                .run_until_stopped()
                .await
        }
        Command::Migrate => {
            Stores::open(&settings).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Tenant { command } => tenant(settings, command).await,
        Command::Agent { command } => agents::run(settings, command).await,
        Command::Sign {
            agent,
            payload,
            url,
        } => sign::run(settings, &agent, &payload, url).await,
        Command::Events {
            stream,
            category,
            from,
            follow,
        } => {
            let selection = match (stream, category) {
                (Some(stream), _) => events::Selection::Stream(stream),
                (None, Some(category)) => events::Selection::Category(category),
                (None, None) => events::Selection::All,
            };
            events::run(settings, selection, from, follow).await
        }
        Command::Projections { command } => match command {
            ProjectionsCommand::Rebuild { name } => {
                on_all_cores(async move { projections::rebuild(settings, &name).await }).await
            }
            ProjectionsCommand::Status => projections::status(settings).await,
            ProjectionsCommand::Bench {
                events,
                projection,
                interleave,
            } => {
                on_all_cores(
                    async move { bench::run(settings, events, &projection, interleave).await },
                )
                .await
            }
        },
        Command::Verify { chain } => verify::run(settings, chain).await,
        Command::Deliveries {
            agent,
            unknown_agents: _,
            limit,
        } => deliveries::run(settings, agent, limit).await,
        Command::Keys { command } => keys::run(settings, command).await,
    }
}

async fn tenant(settings: Settings, command: TenantCommand) -> anyhow::Result<()> {
    let stores = Stores::open(&settings).await?;
    match command {
        TenantCommand::Create { tenant_id } => {
            let tenant = TenantId::parse(&tenant_id)?;
            let (key_id, api_key) =
                commands::create_tenant_with_key_id(&stores.db, &tenant).await?;
            print_json(&serde_json::json!({
                "tenant_id": tenant.to_string(), "api_key": api_key, "key_id": key_id,
            }))
        }
        TenantCommand::CreateKey { tenant_id } => {
            let tenant = TenantId::parse(&tenant_id)?;
            let (key_id, api_key) = commands::create_api_key(&stores.db, &tenant).await?;
            print_json(&serde_json::json!({
                "tenant_id": tenant.to_string(), "api_key": api_key, "key_id": key_id,
            }))
        }
        TenantCommand::RevokeKey { tenant_id, key_id } => {
            let tenant = TenantId::parse(&tenant_id)?;
            if !crate::catalog::tenants::revoke_key(&stores.db, &tenant, &key_id).await? {
                anyhow::bail!("tenant {tenant} has no key {key_id}");
            }
            print_json(&serde_json::json!({
                "tenant_id": tenant.to_string(), "key_id": key_id, "revoked": true,
            }))
        }
    }
}

/// Runs a CPU-heavy command on a multi-threaded runtime of its own (the binary's main
/// runtime has one thread): a rebuild then decodes the next batch on one core while it
/// folds and writes the current one on another.
async fn on_all_cores<F>(command: F) -> anyhow::Result<()>
where
    F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(command)
    })
    .await?
}

pub(crate) fn base_url(settings: &Settings, explicit: Option<String>) -> String {
    explicit
        .or_else(|| settings.public_url.clone())
        .unwrap_or_else(|| format!("http://{}", settings.listen))
        .trim_end_matches('/')
        .to_owned()
}

/// `@FILE` reads a file; anything else is the value itself.
pub(crate) fn read_arg(raw: &str) -> anyhow::Result<Vec<u8>> {
    match raw.strip_prefix('@') {
        Some(path) => {
            anyhow::Context::with_context(std::fs::read(path), || format!("cannot read {path}"))
        }
        None => Ok(raw.as_bytes().to_vec()),
    }
}

pub(crate) fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
