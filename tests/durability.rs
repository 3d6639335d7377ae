//! Durable execution: retries with backoff, recovery of executions whose node died,
//! the global in-flight limit, and a store outage — on SQLite and PostgreSQL.

use crate::support;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use support::app::{
    Agent, Backend, TestApp, assert_error, completion, event_types, spawn_app, spawn_app_with,
};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

on_both_backends!(
    transient_gateway_failures_are_retried_until_the_call_succeeds,
    retries_stop_after_max_attempts_and_the_last_error_is_kept,
    retry_after_from_the_gateway_is_honoured,
    an_execution_whose_node_died_is_resumed_without_repeating_recorded_steps,
    a_full_node_answers_503_and_stores_nothing,
    an_execution_past_its_deadline_fails_with_deadline_exceeded,
);

async fn an_execution_past_its_deadline_fails_with_deadline_exceeded(backend: Backend) {
    let Some(app) = spawn_app_with(
        backend,
        "deadline",
        &[("HOOKRUN_EXECUTION_DEADLINE_S", "1")],
    )
    .await
    else {
        return;
    };
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(completion("too late"))
                .set_delay(std::time::Duration::from_secs(5)),
        )
        .with_priority(1)
        .mount(&app.gateway)
        .await;
    let (key, agent) = app.tenant_with_agent("acme").await;
    let id = accepted(app.send_signed(&agent, b"{}", "d1").await).await;
    let row = app.wait_terminal(&key, &id).await;
    assert_eq!(
        (row["status"].as_str(), row["error_kind"].as_str()),
        (Some("failed"), Some("deadline_exceeded")),
        "{row}"
    );
    assert!(
        row["duration_ms"].as_i64().unwrap() < 4_000,
        "the call was cut at the deadline: {row}"
    );
}

/// An agent whose retries wait milliseconds, not seconds.
async fn fast_retry_agent(app: &TestApp, key: &str, max_attempts: u32) -> Agent {
    let r = app
        .create_agent_with(key, json!({
            "name": "retrying",
            "system_prompt": "p",
            "llm_config": {"model": "m", "retry": {"max_attempts": max_attempts, "base_delay_ms": 5, "max_delay_ms": 20}},
        }))
        .await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    Agent {
        id: v["agent_id"].as_str().unwrap().into(),
        secret: v["webhook_secret"].as_str().unwrap().into(),
    }
}

async fn accepted(r: reqwest::Response) -> String {
    assert_eq!(r.status(), 202);
    r.json::<Value>().await.unwrap()["execution_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn mount_failures(app: &TestApp, status: u16, times: u64, retry_after: Option<&str>) {
    let mut response = ResponseTemplate::new(status)
        .set_body_json(json!({"error": {"message": format!("upstream said {status}")}}));
    if let Some(after) = retry_after {
        response = response.insert_header("Retry-After", after);
    }
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(response)
        .up_to_n_times(times)
        .with_priority(1)
        .mount(&app.gateway)
        .await;
}

async fn transient_gateway_failures_are_retried_until_the_call_succeeds(backend: Backend) {
    let Some(app) = spawn_app(backend, "retry_success").await else {
        return;
    };
    let key = app.create_tenant("acme").await;
    let agent = fast_retry_agent(&app, &key, 5).await;
    mount_failures(&app, 503, 2, None).await;
    let id = accepted(app.send_signed(&agent, b"{}", "d1").await).await;
    let row = app.wait_terminal(&key, &id).await;
    assert_eq!(
        (row["status"].as_str(), row["attempts"].as_i64()),
        (Some("succeeded"), Some(3)),
        "{row}"
    );
    let events = app.execution_events(&key, &id).await;
    assert_eq!(
        event_types(&events),
        [
            "ExecutionQueued",
            "ExecutionStarted",
            "LlmCalled",
            "LlmCallFailed",
            "LlmCalled",
            "LlmCallFailed",
            "LlmCalled",
            "ExecutionSucceeded"
        ]
    );
    let failed = &events[3]["data"];
    assert_eq!(
        (
            failed["attempt"].as_i64(),
            failed["status"].as_i64(),
            failed["retryable"].as_bool()
        ),
        (Some(1), Some(503), Some(true))
    );
    assert!(failed["retry_at"].is_string());
    assert_eq!(app.gateway.received_requests().await.unwrap().len(), 3);
}

async fn retries_stop_after_max_attempts_and_the_last_error_is_kept(backend: Backend) {
    let Some(app) = spawn_app(backend, "retry_exhausted").await else {
        return;
    };
    let key = app.create_tenant("acme").await;
    let agent = fast_retry_agent(&app, &key, 3).await;
    mount_failures(&app, 502, 100, None).await;
    let id = accepted(app.send_signed(&agent, b"{}", "d1").await).await;
    let row = app.wait_terminal(&key, &id).await;
    assert_eq!(
        (row["status"].as_str(), row["attempts"].as_i64()),
        (Some("failed"), Some(3)),
        "{row}"
    );
    assert_eq!(row["error_kind"], "server_error");
    assert!(
        row["error"].as_str().unwrap().contains("upstream said 502"),
        "{row}"
    );
    let events = app.execution_events(&key, &id).await;
    let last_failure = events
        .iter()
        .rev()
        .find(|e| e["type"] == "LlmCallFailed")
        .unwrap();
    assert_eq!(
        last_failure["data"]["retryable"], false,
        "the last attempt says no retry follows"
    );
    assert_eq!(app.gateway.received_requests().await.unwrap().len(), 3);
}

async fn retry_after_from_the_gateway_is_honoured(backend: Backend) {
    let Some(app) = spawn_app(backend, "retry_after").await else {
        return;
    };
    let key = app.create_tenant("acme").await;
    let agent = fast_retry_agent(&app, &key, 3).await;
    mount_failures(&app, 429, 1, Some("1")).await;
    let id = accepted(app.send_signed(&agent, b"{}", "d1").await).await;
    let row = app.wait_terminal(&key, &id).await;
    assert_eq!(row["status"], "succeeded");
    let events = app.execution_events(&key, &id).await;
    let at = |i: usize, field: &str| {
        events[i]["data"][field]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap()
    };
    assert_eq!(event_types(&events)[3], "LlmCallFailed");
    // The backoff alone would wait at most 20 ms; the gateway asked for 1 s.
    assert!(at(4, "called_at") - at(2, "called_at") >= chrono::Duration::milliseconds(1000));
}

/// Appends events directly, as a node that then died would have.
async fn append(
    app: &TestApp,
    stream: &str,
    revision: Option<u64>,
    event: Value,
    agent: &str,
    tenant: &str,
) {
    let meta = json!({
        "event_id": uuid::Uuid::new_v4(), "tenant_id": tenant, "agent_id": agent, "correlation_id": "dead",
        "causation_id": null, "occurred_at": Utc::now(), "schema_version": 1,
    });
    let new = hookrun::events::NewEvent {
        event_id: uuid::Uuid::new_v4(),
        event_type: event["type"].as_str().unwrap().to_owned(),
        data: event,
        metadata: meta,
    };
    let expected = match revision {
        None => hookrun::events::ExpectedVersion::NoStream,
        Some(r) => hookrun::events::ExpectedVersion::Exact(r),
    };
    app.state
        .store
        .append(stream, expected, vec![new])
        .await
        .unwrap();
}

async fn an_execution_whose_node_died_is_resumed_without_repeating_recorded_steps(
    backend: Backend,
) {
    let Some(app) = spawn_app(backend, "recovery").await else {
        return;
    };
    let (key, agent) = app.tenant_with_agent("acme").await;
    let now = Utc::now();
    // One execution only queued by a dead node; one claimed by it, mid-call when it died;
    // one it finished (must not be touched).
    let mut ids = Vec::new();
    for (i, stage) in ["queued", "calling", "done"].iter().enumerate() {
        let id = uuid::Uuid::new_v4();
        let stream = format!("execution-{id}");
        append(&app, &stream, None, json!({"type": "ExecutionQueued", "execution_id": id, "agent_id": agent.id, "tenant_id": "acme",
            "delivery_id": format!("dead-{i}"), "payload": {"stage": stage}, "queued_at": now, "node": "dead-node"}), &agent.id, "acme").await;
        if *stage != "queued" {
            append(
                &app,
                &stream,
                Some(0),
                json!({"type": "ExecutionStarted", "node": "dead-node", "attempt": 1,
                "lease_expires_at": now + chrono::Duration::minutes(10), "started_at": now}),
                &agent.id,
                "acme",
            )
            .await;
            append(
                &app,
                &stream,
                Some(1),
                json!({"type": "LlmCalled", "model": "gpt-4o-mini", "key_source": "platform",
                "attempt": 1, "called_at": now}),
                &agent.id,
                "acme",
            )
            .await;
        }
        if *stage == "done" {
            append(&app, &stream, Some(2), json!({"type": "ExecutionSucceeded", "output": "earlier answer", "prompt_tokens": 1,
                "completion_tokens": 1, "total_tokens": 2, "llm_latency_ms": 1, "duration_ms": 2, "completed_at": now}), &agent.id, "acme").await;
        }
        ids.push(id.to_string());
    }
    app.projector.catch_up().await.unwrap();
    app.sweeper.sweep_once().await.unwrap();

    let queued = app.wait_terminal(&key, &ids[0]).await;
    assert_eq!(
        (queued["status"].as_str(), queued["attempts"].as_i64()),
        (Some("succeeded"), Some(1)),
        "{queued}"
    );
    let calling = app.wait_terminal(&key, &ids[1]).await;
    assert_eq!(
        (calling["status"].as_str(), calling["attempts"].as_i64()),
        (Some("succeeded"), Some(2)),
        "{calling}"
    );
    let reclaim = &app.execution_events(&key, &ids[1]).await[3];
    assert_eq!(
        (
            reclaim["type"].as_str(),
            reclaim["data"]["attempt"].as_i64()
        ),
        (Some("ExecutionStarted"), Some(2))
    );
    let done = app.wait_terminal(&key, &ids[2]).await;
    assert_eq!(done["output"], "earlier answer");
    assert_eq!(
        app.execution_events(&key, &ids[2]).await.len(),
        4,
        "a finished execution is left alone"
    );
    // Exactly two gateway calls: the finished one was never asked again.
    let bodies: Vec<String> = app
        .gateway
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert!(bodies.iter().all(|b| !b.contains("done")));
}

async fn a_full_node_answers_503_and_stores_nothing(backend: Backend) {
    let Some(app) = spawn_app_with(backend, "overload", &[("HOOKRUN_MAX_IN_FLIGHT", "1")]).await
    else {
        return;
    };
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(completion("slow"))
                .set_delay(std::time::Duration::from_millis(1500)),
        )
        .with_priority(1)
        .mount(&app.gateway)
        .await;
    let key = app.create_tenant("acme").await;
    let a = app.create_agent(&key, None).await;
    let b = app.create_agent(&key, None).await;
    let first = accepted(app.send_signed(&a, b"{}", "first").await).await;
    let busy = app.send_signed(&b, b"{}", "second").await;
    assert!(busy.headers().get("retry-after").is_some(), "{busy:?}");
    assert_eq!(assert_error(busy, 503).await["code"], "overloaded");
    assert_eq!(app.wait_terminal(&key, &first).await["status"], "succeeded");
    assert_eq!(app.execution_count().await, 1);
    // With room again, the same delivery is accepted.
    accepted(app.send_signed(&b, b"{}", "second").await).await;
}

#[actix_web::test]
async fn postgres_outage_answers_503_and_service_resumes_by_itself() {
    let Some(app) = spawn_app(Backend::Postgres, "outage").await else {
        return;
    };
    let (_key, agent) = app.tenant_with_agent("acme").await;
    let admin_url = support::pg::admin_url();
    let db_name = match &app.state.db {
        hookrun::db::Db::Postgres(pool) => {
            pool.connect_options().get_database().unwrap().to_owned()
        }
        _ => unreachable!(),
    };
    let admin = sqlx::PgPool::connect(&admin_url).await.unwrap();
    let set_allowed = |allowed: bool| {
        sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE {db_name} WITH ALLOW_CONNECTIONS {allowed}"
        ))
    };
    sqlx::query(set_allowed(false))
        .execute(&admin)
        .await
        .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&db_name)
        .execute(&admin)
        .await
        .unwrap();
    let r = app.send_signed(&agent, b"{}", "during-outage").await;
    let retry_after = r.headers().get("retry-after").cloned();
    let e = assert_error(r, 503).await;
    assert_eq!(e["code"], "unavailable");
    assert!(retry_after.is_some());

    sqlx::query(set_allowed(true))
        .execute(&admin)
        .await
        .unwrap();
    let r = app.send_signed(&agent, b"{}", "after-outage").await;
    assert_eq!(r.status(), 202, "service resumed by itself");
    assert_eq!(
        app.execution_count().await,
        1,
        "nothing was stored during the outage"
    );
}
