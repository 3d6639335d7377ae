//! The `hookrun` commands. Each opens what it needs from the same settings as the
//! server (`HOOKRUN_*`), so the CLI and a running server share one database.

use std::io::Write;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::catalog::commands::{self, NewAgent};
use crate::config::Settings;
use crate::domain::{AgentId, TenantId};
use crate::events::Position;
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
    /// Print events as JSON lines: one stream, or all events in global order.
    Events {
        /// A stream name (`execution-…`, `agent-…`); all events when omitted.
        #[arg(long)]
        stream: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum TenantCommand {
    /// Create a tenant and print its API key (shown once).
    Create { tenant_id: String },
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
        Command::Tenant {
            command: TenantCommand::Create { tenant_id },
        } => {
            let stores = Stores::open(&settings).await?;
            let tenant = TenantId::parse(&tenant_id)?;
            let api_key = commands::create_tenant(&stores.db, &tenant).await?;
            print_json(&serde_json::json!({"tenant_id": tenant.to_string(), "api_key": api_key}))
        }
        Command::Agent { command } => agent(settings, command).await,
        Command::Sign {
            agent,
            payload,
            url,
        } => sign(settings, &agent, &payload, url).await,
        Command::Events { stream } => events(settings, stream).await,
    }
}

async fn agent(settings: Settings, command: AgentCommand) -> anyhow::Result<()> {
    let AgentCommand::Create {
        tenant,
        name,
        system_prompt,
        model,
        llm_config,
        payload_schema,
    } = command;
    let stores = Stores::open(&settings).await?;
    let tenant = TenantId::parse(&tenant)?;
    let llm_config = match llm_config {
        Some(raw) => serde_json::from_str(&raw).context("--llm-config is not JSON")?,
        None => serde_json::json!({"model": model}),
    };
    let payload_schema = payload_schema
        .map(|raw| serde_json::from_slice(&read_arg(&raw)?).context("--payload-schema is not JSON"))
        .transpose()?;
    let new = NewAgent {
        name,
        system_prompt,
        llm_config,
        payload_schema,
    };
    let (agent, secret) =
        commands::create_agent(&stores.db, &stores.store, &stores.sealer, &tenant, new).await?;
    print_json(&serde_json::json!({
        "agent_id": agent.agent_id.to_string(),
        "tenant_id": agent.tenant_id.to_string(),
        "status": agent.status.as_str(),
        "webhook_url": format!("{}/webhooks/agents/{}", base_url(&settings, None), agent.agent_id),
        "webhook_secret": secret,
    }))
}

async fn sign(
    settings: Settings,
    agent: &str,
    payload: &str,
    url: Option<String>,
) -> anyhow::Result<()> {
    let stores = Stores::open(&settings).await?;
    let agent_id = AgentId::parse(agent)?;
    let agent = crate::catalog::agents::get(&stores.db, &agent_id)
        .await?
        .with_context(|| format!("agent {agent_id} not found"))?;
    let secret = stores
        .sealer
        .open(
            &agent.webhook_secret_sealed,
            crate::catalog::agents::webhook_secret_aad(&agent_id).as_bytes(),
        )
        .context("the webhook secret cannot be unsealed with this master key")?;
    let secret = String::from_utf8(secret).context("webhook secret is not text")?;
    let body = read_arg(payload)?;
    serde_json::from_slice::<serde_json::Value>(&body).context("the payload is not valid JSON")?;
    let body = String::from_utf8(body).context("the payload is not UTF-8")?;
    let signature = crate::webhook::sign_github(&secret, body.as_bytes());
    let url = format!("{}/webhooks/agents/{agent_id}", base_url(&settings, url));
    println!(
        "curl -sS -X POST {} \\\n  -H 'Content-Type: application/json' \\\n  -H 'X-Hub-Signature-256: {signature}' \\\n  -H 'X-GitHub-Delivery: {}' \\\n  --data-binary {}",
        shell_quote(&url),
        uuid::Uuid::new_v4(),
        shell_quote(&body)
    );
    Ok(())
}

async fn events(settings: Settings, stream: Option<String>) -> anyhow::Result<()> {
    let stores = Stores::open(&settings).await?;
    let mut out = std::io::stdout().lock();
    match stream {
        Some(stream) => {
            let mut from = 0;
            loop {
                let batch = stores.store.read_stream(&stream, from, 1000).await?;
                for event in &batch {
                    writeln!(out, "{}", serde_json::to_string(event)?)?;
                }
                match batch.last() {
                    Some(last) if batch.len() == 1000 => from = last.revision + 1,
                    _ => break,
                }
            }
        }
        None => {
            let mut after = Position::START;
            loop {
                let batch = stores.store.read_all(after, 1000).await?;
                for event in &batch {
                    writeln!(out, "{}", serde_json::to_string(event)?)?;
                }
                match batch.last() {
                    Some(last) => after = last.position,
                    None => break,
                }
            }
        }
    }
    Ok(())
}

fn base_url(settings: &Settings, explicit: Option<String>) -> String {
    explicit
        .or_else(|| settings.public_url.clone())
        .unwrap_or_else(|| format!("http://{}", settings.listen))
        .trim_end_matches('/')
        .to_owned()
}

/// `@FILE` reads a file; anything else is the value itself.
fn read_arg(raw: &str) -> anyhow::Result<Vec<u8>> {
    match raw.strip_prefix('@') {
        Some(path) => std::fs::read(path).with_context(|| format!("cannot read {path}")),
        None => Ok(raw.as_bytes().to_vec()),
    }
}

/// Single-quotes a string for POSIX shells.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
