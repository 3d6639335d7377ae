//! `hookrun sign`: a ready-to-run curl command with a correct signature.

use anyhow::Context;

use super::{base_url, read_arg};
use crate::config::Settings;
use crate::domain::AgentId;
use crate::startup::Stores;

pub(super) async fn run(
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

/// Single-quotes a string for POSIX shells.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
