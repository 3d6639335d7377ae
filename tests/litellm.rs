//! End to end against a real LiteLLM proxy (`../shared/peers/litellm/start.sh`).
//! Runs when `HOOKRUN_TEST_LITELLM_URL` is set (`.ci/run` sets it); otherwise prints
//! a `SKIPPED litellm` line, which CI treats as a failure.

use crate::support;

use serde_json::{Value, json};
use support::app::{Backend, spawn_app_with};

const MOCK_RESPONSE: &str = "Triage: database is slow; check indexes.";

#[actix_web::test]
async fn a_webhook_runs_through_a_real_litellm_proxy() {
    let Ok(url) = std::env::var("HOOKRUN_TEST_LITELLM_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "the LiteLLM test may not be skipped in CI"
        );
        println!("SKIPPED litellm: set HOOKRUN_TEST_LITELLM_URL (see .ci/run)");
        return;
    };
    let master =
        std::env::var("HOOKRUN_TEST_LITELLM_KEY").unwrap_or_else(|_| "sk-master-test".into());
    let extra = [
        ("HOOKRUN_LLM_BASE_URL", url.as_str()),
        ("HOOKRUN_LLM_API_KEY", master.as_str()),
    ];
    let app = spawn_app_with(Backend::Sqlite, "litellm", &extra)
        .await
        .expect("sqlite app");
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
