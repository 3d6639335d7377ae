//! `hookrun agent create`.

use anyhow::Context;

use super::{AgentCommand, base_url, print_json, read_arg};
use crate::catalog::commands::{self, NewAgent};
use crate::config::Settings;
use crate::domain::TenantId;
use crate::startup::Stores;

pub(super) async fn run(settings: Settings, command: AgentCommand) -> anyhow::Result<()> {
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
