//! End to end against a real LiteLLM proxy (`../shared/peers/litellm/start.sh`), and
//! against the same proxy served over HTTP/2 (`scripts/litellm-h2.sh`). Each test runs
//! when its URL variable is set (`.ci/run` sets both); otherwise it prints a `SKIPPED
//! litellm` line, which CI treats as a failure.

use crate::support;

use serde_json::{Value, json};
use support::app::{Backend, TestApp, spawn_app_with};

const MOCK_RESPONSE: &str = "Triage: database is slow; check indexes.";

/// An app (SQLite) whose gateway is the proxy at `var`'s URL, its master key the
/// platform key, with `more` settings; `None` after saying the test was skipped
/// (never in CI).
async fn proxy_app(var: &str, test: &str, more: &[(&str, &str)]) -> Option<TestApp> {
    let Ok(url) = std::env::var(var) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "the LiteLLM tests may not be skipped in CI ({var} is not set)"
        );
        println!("SKIPPED litellm: set {var} (see .ci/run)");
        return None;
    };
    let master =
        std::env::var("HOOKRUN_TEST_LITELLM_KEY").unwrap_or_else(|_| "sk-master-test".into());
    let mut extra = vec![
        ("HOOKRUN_LLM_BASE_URL", url.as_str()),
        ("HOOKRUN_LLM_API_KEY", master.as_str()),
    ];
    extra.extend_from_slice(more);
    let app = spawn_app_with(Backend::Sqlite, test, &extra).await;
    Some(app.expect("sqlite app"))
}

#[actix_web::test]
async fn a_webhook_runs_through_a_real_litellm_proxy() {
    let Some(app) = proxy_app("HOOKRUN_TEST_LITELLM_URL", "litellm", &[]).await else {
        return;
    };
    let (key, agent) = app.tenant_with_agent("acme").await;

    // Platform key, a model the proxy knows: the proxy's mock answer and real token counts.
    let r = app
        .send_signed(
            &agent,
            br#"{"ticket_id":"TKT-123","description":"Database is slow"}"#,
            "ll-1",
        )
        .await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["execution_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let row = app.wait_terminal(&key, &id).await;
    assert_eq!(row["status"], "succeeded", "{row}");
    assert_eq!(row["output"], MOCK_RESPONSE);
    assert_eq!(row["key_source"], "platform");
    assert!(row["total_tokens"].as_i64().unwrap() > 0, "{row}");

    // A model the proxy does not serve: failed, with the proxy's own message.
    let r = app
        .create_agent_with(
            &key,
            json!({"name": "x", "system_prompt": "p", "llm_config": {"model": "no-such-model"}}),
        )
        .await;
    let v: Value = r.json().await.unwrap();
    let bad_model = support::app::Agent {
        id: v["agent_id"].as_str().unwrap().into(),
        secret: v["webhook_secret"].as_str().unwrap().into(),
    };
    let r = app.send_signed(&bad_model, b"{}", "ll-2").await;
    let id = r.json::<Value>().await.unwrap()["execution_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let row = app.wait_terminal(&key, &id).await;
    assert_eq!(row["status"], "failed", "{row}");
    assert!(
        row["error"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("model"),
        "{row}"
    );

    // BYOK with a key the proxy does not know: the tenant key was used, and the proxy's
    // refusal (a 4xx with its own message) is reported.
    let r = app
        .client
        .put(app.url(&format!("/api/agents/{}/llm-key", agent.id)))
        .bearer_auth(&key)
        .json(&json!({"api_key": "sk-not-a-valid-proxy-key"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app.send_signed(&agent, b"{}", "ll-3").await;
    let id = r.json::<Value>().await.unwrap()["execution_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let row = app.wait_terminal(&key, &id).await;
    assert_eq!(
        (row["status"].as_str(), row["key_source"].as_str()),
        (Some("failed"), Some("tenant")),
        "{row}"
    );
    assert!(
        row["error"]
            .as_str()
            .unwrap()
            .starts_with("LLM gateway answered 4"),
        "{row}"
    );
}

/// LiteLLM served by Granian (`litellm --run_granian`) speaks HTTP/2 by prior knowledge,
/// so a deployment that calls it with `HOOKRUN_LLM_HTTP=2` holds one connection for all
/// its calls in flight instead of a socket each. hookrun then speaks nothing but
/// HTTP/2: a proxy that did not would fail every call.
#[actix_web::test]
async fn webhooks_run_through_a_real_litellm_proxy_over_http2() {
    let more = [
        ("HOOKRUN_LLM_HTTP", "2"),
        ("HOOKRUN_AGENT_CONCURRENCY", "8"),
    ];
    let Some(app) = proxy_app("HOOKRUN_TEST_LITELLM_H2_URL", "litellm-h2", &more).await else {
        return;
    };
    let (key, agent) = app.tenant_with_agent("acme").await;

    // Eight calls, as many as eight running at once, all over the one HTTP/2 connection
    // (whether they overlap depends on the proxy's speed; gateway_http2 tests that).
    let ids = app.send_accepted(&agent, 8, "h2").await;
    for id in ids {
        let row = app.wait_terminal(&key, &id).await;
        assert_eq!(row["status"], "succeeded", "{row}");
        assert_eq!(row["output"], MOCK_RESPONSE);
        assert!(row["total_tokens"].as_i64().unwrap() > 0, "{row}");
    }
}
