//! The admin and tenant API: authentication, validation and tenant isolation.

use crate::support;

use serde_json::{Value, json};
use support::app::{ADMIN_TOKEN, Backend, assert_error, spawn_app};

on_both_backends!(
    a_tenant_never_sees_another_tenants_agents_secrets_or_executions,
    missing_or_wrong_credentials_are_401,
    invalid_tenants_and_agents_are_rejected_with_400_or_409,
);

async fn a_tenant_never_sees_another_tenants_agents_secrets_or_executions(backend: Backend) {
    let Some(app) = spawn_app(backend, "isolation").await else {
        return;
    };
    let (key_a, agent) = app.tenant_with_agent("tenant-a").await;
    let key_b = app.create_tenant("tenant-b").await;
    let r = app.send_signed(&agent, b"{}", "d1").await;
    let id = r.json::<Value>().await.unwrap()["execution_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_terminal(&key_a, &id).await;

    let a = &agent.id;
    for path in [
        format!("/api/agents/{a}"),
        format!("/api/agents/{a}/webhook-secret"),
        format!("/api/executions/{id}"),
        format!("/api/executions/{id}/events"),
    ] {
        assert_eq!(
            app.get(&key_a, &path).await.status(),
            200,
            "owner reads {path}"
        );
        let e = assert_error(app.get(&key_b, &path).await, 404).await;
        assert_eq!(e["code"], "not_found", "{path}");
    }
    let r = app
        .client
        .put(app.url(&format!("/api/agents/{a}/llm-key")))
        .bearer_auth(&key_b)
        .json(&json!({"api_key": "sk-x"}))
        .send()
        .await
        .unwrap();
    assert_error(r, 404).await;
    let r = app
        .client
        .patch(app.url(&format!("/api/agents/{a}")))
        .bearer_auth(&key_b)
        .json(&json!({"status": "paused"}))
        .send()
        .await
        .unwrap();
    assert_error(r, 404).await;
    // The owner's agent is unchanged by the other tenant's attempts.
    let v: Value = app
        .get(&key_a, &format!("/api/agents/{a}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (v["status"].as_str(), v["key_source"].as_str()),
        (Some("active"), Some("platform"))
    );
    let secret: Value = app
        .get(&key_a, &format!("/api/agents/{a}/webhook-secret"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(secret["webhook_secret"], agent.secret.as_str());
}

async fn missing_or_wrong_credentials_are_401(backend: Backend) {
    let Some(app) = spawn_app(backend, "credentials").await else {
        return;
    };
    let (key, agent) = app.tenant_with_agent("acme").await;
    let path = format!("/api/agents/{}", agent.id);
    assert_error(app.client.get(app.url(&path)).send().await.unwrap(), 401).await;
    assert_error(app.get("hr_wrong", &path).await, 401).await;
    assert_eq!(app.get(&key, &path).await.status(), 200);
    let r = app
        .client
        .post(app.url("/api/tenants"))
        .json(&json!({"tenant_id": "x"}))
        .send()
        .await
        .unwrap();
    assert_error(r, 401).await;
    let r = app
        .client
        .post(app.url("/api/tenants"))
        .bearer_auth(&key)
        .json(&json!({"tenant_id": "x"}))
        .send()
        .await
        .unwrap();
    assert_error(r, 401).await;
    let r = app
        .client
        .post(app.url("/api/tenants"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"tenant_id": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

async fn invalid_tenants_and_agents_are_rejected_with_400_or_409(backend: Backend) {
    let Some(app) = spawn_app(backend, "validation").await else {
        return;
    };
    let key = app.create_tenant("acme").await;
    let r = app
        .client
        .post(app.url("/api/tenants"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"tenant_id": "acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(assert_error(r, 409).await["code"], "already_exists");
    let r = app
        .client
        .post(app.url("/api/tenants"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"tenant_id": "Not Valid"}))
        .send()
        .await
        .unwrap();
    assert_error(r, 400).await;
    let r = app
        .client
        .post(app.url("/api/tenants"))
        .bearer_auth(ADMIN_TOKEN)
        .body("{")
        .header("Content-Type", "application/json")
        .send()
        .await
        .unwrap();
    assert_error(r, 400).await;

    let base = json!({"name": "n", "system_prompt": "p", "llm_config": {"model": "m"}});
    for (field, value, hint) in [
        ("llm_config", json!({}), "model"),
        ("llm_config", json!({"model": ""}), "model"),
        (
            "llm_config",
            json!({"model": "m", "messages": []}),
            "messages",
        ),
        (
            "payload_schema",
            json!({"type": "no-such-type"}),
            "payload_schema",
        ),
        ("name", json!(""), "name"),
    ] {
        let mut body = base.clone();
        body[field] = value;
        let e = assert_error(app.create_agent_with(&key, body).await, 400).await;
        assert!(
            e["message"].as_str().unwrap().contains(hint),
            "{field}: {e}"
        );
    }
    let mut missing = base.clone();
    missing.as_object_mut().unwrap().remove("system_prompt");
    assert_error(app.create_agent_with(&key, missing).await, 400).await;
    assert_eq!(
        app.all_events().await.len(),
        0,
        "nothing was recorded for rejected agents"
    );
}
