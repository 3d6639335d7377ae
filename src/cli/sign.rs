//! `hookrun sign`: a ready-to-run curl command with a correct signature, in the
//! agent's signature scheme (timestamped schemes are signed now: run it within the
//! agent's replay window).

use anyhow::Context;

use super::{base_url, read_arg};
use crate::config::Settings;
use crate::domain::AgentId;
use crate::startup::Stores;
use crate::webhook::{self, SignatureScheme};

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
    let secret = agent
        .webhook_secret(&stores.sealer)
        .map_err(|e| anyhow::anyhow!("the webhook secret {e} (is this the right master key?)"))?;
    let body = read_arg(payload)?;
    serde_json::from_slice::<serde_json::Value>(&body).context("the payload is not valid JSON")?;
    let body = String::from_utf8(body).context("the payload is not UTF-8")?;
    let delivery = uuid::Uuid::new_v4().to_string();
    let now = chrono::Utc::now().timestamp();
    let headers: Vec<(&str, String)> = match agent.signature_scheme {
        SignatureScheme::Github => vec![
            (
                webhook::GITHUB_SIGNATURE_HEADER,
                webhook::sign_github(&secret, body.as_bytes()),
            ),
            ("X-GitHub-Delivery", delivery),
        ],
        SignatureScheme::Standard => vec![
            (
                webhook::STANDARD_SIGNATURE_HEADER,
                webhook::sign_standard(&secret, &delivery, now, body.as_bytes()),
            ),
            (webhook::STANDARD_TIMESTAMP_HEADER, now.to_string()),
            (webhook::STANDARD_ID_HEADER, delivery),
        ],
        SignatureScheme::Stripe => vec![
            (
                webhook::STRIPE_SIGNATURE_HEADER,
                webhook::sign_stripe(&secret, now, body.as_bytes()),
            ),
            ("Idempotency-Key", delivery),
        ],
    };
    let url = format!("{}/webhooks/agents/{agent_id}", base_url(&settings, url));
    let mut command = format!(
        "curl -sS -X POST {} \\\n  -H 'Content-Type: application/json'",
        shell_quote(&url)
    );
    for (name, value) in headers {
        command.push_str(&format!(
            " \\\n  -H {}",
            shell_quote(&format!("{name}: {value}"))
        ));
    }
    println!("{command} \\\n  --data-binary {}", shell_quote(&body));
    Ok(())
}

/// Single-quotes a string for POSIX shells.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
