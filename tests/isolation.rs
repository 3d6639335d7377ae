//! Tenant API keys and isolation through the real server, on SQLite and PostgreSQL:
//! keys are issued and revoked by the admin only, a revoked key is a 401, and every
//! /api route hides other tenants' resources (404) and refuses a missing, wrong,
//! revoked or admin credential where a tenant key is needed (401).

use crate::support;

use reqwest::Method;
use serde_json::{Value, json};
use support::app::{ADMIN_TOKEN, Backend, TestApp, assert_error, spawn_app};

on_both_backends!(
    the_admin_issues_lists_and_revokes_tenant_keys,
    every_api_route_hides_other_tenants_and_requires_a_valid_key,
);

/// How a request authenticates.
#[derive(Clone, Copy, Debug)]
enum Auth<'a> {
    None,
    Bearer(&'a str),
    Raw(&'a str),
}

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    auth: Auth<'_>,
    body: Option<&Value>,
) -> reqwest::Response {
    let mut r = app.client.request(method, app.url(path));
    match auth {
        Auth::None => {}
        Auth::Bearer(token) => r = r.bearer_auth(token),
        Auth::Raw(header) => r = r.header("Authorization", header),
    }
    if let Some(body) = body {
        r = r.json(body);
    }
    r.send().await.unwrap()
}

async fn create_key(app: &TestApp, tenant: &str) -> (String, String) {
    let r = call(
        app,
        Method::POST,
        &format!("/api/tenants/{tenant}/keys"),
        Auth::Bearer(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["tenant_id"], tenant);
    (
        v["key_id"].as_str().unwrap().to_owned(),
        v["api_key"].as_str().unwrap().to_owned(),
    )
}

async fn revoke(app: &TestApp, tenant: &str, key_id: &str, auth: Auth<'_>) -> reqwest::Response {
    let path = format!("/api/tenants/{tenant}/keys/{key_id}");
    call(app, Method::DELETE, &path, auth, None).await
}

async fn the_admin_issues_lists_and_revokes_tenant_keys(backend: Backend) {
    let Some(app) = spawn_app(backend, "tenant_keys").await else {
        return;
    };
    let (first_key, agent) = app.tenant_with_agent("acme").await;
    app.create_tenant("other").await;
    let agent_path = format!("/api/agents/{}", agent.id);
    let (key_id, second_key) = create_key(&app, "acme").await;
    assert!(second_key.starts_with("hr_") && second_key != first_key);
    assert_eq!(app.get(&second_key, &agent_path).await.status(), 200);

    let r = call(
        &app,
        Method::GET,
        "/api/tenants/acme/keys",
        Auth::Bearer(ADMIN_TOKEN),
        None,
    )
    .await;
    let listed: Value = r.json().await.unwrap();
    let keys = listed["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    let text = listed.to_string();
    assert!(
        !text.contains(&first_key) && !text.contains(&second_key),
        "keys are never listed"
    );
    assert!(keys.iter().all(|k| k["revoked_at"].is_null()));

    // Only the admin revokes, only the owning tenant's key, and only existing ones.
    for auth in [Auth::None, Auth::Bearer(&first_key), Auth::Bearer("wrong")] {
        assert_error(revoke(&app, "acme", &key_id, auth).await, 401).await;
    }
    let e = assert_error(
        revoke(&app, "other", &key_id, Auth::Bearer(ADMIN_TOKEN)).await,
        404,
    )
    .await;
    assert_eq!(e["code"], "not_found");
    assert_error(
        revoke(&app, "nobody", &key_id, Auth::Bearer(ADMIN_TOKEN)).await,
        404,
    )
    .await;
    assert_error(
        revoke(&app, "acme", "no-such-key", Auth::Bearer(ADMIN_TOKEN)).await,
        404,
    )
    .await;
    assert_eq!(
        app.get(&second_key, &agent_path).await.status(),
        200,
        "still valid"
    );

    let r = revoke(&app, "acme", &key_id, Auth::Bearer(ADMIN_TOKEN)).await;
    assert_eq!(r.status(), 200);
    let e = assert_error(app.get(&second_key, &agent_path).await, 401).await;
    assert!(e["message"].as_str().unwrap().contains("revoked"), "{e}");
    assert_eq!(
        app.get(&first_key, &agent_path).await.status(),
        200,
        "other keys keep working"
    );
    // Revoking again is harmless and keeps the key revoked.
    assert_eq!(
        revoke(&app, "acme", &key_id, Auth::Bearer(ADMIN_TOKEN))
            .await
            .status(),
        200
    );
    let listed: Value = call(
        &app,
        Method::GET,
        "/api/tenants/acme/keys",
        Auth::Bearer(ADMIN_TOKEN),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    let revoked: Vec<&Value> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["key_id"] == key_id.as_str())
        .collect();
    assert!(revoked[0]["revoked_at"].is_string(), "{listed}");
    let r = call(
        &app,
        Method::POST,
        "/api/tenants/nobody/keys",
        Auth::Bearer(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_error(r, 404).await;

    // The CLI does the same for operators without the admin API.
    let out = app.cli_ok(&["tenant", "create-key", "acme"], &[]).await;
    let issued: Value = serde_json::from_str(&out).unwrap();
    let cli_key = issued["api_key"].as_str().unwrap();
    assert_eq!(app.get(cli_key, &agent_path).await.status(), 200);
    app.cli_ok(
        &[
            "tenant",
            "revoke-key",
            "acme",
            issued["key_id"].as_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_error(app.get(cli_key, &agent_path).await, 401).await;
}

async fn every_api_route_hides_other_tenants_and_requires_a_valid_key(backend: Backend) {
    let Some(app) = spawn_app(backend, "isolation_matrix").await else {
        return;
    };
    let (key_a, agent) = app.tenant_with_agent("tenant-a").await;
    let key_b = app.create_tenant("tenant-b").await;
    let (revoked_id, revoked_a) = create_key(&app, "tenant-a").await;
    revoke(&app, "tenant-a", &revoked_id, Auth::Bearer(ADMIN_TOKEN)).await;
    let r = app.send_signed(&agent, b"{}", "d1").await;
    let execution = r.json::<Value>().await.unwrap()["execution_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_terminal(&key_a, &execution).await;
    let secret_before = agent.secret.clone();

    let a = &agent.id;
    let e = &execution;
    let paused = json!({"status": "paused"});
    let llm_key = json!({"api_key": "sk-intruder"});
    let rotate = json!({"previous_expires_in_s": 0});
    // Every tenant route that names a resource, and what the owner gets.
    let owned: Vec<(Method, String, Option<&Value>, u16)> = vec![
        (Method::GET, format!("/api/agents/{a}"), None, 200),
        (
            Method::GET,
            format!("/api/agents/{a}/webhook-secret"),
            None,
            200,
        ),
        (
            Method::GET,
            format!("/api/agents/{a}/deliveries"),
            None,
            200,
        ),
        (
            Method::GET,
            format!("/api/agents/{a}/executions"),
            None,
            200,
        ),
        (Method::GET, format!("/api/agents/{a}/events"), None, 200),
        (
            Method::GET,
            format!("/api/agents/{a}/stats/daily"),
            None,
            200,
        ),
        (Method::GET, format!("/api/executions/{e}"), None, 200),
        (
            Method::GET,
            format!("/api/executions/{e}/events"),
            None,
            200,
        ),
        (
            Method::PATCH,
            format!("/api/agents/{a}"),
            Some(&paused),
            200,
        ),
        (
            Method::PUT,
            format!("/api/agents/{a}/llm-key"),
            Some(&llm_key),
            200,
        ),
        (
            Method::POST,
            format!("/api/agents/{a}/webhook-secret/rotate"),
            Some(&rotate),
            200,
        ),
    ];
    let unauthenticated = [
        Auth::None,
        Auth::Bearer("hr_wrong"),
        Auth::Raw("Basic dGVuYW50LWE6eA=="),
        Auth::Bearer(&revoked_a),
        Auth::Bearer(ADMIN_TOKEN),
    ];
    for (method, path, body, _) in &owned {
        for auth in unauthenticated {
            let r = call(&app, method.clone(), path, auth, *body).await;
            let err = assert_error(r, 401).await;
            assert_eq!(err["code"], "unauthorized", "{method} {path} {auth:?}");
        }
        let r = call(&app, method.clone(), path, Auth::Bearer(&key_b), *body).await;
        let err = assert_error(r, 404).await;
        assert_eq!(err["code"], "not_found", "{method} {path} as tenant B");
    }
    // Nothing tenant B tried took effect.
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
    let v: Value = app
        .get(&key_a, &format!("/api/agents/{a}/webhook-secret"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["webhook_secret"], secret_before.as_str());
    let agent_events = app.stream(&format!("agent-{a}")).await;
    assert_eq!(
        agent_events.len(),
        1,
        "only AgentRegistered: {agent_events:?}"
    );
    // The owner gets each one (mutations last, so the reads above saw the original).
    for (method, path, body, status) in &owned {
        let r = call(&app, method.clone(), path, Auth::Bearer(&key_a), *body).await;
        assert_eq!(r.status(), *status, "{method} {path} as the owner");
    }

    // Creating an agent needs a valid tenant key, too.
    let new_agent = json!({"name": "n", "system_prompt": "p", "llm_config": {"model": "m"}});
    for auth in unauthenticated {
        let r = call(&app, Method::POST, "/api/agents", auth, Some(&new_agent)).await;
        assert_error(r, 401).await;
    }
    // Admin routes: a tenant key is not an admin token.
    let tenant = json!({"tenant_id": "tenant-c"});
    let admin_routes: Vec<(Method, String, Option<&Value>)> = vec![
        (Method::POST, "/api/tenants".into(), Some(&tenant)),
        (Method::POST, "/api/tenants/tenant-a/keys".into(), None),
        (Method::GET, "/api/tenants/tenant-a/keys".into(), None),
        (
            Method::DELETE,
            format!("/api/tenants/tenant-a/keys/{revoked_id}"),
            None,
        ),
    ];
    for (method, path, body) in &admin_routes {
        for auth in [Auth::None, Auth::Bearer(&key_a), Auth::Bearer("wrong")] {
            let r = call(&app, method.clone(), path, auth, *body).await;
            assert_error(r, 401).await;
        }
        let r = call(&app, method.clone(), path, Auth::Bearer(ADMIN_TOKEN), *body).await;
        assert!(
            r.status().is_success(),
            "{method} {path} as admin: {}",
            r.status()
        );
    }
    // Listing agents shows only the caller's own.
    let listed: Value = call(&app, Method::GET, "/api/agents", Auth::Bearer(&key_b), None)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        !listed.to_string().contains(a.as_str()),
        "tenant B lists tenant A's agent: {listed}"
    );
    // An unknown /api route is a JSON 404 as well.
    let r = call(
        &app,
        Method::GET,
        "/api/no-such-route",
        Auth::Bearer(&key_a),
        None,
    )
    .await;
    assert_error(r, 404).await;
}
