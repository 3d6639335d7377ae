//! Master key rotation through the real server and the `hookrun keys` CLI, on SQLite
//! and PostgreSQL: values sealed under key A are resealed under key B in an
//! interrupted run, everything still opens with A configured as old, a re-run
//! finishes, and then A can be removed.

use crate::support;

use base64::Engine;
use hookrun::crypto::MasterKey;
use serde_json::{Value, json};
use support::app::{Agent, Backend, TestApp, spawn_app, spawn_app_with, test_master_key};

on_both_backends!(an_interrupted_master_key_rotation_loses_nothing_and_can_be_rerun);

const TENANT_LLM_KEY: &str = "sk-tenant-own-key";

fn key_id(base64_key: &str) -> String {
    MasterKey::from_base64(base64_key).unwrap().id().to_string()
}

fn report(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("a JSON report ({e}): {out}"))
}

/// Another server on the same database, with other master keys.
async fn restart_with(first: &TestApp, node: &str, keys: &[(&str, &str)]) -> TestApp {
    let db = first.database_url();
    let mut extra = vec![
        ("HOOKRUN_DATABASE_URL", db.as_str()),
        ("HOOKRUN_NODE_ID", node),
    ];
    extra.extend_from_slice(keys);
    spawn_app_with(first.backend, node, &extra)
        .await
        .expect("the first app ran, so this one can")
}

/// Whether the app can open and use every secret: each agent's current secret is
/// shown and verifies, the previous secret verifies, the tenant key reaches the gateway.
async fn assert_everything_opens(app: &TestApp, key: &str, agents: &[Agent], previous: &Agent) {
    for agent in agents {
        let r = app
            .get(key, &format!("/api/agents/{}/webhook-secret", agent.id))
            .await;
        assert_eq!(r.status(), 200, "secret of {}", agent.id);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["webhook_secret"], agent.secret.as_str());
        let delivery = uuid::Uuid::new_v4().to_string();
        assert_eq!(app.send_signed(agent, b"{}", &delivery).await.status(), 202);
    }
    let delivery = uuid::Uuid::new_v4().to_string();
    let r = app.send_signed(previous, b"{}", &delivery).await;
    assert_eq!(r.status(), 202, "the previous secret still verifies");
    let execution = r.json::<Value>().await.unwrap()["execution_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let row = app.wait_terminal(key, &execution).await;
    assert_eq!(
        (row["status"].as_str(), row["key_source"].as_str()),
        (Some("succeeded"), Some("tenant"))
    );
    let sent = app.gateway.received_requests().await.unwrap();
    assert!(
        sent.iter().any(|r| r.headers.get("authorization").unwrap()
            == format!("Bearer {TENANT_LLM_KEY}").as_str()),
        "the tenant's own gateway key opened"
    );
}

async fn an_interrupted_master_key_rotation_loses_nothing_and_can_be_rerun(backend: Backend) {
    // Key A seals everything first (the test apps' default key).
    let Some(app) = spawn_app(backend, "master_key_rotation").await else {
        return;
    };
    let key_a = test_master_key();
    let key_b = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    let (key, first) = app.tenant_with_agent("acme").await;
    let second = app.create_agent(&key, None).await;
    let r = app
        .client
        .put(app.url(&format!("/api/agents/{}/llm-key", second.id)))
        .bearer_auth(&key)
        .json(&json!({"api_key": TENANT_LLM_KEY}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let old_second = Agent {
        id: second.id.clone(),
        secret: second.secret.clone(),
    };
    let r = app
        .client
        .post(app.url(&format!("/api/agents/{}/webhook-secret/rotate", second.id)))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let rotated: Value = r.json().await.unwrap();
    let second = Agent {
        id: second.id,
        secret: rotated["webhook_secret"].as_str().unwrap().to_owned(),
    };
    let third = app.create_agent(&key, None).await;
    let agents = [first, second, third];
    // Sealed values: three webhook secrets, one previous secret, one gateway key.
    let status = report(&app.cli_ok(&["keys", "status"], &[]).await);
    assert_eq!(status["by_key"], json!({ key_id(&key_a): 5 }));

    let both = [
        ("HOOKRUN_MASTER_KEY", key_b.as_str()),
        ("HOOKRUN_MASTER_KEY_OLD", key_a.as_str()),
    ];
    // Interrupted after one row.
    let partial = report(&app.cli_ok(&["keys", "rotate", "--limit", "1"], &both).await);
    assert_eq!(partial["current_key_id"], key_id(&key_b));
    assert_eq!(
        (
            partial["resealed_rows"].as_u64(),
            partial["remaining_rows"].as_u64()
        ),
        (Some(1), Some(2)),
        "{partial}"
    );
    let by_key = partial["by_key"].as_object().unwrap();
    assert_eq!(by_key.len(), 2, "both keys in use mid-rotation: {partial}");

    // Mid-rotation, a server with B and A (old) opens everything.
    let mid = restart_with(&app, "node-mid", &both).await;
    assert_everything_opens(&mid, &key, &agents, &old_second).await;
    // Without A, the rows not yet resealed do not open: A is still needed.
    let b_only = [("HOOKRUN_MASTER_KEY", key_b.as_str())];
    let early = restart_with(&app, "node-early", &b_only).await;
    let mut unreadable = 0;
    for agent in &agents {
        let r = early
            .get(&key, &format!("/api/agents/{}/webhook-secret", agent.id))
            .await;
        unreadable += usize::from(r.status() == 500);
    }
    assert_eq!(unreadable, 2, "the two rows not yet resealed need A");
    // A rotation that cannot open them says so, fails, and changes nothing.
    let out = app.cli(&["keys", "rotate"], &b_only).await;
    assert!(!out.status.success());
    let failed = report(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(failed["resealed_rows"], 0);
    assert!(
        failed["failures"][0]
            .as_str()
            .unwrap()
            .contains(&key_id(&key_a)),
        "{failed}"
    );

    // The re-run finishes; another one has nothing left to do.
    let done = report(&app.cli_ok(&["keys", "rotate"], &both).await);
    assert_eq!(
        (
            done["resealed_rows"].as_u64(),
            done["remaining_rows"].as_u64()
        ),
        (Some(2), Some(0)),
        "{done}"
    );
    assert_eq!(done["by_key"], json!({ key_id(&key_b): 5 }));
    let again = report(&app.cli_ok(&["keys", "rotate"], &both).await);
    assert_eq!(again["resealed_rows"], 0);

    // Now A can be removed.
    let after = restart_with(&app, "node-after", &b_only).await;
    assert_everything_opens(&after, &key, &agents, &old_second).await;
    let status = report(&app.cli_ok(&["keys", "status"], &b_only).await);
    assert_eq!(status["by_key"], json!({ key_id(&key_b): 5 }));
    // The database holds no secret in plaintext and nothing under key A any more.
    let all: Vec<String> = hookrun::with_db!(&app.state.db, |pool| {
        sqlx::query_scalar::<_, String>(
            "SELECT webhook_secret_sealed || ' ' || COALESCE(previous_secret_sealed, '') || ' ' || \
             COALESCE(llm_key_sealed, '') FROM agents",
        )
        .fetch_all(pool)
        .await
        .unwrap()
    });
    let text = all.join("\n");
    assert!(!text.contains(&key_id(&key_a)), "{text}");
    for agent in &agents {
        assert!(!text.contains(&agent.secret));
    }
    assert!(!text.contains(TENANT_LLM_KEY));
}
