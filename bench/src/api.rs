//! Setting up through hookrun's own HTTP API: a tenant, then agents.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use crate::http;
use crate::load::Target;
use crate::server::ADMIN_TOKEN;
use crate::sign;

/// Creates tenant `tenant` and returns its API key.
pub async fn create_tenant(addr: SocketAddr, tenant: &str) -> anyhow::Result<String> {
    let (status, v, body) = http::request(
        addr,
        Method::POST,
        "/api/tenants",
        Some(ADMIN_TOKEN),
        Some(&json!({"tenant_id": tenant})),
    )
    .await?;
    if status != StatusCode::CREATED {
        bail!("create tenant: {status} {}", String::from_utf8_lossy(&body));
    }
    v["api_key"]
        .as_str()
        .map(str::to_owned)
        .context("api_key in the answer")
}

/// The agent definition every benchmark agent uses (with the payload schema).
pub fn agent_body(name: &str) -> Value {
    json!({
        "name": name,
        "system_prompt": "You triage support tickets.",
        "llm_config": {"model": "gpt-4o-mini", "temperature": 0.1},
        "payload_schema": sign::payload_schema(),
    })
}

pub async fn create_agent(addr: SocketAddr, api_key: &str, name: &str) -> anyhow::Result<Target> {
    let (status, v, body) = http::request(
        addr,
        Method::POST,
        "/api/agents",
        Some(api_key),
        Some(&agent_body(name)),
    )
    .await?;
    if status != StatusCode::CREATED {
        bail!("create agent: {status} {}", String::from_utf8_lossy(&body));
    }
    let secret = v["webhook_secret"].as_str().context("webhook_secret")?;
    Ok(Target {
        agent_id: v["agent_id"].as_str().context("agent_id")?.to_owned(),
        key: sign::key_of(secret)?,
    })
}

/// Creates `n` agents through the API with `parallel` requests at a time.
pub async fn create_agents(
    addr: SocketAddr,
    api_key: &str,
    n: usize,
    parallel: usize,
) -> anyhow::Result<Vec<Target>> {
    let key = Arc::new(api_key.to_owned());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..parallel.clamp(1, n.max(1)))
        .map(|_| {
            let (key, next) = (key.clone(), next.clone());
            tokio::spawn(async move {
                let mut made = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        return anyhow::Ok(made);
                    }
                    made.push(create_agent(addr, &key, &format!("bench-{i}")).await?);
                }
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(all)
}
