//! Chaos: real `hookrun serve` processes killed with SIGKILL mid-flight.
//!
//! Each run prints one line — webhooks accepted, executions terminal, lost, duplicated
//! completed calls, double claims, calls repeated because a crash interrupted them, and
//! the longest time from 202 to terminal — and asserts 0 lost, 0 duplicates.
//! `scripts/chaos.sh` runs them in release mode with the output shown.

use crate::support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use support::app::{ADMIN_TOKEN, completion, github_signature};
use support::process::Node;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

struct Fleet {
    client: reqwest::Client,
    gateway: MockServer,
    key: String,
    agents: Vec<(String, String)>,
}

async fn slow_gateway(delay_ms: u64) -> MockServer {
    let gateway = MockServer::builder().start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(completion("ok"))
                .set_delay(Duration::from_millis(delay_ms)),
        )
        .mount(&gateway)
        .await;
    gateway
}

fn node_env(
    gateway: &MockServer,
    node: &str,
    extra: &[(&str, String)],
) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("HOOKRUN_LLM_BASE_URL", gateway.uri()),
        ("HOOKRUN_ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
        (
            "HOOKRUN_MASTER_KEY",
            base64::engine::general_purpose::STANDARD.encode([9u8; 32]),
        ),
        ("HOOKRUN_NODE_ID", node.to_owned()),
        ("HOOKRUN_NODE_TIMEOUT_S", "2".to_owned()),
        ("HOOKRUN_SWEEP_INTERVAL_MS", "200".to_owned()),
    ];
    for (k, v) in extra {
        let k: &'static str = Box::leak(k.to_string().into_boxed_str());
        env.push((k, v.clone()));
    }
    env
}

impl Fleet {
    async fn setup(gateway: MockServer, node: &Node, agents: usize) -> Fleet {
        let client = reqwest::Client::new();
        let r = client
            .post(format!("{}/api/tenants", node.base))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"tenant_id": "chaos"}))
            .send()
            .await
            .unwrap();
        let key = r.json::<Value>().await.unwrap()["api_key"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut list = Vec::new();
        for i in 0..agents {
            let body = json!({"name": format!("a{i}"), "system_prompt": "p", "llm_config": {"model": "m"}});
            let v: Value = client
                .post(format!("{}/api/agents", node.base))
                .bearer_auth(&key)
                .json(&body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            list.push((
                v["agent_id"].as_str().unwrap().to_owned(),
                v["webhook_secret"].as_str().unwrap().to_owned(),
            ));
        }
        Fleet {
            client,
            gateway,
            key,
            agents: list,
        }
    }

    /// Sends webhook `n` to `base`; the execution id if accepted.
    async fn send(&self, base: &str, n: usize) -> Option<String> {
        let (agent, secret) = &self.agents[n % self.agents.len()];
        let body = format!(r#"{{"n":{n}}}"#);
        let r = self
            .client
            .post(format!("{base}/webhooks/agents/{agent}"))
            .header("Content-Type", "application/json")
            .header(
                "X-Hub-Signature-256",
                github_signature(secret, body.as_bytes()),
            )
            .header("X-GitHub-Delivery", format!("chaos-{n}"))
            .body(body)
            .send()
            .await
            .ok()?;
        if r.status() != 202 {
            return None;
        }
        Some(
            r.json::<Value>().await.ok()?["execution_id"]
                .as_str()?
                .to_owned(),
        )
    }

    /// Waits (deadline 60 s) until every accepted execution is terminal, then measures.
    async fn report(&self, base: &str, accepted: &[(usize, String)]) -> Report {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut rows = HashMap::new();
        while rows.len() < accepted.len() && Instant::now() < deadline {
            let pending: Vec<&String> = accepted
                .iter()
                .map(|(_, id)| id)
                .filter(|id| !rows.contains_key(*id))
                .collect();
            for id in pending {
                let r = self
                    .client
                    .get(format!("{base}/api/executions/{id}"))
                    .bearer_auth(&self.key)
                    .send()
                    .await
                    .unwrap();
                if r.status() == 200 {
                    let row: Value = r.json().await.unwrap();
                    if row["status"] == "succeeded" || row["status"] == "failed" {
                        rows.insert(id.clone(), row);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut calls: HashMap<u64, usize> = HashMap::new();
        for request in self.gateway.received_requests().await.unwrap() {
            let body: Value = serde_json::from_slice(&request.body).unwrap();
            let payload: Value =
                serde_json::from_str(body["messages"][1]["content"].as_str().unwrap()).unwrap();
            *calls.entry(payload["n"].as_u64().unwrap()).or_default() += 1;
        }
        let mut report = Report {
            accepted: accepted.len(),
            terminal: rows.len(),
            ..Default::default()
        };
        for (n, id) in accepted {
            let v: Value = self
                .client
                .get(format!("{base}/api/executions/{id}/events"))
                .bearer_auth(&self.key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let events = v["events"].as_array().unwrap();
            let count = |t: &str| events.iter().filter(|e| e["type"] == t).count();
            let terminal = count("ExecutionSucceeded") + count("ExecutionFailed");
            let llm_called = count("LlmCalled");
            let made = calls.get(&(*n as u64)).copied().unwrap_or(0);
            // A call made that no LlmCalled records, or a second outcome, is a duplicate.
            if terminal > 1 || made > llm_called {
                report.duplicated += 1;
            }
            let mut attempts: Vec<i64> = events
                .iter()
                .filter(|e| e["type"] == "LlmCalled")
                .map(|e| e["data"]["attempt"].as_i64().unwrap())
                .collect();
            attempts.dedup();
            if attempts.len() != llm_called {
                report.double_claims += 1;
            }
            report.repeated += made.saturating_sub(1);
            if let Some(row) = rows.get(id) {
                let at = |f: &str| row[f].as_str().unwrap().parse::<DateTime<Utc>>().unwrap();
                report.longest_ms = report
                    .longest_ms
                    .max((at("completed_at") - at("queued_at")).num_milliseconds());
            }
        }
        println!(
            "chaos: accepted={} terminal={} lost={} duplicated_completed_calls={} double_claims={} \
             calls_repeated_after_crash={} longest_202_to_terminal_ms={}",
            report.accepted,
            report.terminal,
            report.accepted - report.terminal,
            report.duplicated,
            report.double_claims,
            report.repeated,
            report.longest_ms
        );
        report
    }
}

#[derive(Default, Debug)]
struct Report {
    accepted: usize,
    terminal: usize,
    duplicated: usize,
    double_claims: usize,
    repeated: usize,
    longest_ms: i64,
}

impl Report {
    fn assert_clean(&self) {
        assert_eq!(self.terminal, self.accepted, "lost executions: {self:?}");
        assert_eq!((self.duplicated, self.double_claims), (0, 0), "{self:?}");
    }
}

#[tokio::test]
async fn a_node_killed_mid_flight_loses_nothing_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("nodes.log");
    let gateway = slow_gateway(300).await;
    let data_dir = ("HOOKRUN_DATA_DIR", dir.path().display().to_string());
    let mut first = Node::start(
        &node_env(&gateway, "first", std::slice::from_ref(&data_dir)),
        &log,
    )
    .await;
    let fleet = Fleet::setup(gateway, &first, 5).await;
    let mut accepted = Vec::new();
    for n in 0..60 {
        if let Some(id) = fleet.send(&first.base, n).await {
            accepted.push((n, id));
        }
    }
    // Some executions are mid-call (300 ms gateway, 4 at a time per agent), most queued.
    first.kill();
    let second = Node::start(&node_env(&fleet.gateway, "second", &[data_dir]), &log).await;
    let report = fleet.report(&second.base, &accepted).await;
    assert_eq!(report.accepted, 60);
    report.assert_clean();
}

#[tokio::test]
async fn two_nodes_on_one_postgres_lose_nothing_when_one_is_killed() {
    let Some(url) = support::pg::fresh_database("two_nodes").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("nodes.log");
    let gateway = slow_gateway(50).await;
    let db = ("HOOKRUN_DATABASE_URL", url);
    let mut a = Node::start(
        &node_env(&gateway, "node-a", std::slice::from_ref(&db)),
        &log,
    )
    .await;
    let b = Node::start(&node_env(&gateway, "node-b", &[db]), &log).await;
    let fleet = Fleet::setup(gateway, &a, 25).await;
    let mut accepted = Vec::new();
    for n in 0..500 {
        if n == 250 {
            a.kill();
        }
        // Alternate nodes; once node-a is dead, everything goes to node-b.
        let base = if n % 2 == 0 && n < 250 {
            &a.base
        } else {
            &b.base
        };
        if let Some(id) = fleet.send(base, n).await {
            accepted.push((n, id));
        }
    }
    let report = fleet.report(&b.base, &accepted).await;
    assert_eq!(report.accepted, 500);
    report.assert_clean();
}

#[tokio::test]
async fn sigterm_lets_running_executions_finish_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("nodes.log");
    let gateway = slow_gateway(1_000).await;
    let data_dir = ("HOOKRUN_DATA_DIR", dir.path().display().to_string());
    let mut node = Node::start(
        &node_env(&gateway, "graceful", std::slice::from_ref(&data_dir)),
        &log,
    )
    .await;
    let fleet = Fleet::setup(gateway, &node, 1).await;
    let id = fleet.send(&node.base, 1).await.expect("accepted");
    // Wait until the call is under way, then ask the node to stop.
    let deadline = Instant::now() + Duration::from_secs(10);
    while fleet.gateway.received_requests().await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the gateway was never called");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = node.terminate();
    assert!(
        status.success(),
        "exit status {status:?}: {}",
        std::fs::read_to_string(&log).unwrap()
    );
    // Restarted with a node timeout far beyond the test: only what the first node
    // finished itself can be terminal.
    let extra = [data_dir, ("HOOKRUN_NODE_TIMEOUT_S", "3600".to_owned())];
    let restarted = Node::start(&node_env(&fleet.gateway, "after", &extra), &log).await;
    let report = fleet.report(&restarted.base, &[(1, id)]).await;
    report.assert_clean();
    assert_eq!(
        fleet.gateway.received_requests().await.unwrap().len(),
        1,
        "the call was not repeated"
    );
}
