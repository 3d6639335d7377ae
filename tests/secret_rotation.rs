//! Webhook secret rotation through the real server and the CLI, on SQLite and
//! PostgreSQL: the previous secret verifies until its overlap ends, the event never
//! carries a secret, and the CLI creates, signs for and rotates agents of each scheme.

use crate::support;

use std::time::Duration;

use serde_json::{Value, json};
use support::app::{Agent, Backend, TestApp, assert_error, spawn_app};

on_both_backends!(
    a_rotated_secret_keeps_the_previous_one_verifying_until_it_expires,
    the_cli_creates_signs_for_and_rotates_each_scheme,
);

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn rotate(app: &TestApp, key: &str, agent: &Agent, body: Option<Value>) -> reqwest::Response {
    let mut r = app
        .client
        .post(app.url(&format!("/api/agents/{}/webhook-secret/rotate", agent.id)))
        .bearer_auth(key);
    if let Some(body) = body {
        r = r.json(&body);
    }
    r.send().await.unwrap()
}

async fn a_rotated_secret_keeps_the_previous_one_verifying_until_it_expires(backend: Backend) {
    let Some(app) = spawn_app(backend, "rotation").await else {
        return;
    };
    let (key, old) = app.tenant_with_agent("acme").await;
    let r = rotate(&app, &key, &old, None).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let new = Agent {
        id: old.id.clone(),
        secret: v["webhook_secret"].as_str().unwrap().to_owned(),
    };
    assert_ne!(new.secret, old.secret);
    let expires =
        chrono::DateTime::parse_from_rfc3339(v["previous_expires_at"].as_str().unwrap()).unwrap();
    let in_s = expires.timestamp() - now();
    assert!(
        (86_390..=86_400).contains(&in_s),
        "default overlap is a day: {in_s}"
    );

    // Both verify during the overlap; the API shows the new one and the expiry.
    assert_eq!(app.send_signed(&old, b"{}", "by-old").await.status(), 202);
    assert_eq!(app.send_signed(&new, b"{}", "by-new").await.status(), 202);
    let shown: Value = app
        .get(&key, &format!("/api/agents/{}/webhook-secret", old.id))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["webhook_secret"], new.secret.as_str());
    assert_eq!(
        shown["previous_secret_expires_at"],
        v["previous_expires_at"]
    );

    // The event says when, never what.
    let events = app.stream(&format!("agent-{}", old.id)).await;
    let rotated = events
        .iter()
        .find(|e| e.event_type == "WebhookSecretRotated")
        .expect("event");
    assert_eq!(
        rotated.data["previous_expires_at"],
        v["previous_expires_at"]
    );
    let stored = format!("{} {}", rotated.data, rotated.metadata);
    assert!(
        !stored.contains(&old.secret) && !stored.contains(&new.secret),
        "{stored}"
    );

    // A short overlap ends on time; 0 ends it at once.
    let v: Value = rotate(&app, &key, &new, Some(json!({"previous_expires_in_s": 2})))
        .await
        .json()
        .await
        .unwrap();
    let newer = Agent {
        id: old.id.clone(),
        secret: v["webhook_secret"].as_str().unwrap().to_owned(),
    };
    assert_eq!(
        app.send_signed(&new, b"{}", "new-in-overlap")
            .await
            .status(),
        202
    );
    let e = assert_error(app.send_signed(&old, b"{}", "oldest").await, 401).await;
    assert_eq!(
        e["code"], "invalid_signature",
        "only one previous secret is kept"
    );
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    assert_error(app.send_signed(&new, b"{}", "new-after-overlap").await, 401).await;
    let v: Value = rotate(
        &app,
        &key,
        &newer,
        Some(json!({"previous_expires_in_s": 0})),
    )
    .await
    .json()
    .await
    .unwrap();
    let newest = Agent {
        id: old.id.clone(),
        secret: v["webhook_secret"].as_str().unwrap().to_owned(),
    };
    assert_error(app.send_signed(&newer, b"{}", "newer-after-0").await, 401).await;
    assert_eq!(
        app.send_signed(&newest, b"{}", "newest").await.status(),
        202
    );

    // Bad requests change nothing.
    for body in [
        json!({"previous_expires_in_s": 31 * 86_400}),
        json!({"previous_expires_in_s": -1}),
        json!({"x": 1}),
    ] {
        assert_error(rotate(&app, &key, &newest, Some(body)).await, 400).await;
    }
    assert_eq!(
        app.send_signed(&newest, b"{}", "still-newest")
            .await
            .status(),
        202
    );
    let rotations = app
        .stream(&format!("agent-{}", old.id))
        .await
        .iter()
        .filter(|e| e.event_type == "WebhookSecretRotated")
        .count();
    assert_eq!(rotations, 3);
}

async fn the_cli_creates_signs_for_and_rotates_each_scheme(backend: Backend) {
    let Some(app) = spawn_app(backend, "cli_schemes").await else {
        return;
    };
    let key = app.create_tenant("acme").await;
    for scheme in ["github", "standard", "stripe"] {
        let out = app
            .cli_ok(
                &[
                    "agent",
                    "create",
                    "--tenant",
                    "acme",
                    "--name",
                    scheme,
                    "--system-prompt",
                    "p",
                    "--signature-scheme",
                    scheme,
                    "--timestamp-tolerance-s",
                    "120",
                ],
                &[],
            )
            .await;
        let created: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(created["signature_scheme"], scheme);
        let agent = Agent {
            id: created["agent_id"].as_str().unwrap().to_owned(),
            secret: created["webhook_secret"].as_str().unwrap().to_owned(),
        };
        assert_eq!(agent.secret.starts_with("whsec_"), scheme == "standard");
        let v: Value = app
            .get(&key, &format!("/api/agents/{}", agent.id))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(v["timestamp_tolerance_s"], 120);

        // `sign` prints a curl command in the agent's scheme that a shell can run.
        // The shell runs on a blocking thread: this test's thread also drives the server.
        let send = || async {
            let curl = app
                .cli_ok(
                    &[
                        "sign",
                        "--agent",
                        &agent.id,
                        "--payload",
                        r#"{"it's":"signed"}"#,
                        "--url",
                        &app.address,
                    ],
                    &[],
                )
                .await;
            let out = tokio::task::spawn_blocking(move || {
                std::process::Command::new("sh")
                    .arg("-c")
                    .arg(&curl)
                    .output()
                    .unwrap()
            })
            .await
            .unwrap();
            serde_json::from_slice::<Value>(&out.stdout).unwrap_or_else(|_| {
                panic!(
                    "{scheme}: curl said {}",
                    String::from_utf8_lossy(&out.stdout)
                )
            })
        };
        let answer = send().await;
        assert_eq!(answer["status"], "queued", "{scheme}: {answer}");

        // `agent rotate-secret` keeps the old secret for the overlap asked for.
        let out = app
            .cli_ok(
                &[
                    "agent",
                    "rotate-secret",
                    "--agent",
                    &agent.id,
                    "--previous-expires-in-s",
                    "0",
                ],
                &[],
            )
            .await;
        let rotated: Value = serde_json::from_str(&out).unwrap();
        let new_secret = rotated["webhook_secret"].as_str().unwrap();
        assert_ne!(new_secret, agent.secret);
        let shown: Value = app
            .get(&key, &format!("/api/agents/{}/webhook-secret", agent.id))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(shown["webhook_secret"], new_secret);
        let answer = send().await;
        assert_eq!(answer["status"], "queued", "{scheme}: new secret: {answer}");
    }
    let bad = app
        .cli(
            &[
                "agent",
                "create",
                "--tenant",
                "acme",
                "--name",
                "x",
                "--system-prompt",
                "p",
                "--signature-scheme",
                "svix",
            ],
            &[],
        )
        .await;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("github, standard, stripe"));
}
