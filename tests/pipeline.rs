//! The webhook-to-execution pipeline through the real HTTP server, on SQLite and on
//! PostgreSQL: happy path, keys, gateway failures, duplicates and backpressure.

use crate::support;

use serde_json::{Value, json};
use support::app::{
    Backend, GATEWAY_OUTPUT, PLATFORM_KEY, TestApp, assert_error, completion, spawn_app,
    spawn_app_with,
};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, ResponseTemplate};

on_both_backends!(
    a_signed_webhook_runs_the_agent_and_the_read_model_shows_the_result,
    the_tenant_key_reaches_the_gateway_when_set_and_the_platform_key_otherwise,
    a_gateway_error_fails_the_execution_with_the_gateway_message,
    an_unreachable_gateway_fails_the_execution_naming_the_url,
    a_repeated_delivery_is_a_duplicate_with_the_same_execution_id,
    the_alias_path_used_by_existing_senders_works,
    a_full_agent_queue_answers_429_and_stores_nothing,
    queued_executions_run_as_each_one_before_gives_its_slot_back,
);

async fn app(backend: Backend, test: &str) -> Option<TestApp> {
    spawn_app(backend, test).await
}

async fn accepted_execution_id(r: reqwest::Response) -> String {
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "queued");
    assert!(v["message"].is_string());
    v["execution_id"].as_str().unwrap().to_owned()
}

async fn a_signed_webhook_runs_the_agent_and_the_read_model_shows_the_result(backend: Backend) {
    let Some(app) = app(backend, "happy_path").await else {
        return;
    };
    let (key, agent) = app.tenant_with_agent("acme").await;
    let body = br#"{"ticket_id":"TKT-123","description":"Database is slow"}"#;
    let id = accepted_execution_id(app.send_signed(&agent, body, "delivery-1").await).await;

    let row = app.wait_terminal(&key, &id).await;
    assert_eq!(row["status"], "succeeded", "{row}");
    assert_eq!(row["output"], GATEWAY_OUTPUT);
    assert_eq!(
        (
            row["prompt_tokens"].as_i64(),
            row["completion_tokens"].as_i64(),
            row["total_tokens"].as_i64()
        ),
        (Some(11), Some(7), Some(18))
    );
    assert_eq!(row["model"], "gpt-4o-mini");
    assert_eq!(row["key_source"], "platform");
    assert_eq!(row["attempts"], 1);
    assert_eq!(row["agent_id"], agent.id.as_str());
    assert_eq!(row["tenant_id"], "acme");
    for field in ["queued_at", "started_at", "completed_at"] {
        assert!(row[field].is_string(), "{field} in {row}");
    }
    assert!(row["duration_ms"].as_i64().unwrap() >= row["llm_latency_ms"].as_i64().unwrap());

    let events = app.execution_events(&key, &id).await;
    let types = support::app::event_types(&events);
    assert_eq!(
        types,
        [
            "ExecutionQueued",
            "ExecutionStarted",
            "LlmCalled",
            "ExecutionSucceeded"
        ]
    );
    let queued = &events[0];
    assert_eq!(queued["data"]["payload"]["ticket_id"], "TKT-123");
    assert_eq!(queued["metadata"]["correlation_id"], "delivery-1");
    assert_eq!(queued["metadata"]["tenant_id"], "acme");
    // A webhook's event id is time-ordered (UUIDv7): the store's event-id index then
    // grows at its end rather than taking a write on another page per webhook.
    let queued_id: uuid::Uuid = queued["event_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(queued_id.get_version_num(), 7, "{queued}");
    // The later steps' ids are deterministic, so that a retried append is known as one,
    // and carry the time the execution was queued: they too land near the index's end.
    let queued_at: chrono::DateTime<chrono::Utc> = queued["data"]["queued_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    for event in &events[1..] {
        let id: uuid::Uuid = event["event_id"].as_str().unwrap().parse().unwrap();
        assert_eq!(id.get_version_num(), 7, "{event}");
        let (secs, nanos) = id.get_timestamp().unwrap().to_unix();
        let millis = secs as i64 * 1000 + i64::from(nanos / 1_000_000);
        assert_eq!(millis, queued_at.timestamp_millis(), "{event}");
    }

    // The gateway got the system prompt and the payload as compact JSON.
    let requests = app.gateway.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    let sent: Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(sent["model"], "gpt-4o-mini");
    assert_eq!(sent["temperature"], 0.1);
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "You triage support tickets."})
    );
    assert_eq!(
        sent["messages"][1]["content"],
        r#"{"description":"Database is slow","ticket_id":"TKT-123"}"#
    );
}

async fn the_tenant_key_reaches_the_gateway_when_set_and_the_platform_key_otherwise(
    backend: Backend,
) {
    let Some(app) = app(backend, "byok").await else {
        return;
    };
    let (key, agent) = app.tenant_with_agent("acme").await;
    let platform = accepted_execution_id(app.send_signed(&agent, b"{}", "d-platform").await).await;
    assert_eq!(
        app.wait_terminal(&key, &platform).await["key_source"],
        "platform"
    );

    let r = app
        .client
        .put(app.url(&format!("/api/agents/{}/llm-key", agent.id)))
        .bearer_auth(&key)
        .json(&json!({"api_key": "sk-tenant-own"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let tenant = accepted_execution_id(app.send_signed(&agent, b"{}", "d-tenant").await).await;
    let row = app.wait_terminal(&key, &tenant).await;
    assert_eq!(
        (row["status"].as_str(), row["key_source"].as_str()),
        (Some("succeeded"), Some("tenant"))
    );

    let auth: Vec<String> = app
        .gateway
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            r.headers
                .get("authorization")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        auth,
        [
            format!("Bearer {PLATFORM_KEY}"),
            "Bearer sk-tenant-own".to_owned()
        ]
    );
}

async fn a_gateway_error_fails_the_execution_with_the_gateway_message(backend: Backend) {
    let Some(app) = app(backend, "gateway_400").await else {
        return;
    };
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", format!("Bearer {PLATFORM_KEY}").as_str()))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": {"message": "Invalid model name passed in model=nope", "type": "invalid_request_error", "code": "400"}
        })))
        .with_priority(1)
        .mount(&app.gateway)
        .await;
    let (key, agent) = app.tenant_with_agent("acme").await;
    let id = accepted_execution_id(app.send_signed(&agent, b"{}", "d1").await).await;
    let row = app.wait_terminal(&key, &id).await;
    assert_eq!(row["status"], "failed");
    assert!(
        row["error"]
            .as_str()
            .unwrap()
            .contains("Invalid model name passed in model=nope"),
        "{row}"
    );
    assert_eq!(row["output"], Value::Null);
    let events = app.execution_events(&key, &id).await;
    let types = support::app::event_types(&events);
    assert_eq!(
        types,
        [
            "ExecutionQueued",
            "ExecutionStarted",
            "LlmCalled",
            "LlmCallFailed",
            "ExecutionFailed"
        ]
    );
}

async fn an_unreachable_gateway_fails_the_execution_naming_the_url(backend: Backend) {
    // Port 1: nothing listens there, and no other test's server can be handed it (a
    // port that was free a moment ago could be, by the tests running beside this one).
    let url = "http://127.0.0.1:1".to_owned();
    assert!(
        std::net::TcpStream::connect("127.0.0.1:1").is_err(),
        "something listens on 127.0.0.1:1"
    );
    let Some(app) =
        spawn_app_with(backend, "gateway_down", &[("HOOKRUN_LLM_BASE_URL", &url)]).await
    else {
        return;
    };
    let key = app.create_tenant("acme").await;
    let retry = json!({"max_attempts": 2, "base_delay_ms": 5, "max_delay_ms": 10});
    let body =
        json!({"name": "n", "system_prompt": "p", "llm_config": {"model": "m", "retry": retry}});
    let v: Value = app
        .create_agent_with(&key, body)
        .await
        .json()
        .await
        .unwrap();
    let agent = support::app::Agent {
        id: v["agent_id"].as_str().unwrap().into(),
        secret: v["webhook_secret"].as_str().unwrap().into(),
    };
    let id = accepted_execution_id(app.send_signed(&agent, b"{}", "d1").await).await;
    let row = app.wait_terminal(&key, &id).await;
    assert_eq!(row["status"], "failed");
    let error = row["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("{url}/v1/chat/completions")),
        "{error}"
    );
    assert_eq!(row["error_kind"], "connect");
    assert_eq!(row["attempts"], 2, "a connection failure is retried");
}

async fn a_repeated_delivery_is_a_duplicate_with_the_same_execution_id(backend: Backend) {
    let Some(app) = app(backend, "duplicate").await else {
        return;
    };
    let (key, agent) = app.tenant_with_agent("acme").await;
    let first = accepted_execution_id(app.send_signed(&agent, b"{}", "same").await).await;
    let again = app.send_signed(&agent, b"{}", "same").await;
    assert_eq!(again.status(), 200);
    let v: Value = again.json().await.unwrap();
    assert_eq!(
        (v["status"].as_str(), v["execution_id"].as_str()),
        (Some("duplicate"), Some(first.as_str()))
    );
    app.wait_terminal(&key, &first).await;
    assert_eq!(app.execution_count().await, 1);
    assert_eq!(app.gateway.received_requests().await.unwrap().len(), 1);
}

async fn the_alias_path_used_by_existing_senders_works(backend: Backend) {
    let Some(app) = app(backend, "alias").await else {
        return;
    };
    let (key, agent) = app.tenant_with_agent("acme").await;
    let body = br#"{"ticket_id":"TKT-9"}"#;
    let sig = support::app::github_signature(&agent.secret, body);
    let r = app
        .client
        .post(app.url(&format!("/webhook/agents/{}/webhook", agent.id)))
        .header("Content-Type", "application/json")
        .header("X-Hub-Signature-256", sig)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let id = accepted_execution_id(r).await;
    assert_eq!(app.wait_terminal(&key, &id).await["status"], "succeeded");
}

async fn a_full_agent_queue_answers_429_and_stores_nothing(backend: Backend) {
    let extra = [
        ("HOOKRUN_AGENT_QUEUE", "1"),
        ("HOOKRUN_AGENT_CONCURRENCY", "1"),
    ];
    let Some(app) = spawn_app_with(backend, "backpressure", &extra).await else {
        return;
    };
    // A slow gateway keeps the first execution in flight while the second arrives.
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(completion("late"))
                .set_delay(std::time::Duration::from_secs(2)),
        )
        .with_priority(1)
        .mount(&app.gateway)
        .await;
    let (key, agent) = app.tenant_with_agent("acme").await;
    let first = accepted_execution_id(app.send_signed(&agent, b"{}", "first").await).await;
    let busy = app.send_signed(&agent, b"{}", "second").await;
    assert_eq!(
        busy.headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    let error = assert_error(busy, 429).await;
    assert_eq!(error["code"], "agent_busy");
    assert_eq!(app.wait_terminal(&key, &first).await["status"], "succeeded");
    assert_eq!(
        app.execution_count().await,
        1,
        "the rejected delivery stored nothing"
    );
}

async fn queued_executions_run_as_each_one_before_gives_its_slot_back(backend: Backend) {
    // One slot: the second and third executions can only start once the one before
    // them has ended and handed the slot back to the agent.
    let extra = [("HOOKRUN_AGENT_CONCURRENCY", "1")];
    let Some(app) = spawn_app_with(backend, "slots", &extra).await else {
        return;
    };
    let (key, agent) = app.tenant_with_agent("acme").await;
    for id in &app.send_accepted(&agent, 3, "slot").await {
        assert_eq!(app.wait_terminal(&key, id).await["status"], "succeeded");
    }
}
