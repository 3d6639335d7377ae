//! Every way a webhook can be refused: the status, the JSON error, and that nothing
//! was stored — on SQLite and on PostgreSQL.

use crate::support;

use serde_json::json;
use support::app::{Backend, TestApp, assert_error, github_signature, spawn_app_with};

on_both_backends!(every_rejection_has_its_status_and_json_error_and_stores_nothing);

const LIMIT: usize = 2048;

async fn expect_rejected(
    app: &TestApp,
    r: reqwest::Response,
    status: u16,
    code: &str,
) -> serde_json::Value {
    let error = assert_error(r, status).await;
    assert_eq!(error["code"], code, "{error}");
    assert_eq!(
        app.execution_count().await,
        0,
        "a rejected webhook ({code}) stored an execution"
    );
    error
}

async fn every_rejection_has_its_status_and_json_error_and_stores_nothing(backend: Backend) {
    let limit = LIMIT.to_string();
    let Some(app) =
        spawn_app_with(backend, "rejections", &[("HOOKRUN_MAX_BODY_BYTES", &limit)]).await
    else {
        return;
    };
    let key = app.create_tenant("acme").await;
    let schema = json!({
        "type": "object",
        "required": ["ticket_id", "priority"],
        "properties": {"ticket_id": {"type": "string"}, "priority": {"enum": ["low", "high"]}},
    });
    let agent = app.create_agent(&key, Some(schema)).await;
    let valid = br#"{"ticket_id":"TKT-1","priority":"low"}"#;
    let json_ct = ("Content-Type", "application/json");
    let signed = |body: &[u8]| github_signature(&agent.secret, body);

    // 401: no signature, a wrong one, a signature over re-serialized JSON.
    let r = app.post_webhook(&agent.id, valid, &[json_ct]).await;
    let e = expect_rejected(&app, r, 401, "invalid_signature").await;
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("X-Hub-Signature-256"),
        "{e}"
    );
    let r = app
        .post_webhook(
            &agent.id,
            valid,
            &[json_ct, ("X-Hub-Signature-256", &signed(b"{}"))],
        )
        .await;
    let e = expect_rejected(&app, r, 401, "invalid_signature").await;
    assert!(
        e["message"].as_str().unwrap().contains("raw"),
        "hint that the raw body is signed: {e}"
    );
    let reserialized = br#"{"ticket_id": "TKT-1", "priority": "low"}"#;
    let r = app
        .post_webhook(
            &agent.id,
            reserialized,
            &[json_ct, ("X-Hub-Signature-256", &signed(valid))],
        )
        .await;
    expect_rejected(&app, r, 401, "invalid_signature").await;
    let sha1 = signed(valid).replace("sha256=", "sha1=");
    let r = app
        .post_webhook(&agent.id, valid, &[json_ct, ("X-Hub-Signature-256", &sha1)])
        .await;
    expect_rejected(&app, r, 401, "invalid_signature").await;

    // 404: unknown agent, malformed agent id.
    let r = app
        .post_webhook(&uuid::Uuid::new_v4().to_string(), valid, &[json_ct])
        .await;
    expect_rejected(&app, r, 404, "not_found").await;
    let r = app.post_webhook("not-a-uuid", valid, &[json_ct]).await;
    expect_rejected(&app, r, 404, "not_found").await;

    // 415: not JSON.
    let r = app
        .post_webhook(
            &agent.id,
            b"a=b",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("X-Hub-Signature-256", &signed(b"a=b")),
            ],
        )
        .await;
    expect_rejected(&app, r, 415, "unsupported_media_type").await;

    // 400: malformed JSON (signed correctly), and JSON nested too deep.
    let broken = br#"{"ticket_id": "#;
    let r = app
        .post_webhook(
            &agent.id,
            broken,
            &[json_ct, ("X-Hub-Signature-256", &signed(broken))],
        )
        .await;
    expect_rejected(&app, r, 400, "invalid_json").await;
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let r = app
        .post_webhook(
            &agent.id,
            deep.as_bytes(),
            &[json_ct, ("X-Hub-Signature-256", &signed(deep.as_bytes()))],
        )
        .await;
    expect_rejected(&app, r, 400, "invalid_json").await;

    // 422: schema violations, every one listed.
    let wrong = br#"{"priority":"urgent"}"#;
    let r = app
        .post_webhook(
            &agent.id,
            wrong,
            &[json_ct, ("X-Hub-Signature-256", &signed(wrong))],
        )
        .await;
    let e = expect_rejected(&app, r, 422, "schema_violation").await;
    let violations = e["violations"].as_array().expect("violations list");
    assert_eq!(violations.len(), 2, "{e}");
    assert!(
        violations
            .iter()
            .all(|v| v["message"].is_string() && v["path"].is_string())
    );

    // 413: one byte over the limit; exactly the limit is fine.
    let over = vec![b' '; LIMIT + 1];
    let r = app
        .post_webhook(
            &agent.id,
            &over,
            &[json_ct, ("X-Hub-Signature-256", &signed(&over))],
        )
        .await;
    expect_rejected(&app, r, 413, "payload_too_large").await;
    let mut at_limit = valid.to_vec();
    at_limit.resize(LIMIT, b' ');
    let r = app
        .post_webhook(
            &agent.id,
            &at_limit,
            &[
                json_ct,
                ("X-Hub-Signature-256", &signed(&at_limit)),
                ("X-GitHub-Delivery", "at-limit"),
            ],
        )
        .await;
    assert_eq!(r.status(), 202, "a body of exactly the limit is accepted");

    // 409: a paused agent.
    let r = app
        .client
        .patch(app.url(&format!("/api/agents/{}", agent.id)))
        .bearer_auth(&key)
        .json(&json!({"status": "paused"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let before = app.execution_count().await;
    let r = app
        .post_webhook(
            &agent.id,
            valid,
            &[json_ct, ("X-Hub-Signature-256", &signed(valid))],
        )
        .await;
    let e = assert_error(r, 409).await;
    assert_eq!(e["code"], "agent_not_active");
    assert_eq!(app.execution_count().await, before);
}
