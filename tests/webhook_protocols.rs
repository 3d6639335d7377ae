//! Webhook protocols through the real server, on SQLite and PostgreSQL: signature
//! schemes per agent (a Standard Webhooks sender using the reference library),
//! replay windows, and idempotent parallel deliveries.

use crate::support;

use hookrun::webhook::{sign_standard, sign_stripe};
use serde_json::{Value, json};
use support::app::{Agent, Backend, TestApp, assert_error, spawn_app};

on_both_backends!(
    a_standard_webhooks_sender_using_the_reference_library_is_accepted,
    timestamped_schemes_refuse_stale_and_future_timestamps_saying_which,
    patch_changes_the_scheme_and_window_and_validates_first,
    fifty_parallel_identical_deliveries_queue_one_execution_and_call_the_gateway_once,
);

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn agent_with_scheme(app: &TestApp, key: &str, scheme: &str, tolerance: u64) -> Agent {
    let r = app
        .create_agent_with(
            key,
            json!({
                "name": format!("{scheme} sender"),
                "system_prompt": "p",
                "llm_config": {"model": "m"},
                "signature_scheme": scheme,
                "timestamp_tolerance_s": tolerance,
            }),
        )
        .await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["signature_scheme"], scheme);
    assert_eq!(v["timestamp_tolerance_s"], tolerance);
    Agent {
        id: v["agent_id"].as_str().unwrap().to_owned(),
        secret: v["webhook_secret"].as_str().unwrap().to_owned(),
    }
}

/// Headers for a Standard Webhooks delivery, computed by the `standardwebhooks`
/// reference library (Python). `None` (after printing `SKIPPED`) where it is not
/// installed; CI installs it and refuses to skip.
fn reference_library_headers(
    secret: &str,
    msg_id: &str,
    ts: i64,
    body: &str,
) -> Option<Vec<(String, String)>> {
    const SCRIPT: &str = r#"
import datetime, json, sys
from standardwebhooks import Webhook
secret, msg_id, ts = sys.argv[1], sys.argv[2], int(sys.argv[3])
when = datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc)
signature = Webhook(secret).sign(msg_id, when, sys.stdin.read())
print(json.dumps({"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signature}))
"#;
    use std::io::Write;
    let spawned = std::process::Command::new("python3")
        .args(["-c", SCRIPT, secret, msg_id, &ts.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let output = spawned.and_then(|mut child| {
        child.stdin.take().unwrap().write_all(body.as_bytes())?;
        child.wait_with_output()
    });
    match output {
        Ok(out) if out.status.success() => {
            let v: Value = serde_json::from_slice(&out.stdout).expect("JSON headers");
            Some(
                v.as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                    .collect(),
            )
        }
        other => {
            let why = match other {
                Ok(out) => String::from_utf8_lossy(&out.stderr).into_owned(),
                Err(e) => e.to_string(),
            };
            assert!(
                std::env::var_os("CI").is_none(),
                "the standardwebhooks reference library is needed in CI: {why}"
            );
            println!("SKIPPED standardwebhooks: pip install standardwebhooks ({why})");
            None
        }
    }
}

async fn post(
    app: &TestApp,
    agent: &Agent,
    body: &str,
    headers: &[(String, String)],
) -> reqwest::Response {
    let mut all: Vec<(&str, &str)> = vec![("Content-Type", "application/json")];
    all.extend(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    app.post_webhook(&agent.id, body.as_bytes(), &all).await
}

async fn a_standard_webhooks_sender_using_the_reference_library_is_accepted(backend: Backend) {
    let Some(app) = spawn_app(backend, "standard_reference").await else {
        return;
    };
    let key = app.create_tenant("acme").await;
    let agent = agent_with_scheme(&app, &key, "standard", 300).await;
    assert!(agent.secret.starts_with("whsec_"), "{}", agent.secret);
    let shown: Value = app
        .get(&key, &format!("/api/agents/{}/webhook-secret", agent.id))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["webhook_secret"], agent.secret.as_str());
    assert_eq!(shown["signature_header"], "webhook-signature");

    let body = r#"{"ticket_id": "TKT-7", "note": "sent by a Standard Webhooks library"}"#;
    let Some(headers) = reference_library_headers(&agent.secret, "msg_2Kx9", now(), body) else {
        return;
    };
    let r = post(&app, &agent, body, &headers).await;
    assert_eq!(r.status(), 202, "{:?}", r.text().await);
    let first: Value = r.json().await.unwrap();
    let id = first["execution_id"].as_str().unwrap().to_owned();
    let queued = app.stream(&format!("execution-{id}")).await;
    assert_eq!(
        queued[0].metadata["correlation_id"], "msg_2Kx9",
        "delivery id is webhook-id"
    );

    // The delivery id is the signed webhook-id: an extra unsigned id header does not
    // turn a replay into a new delivery.
    let mut replay = headers.clone();
    replay.push(("X-GitHub-Delivery".into(), "fresh-id".into()));
    let r = post(&app, &agent, body, &replay).await;
    assert_eq!(r.status(), 200);
    let again: Value = r.json().await.unwrap();
    assert_eq!(
        (again["status"].as_str(), again["execution_id"].as_str()),
        (Some("duplicate"), Some(id.as_str()))
    );

    // A body changed after signing fails and says the raw body is what is signed.
    let r = post(&app, &agent, r#"{"ticket_id":"TKT-7"}"#, &headers).await;
    let e = assert_error(r, 401).await;
    assert!(
        e["message"].as_str().unwrap().contains("raw request body"),
        "{e}"
    );
    app.wait_terminal(&key, &id).await;
    assert_eq!(app.execution_count().await, 1);
}

async fn timestamped_schemes_refuse_stale_and_future_timestamps_saying_which(backend: Backend) {
    let Some(app) = spawn_app(backend, "replay_window").await else {
        return;
    };
    let key = app.create_tenant("acme").await;
    let standard = agent_with_scheme(&app, &key, "standard", 60).await;
    let stripe = agent_with_scheme(&app, &key, "stripe", 60).await;
    let body = r#"{"a":1}"#;
    let standard_headers = |msg: &str, ts: i64| {
        vec![
            ("webhook-id".to_owned(), msg.to_owned()),
            ("webhook-timestamp".to_owned(), ts.to_string()),
            (
                "webhook-signature".to_owned(),
                sign_standard(&standard.secret, msg, ts, body.as_bytes()),
            ),
        ]
    };
    let stripe_headers = |msg: &str, ts: i64| {
        vec![
            (
                "Stripe-Signature".to_owned(),
                sign_stripe(&stripe.secret, ts, body.as_bytes()),
            ),
            ("Idempotency-Key".to_owned(), msg.to_owned()),
        ]
    };
    for (agent, headers) in [
        (
            &standard,
            &standard_headers as &dyn Fn(&str, i64) -> Vec<(String, String)>,
        ),
        (&stripe, &stripe_headers),
    ] {
        let r = post(&app, agent, body, &headers("stale", now() - 120)).await;
        let e = assert_error(r, 401).await;
        assert_eq!(e["code"], "stale_timestamp", "{e}");
        assert!(
            e["message"].as_str().unwrap().contains("in the past"),
            "{e}"
        );
        assert!(
            e["message"].as_str().unwrap().contains("60 s tolerance"),
            "{e}"
        );
        let r = post(&app, agent, body, &headers("future", now() + 120)).await;
        let e = assert_error(r, 401).await;
        assert_eq!(e["code"], "future_timestamp", "{e}");
        assert!(
            e["message"].as_str().unwrap().contains("in the future"),
            "{e}"
        );
        let r = post(&app, agent, body, &headers("on-time", now() - 30)).await;
        assert_eq!(r.status(), 202, "{:?}", r.text().await);
    }
    assert_eq!(
        app.execution_count().await,
        2,
        "only the on-time deliveries ran"
    );
}

async fn patch(app: &TestApp, key: &str, agent: &Agent, body: Value) -> reqwest::Response {
    app.client
        .patch(app.url(&format!("/api/agents/{}", agent.id)))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn patch_changes_the_scheme_and_window_and_validates_first(backend: Backend) {
    let Some(app) = spawn_app(backend, "patch_scheme").await else {
        return;
    };
    let (key, agent) = app.tenant_with_agent("acme").await;
    for (body, hint) in [
        (
            json!({"signature_scheme": "svix"}),
            "github, standard, stripe",
        ),
        (json!({"timestamp_tolerance_s": 0}), "timestamp_tolerance_s"),
        (
            json!({"timestamp_tolerance_s": 86_401}),
            "timestamp_tolerance_s",
        ),
        (
            json!({"status": "paused", "signature_scheme": "nope"}),
            "nope",
        ),
        (json!({"signature_sceme": "stripe"}), "signature_sceme"),
    ] {
        let e = assert_error(patch(&app, &key, &agent, body.clone()).await, 400).await;
        assert!(e["message"].as_str().unwrap().contains(hint), "{body}: {e}");
    }
    let v: Value = app
        .get(&key, &format!("/api/agents/{}", agent.id))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (v["status"].as_str(), v["signature_scheme"].as_str()),
        (Some("active"), Some("github")),
        "a refused PATCH changed nothing"
    );

    let r = patch(
        &app,
        &key,
        &agent,
        json!({"signature_scheme": "stripe", "timestamp_tolerance_s": 120}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (
            v["signature_scheme"].as_str(),
            v["timestamp_tolerance_s"].as_u64()
        ),
        (Some("stripe"), Some(120))
    );
    let events = app.stream(&format!("agent-{}", agent.id)).await;
    let updated = events
        .iter()
        .find(|e| e.event_type == "AgentUpdated")
        .expect("AgentUpdated");
    assert_eq!(updated.data["signature_scheme"], "stripe");
    assert_eq!(updated.data["timestamp_tolerance_s"], 120);

    // GitHub signatures no longer pass; Stripe ones with the same secret do.
    let body = b"{}";
    let r = app.send_signed(&agent, body, "gh").await;
    let e = assert_error(r, 401).await;
    assert!(
        e["message"].as_str().unwrap().contains("Stripe-Signature"),
        "{e}"
    );
    let sig = sign_stripe(&agent.secret, now(), body);
    let r = app
        .post_webhook(&agent.id, body, &[("Stripe-Signature", &sig)])
        .await;
    assert_eq!(r.status(), 202);
}

async fn fifty_parallel_identical_deliveries_queue_one_execution_and_call_the_gateway_once(
    backend: Backend,
) {
    let Some(app) = spawn_app(backend, "parallel_duplicates").await else {
        return;
    };
    let (key, agent) = app.tenant_with_agent("acme").await;
    let body = br#"{"ticket_id":"TKT-50"}"#;
    let answers = futures::future::join_all((0..50).map(|_| async {
        let r = app.send_signed(&agent, body, "the-one-delivery").await;
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        (status, v)
    }))
    .await;
    let ids: std::collections::HashSet<&str> = answers
        .iter()
        .map(|(_, v)| v["execution_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 1, "one execution id for all: {answers:?}");
    let accepted = answers
        .iter()
        .filter(|(s, v)| *s == 202 && v["status"] == "queued")
        .count();
    let duplicates = answers
        .iter()
        .filter(|(s, v)| *s == 200 && v["status"] == "duplicate")
        .count();
    assert_eq!((accepted, duplicates), (1, 49), "{answers:?}");

    let id = ids.into_iter().next().unwrap().to_owned();
    app.wait_terminal(&key, &id).await;
    assert_eq!(
        app.execution_count().await,
        1,
        "exactly one ExecutionQueued"
    );
    assert_eq!(
        app.gateway.received_requests().await.unwrap().len(),
        1,
        "one gateway call"
    );
    let outcomes: Vec<String> = app
        .deliveries(&key, &agent.id)
        .await
        .iter()
        .map(|d| d["outcome"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(outcomes.iter().filter(|o| *o == "accepted").count(), 1);
    assert_eq!(outcomes.iter().filter(|o| *o == "duplicate").count(), 49);
}
