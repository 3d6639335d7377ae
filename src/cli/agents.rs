//! `hookrun agent create` and `hookrun agent rotate-secret`.

use anyhow::Context;

use super::{AgentCommand, base_url, print_json, read_arg};
use crate::catalog::commands::{self, NewAgent};
use crate::catalog::webhook_secrets::{self, DEFAULT_PREVIOUS_EXPIRES_IN_S};
use crate::catalog::{agents, timestamp};
use crate::config::Settings;
use crate::domain::{AgentId, TenantId};
use crate::startup::Stores;

pub(super) async fn run(settings: Settings, command: AgentCommand) -> anyhow::Result<()> {
    match command {
        AgentCommand::Create {
            tenant,
            name,
            system_prompt,
            model,
            llm_config,
            payload_schema,
            signature_scheme,
            timestamp_tolerance_s,
        } => {
            let llm_config = match llm_config {
                Some(raw) => serde_json::from_str(&raw).context("--llm-config is not JSON")?,
                None => serde_json::json!({"model": model}),
            };
            let payload_schema = payload_schema
                .map(|raw| {
                    serde_json::from_slice(&read_arg(&raw)?).context("--payload-schema is not JSON")
                })
                .transpose()?;
            let new = NewAgent {
                name,
                system_prompt,
                llm_config,
                payload_schema,
                signature_scheme,
                timestamp_tolerance_s,
            };
            create(settings, &tenant, new).await
        }
        AgentCommand::RotateSecret {
            agent,
            previous_expires_in_s,
        } => rotate_secret(settings, &agent, previous_expires_in_s).await,
    }
}

async fn create(settings: Settings, tenant: &str, new: NewAgent) -> anyhow::Result<()> {
    let stores = Stores::open(&settings).await?;
    let tenant = TenantId::parse(tenant)?;
    let (agent, secret) =
        commands::create_agent(&stores.db, &stores.store, &stores.sealer, &tenant, new).await?;
    print_json(&serde_json::json!({
        "agent_id": agent.agent_id.to_string(),
        "tenant_id": agent.tenant_id.to_string(),
        "status": agent.status.as_str(),
        "signature_scheme": agent.signature_scheme,
        "webhook_url": format!("{}/webhooks/agents/{}", base_url(&settings, None), agent.agent_id),
        "webhook_secret": agent.signature_scheme.display_secret(&secret),
    }))
}

async fn rotate_secret(
    settings: Settings,
    agent: &str,
    previous_expires_in_s: Option<u64>,
) -> anyhow::Result<()> {
    let stores = Stores::open(&settings).await?;
    let agent_id = AgentId::parse(agent)?;
    let agent = agents::get(&stores.db, &agent_id)
        .await?
        .with_context(|| format!("agent {agent_id} not found"))?;
    let (secret, previous_expires_at) = webhook_secrets::rotate_secret(
        &stores.db,
        &stores.store,
        &stores.sealer,
        &agent,
        previous_expires_in_s.unwrap_or(DEFAULT_PREVIOUS_EXPIRES_IN_S),
    )
    .await?;
    print_json(&serde_json::json!({
        "agent_id": agent_id.to_string(),
        "webhook_secret": agent.signature_scheme.display_secret(&secret),
        "previous_expires_at": timestamp(previous_expires_at),
    }))
}
