//! The agent read models through the real server, on SQLite and PostgreSQL: an agent's
//! executions filtered and keyset-paged, agent summaries (counts, last execution,
//! configuration version), daily aggregates, the agent's event stream, and tenant
//! isolation of all of them.

use crate::support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::app::{Agent, Backend, TestApp, spawn_app};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, ResponseTemplate};

on_both_backends!(
    an_agents_executions_are_filtered_and_keyset_paged_newest_first,
    agent_summaries_count_executions_and_follow_the_configuration_version,
    daily_stats_count_outcomes_tokens_and_duration_percentiles,
    the_agent_event_stream_is_served_to_its_tenant_only,
);

/// The gateway fails (400, not retried) for payloads containing `fail-me`.
async fn failing_on_marker(app: &TestApp) {
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_string_contains("fail-me"))
        .respond_with(
            ResponseTemplate::new(400).set_body_json(json!({"error": {"message": "bad"}})),
        )
        .with_priority(1)
        .mount(&app.gateway)
        .await;
}

/// Sends payloads (`fail-me` in one makes it fail), waits for each to finish; ids in order.
async fn run(app: &TestApp, key: &str, agent: &Agent, payloads: &[&str]) -> Vec<String> {
    let mut ids = Vec::new();
    for (i, payload) in payloads.iter().enumerate() {
        let body = json!({"text": payload}).to_string();
        let r = app
            .send_signed(
                agent,
                body.as_bytes(),
                &format!("d-{i}-{}", uuid::Uuid::new_v4()),
            )
            .await;
        assert_eq!(r.status(), 202);
        let id = r.json::<Value>().await.unwrap()["execution_id"]
            .as_str()
            .unwrap()
            .to_owned();
        app.wait_terminal(key, &id).await;
        ids.push(id);
    }
    app.projector.catch_up().await.unwrap();
    ids
}

async fn json(app: &TestApp, key: &str, path: &str) -> Value {
    let r = app.get(key, path).await;
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

fn ids_of(page: &Value) -> Vec<String> {
    page["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["execution_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn an_agents_executions_are_filtered_and_keyset_paged_newest_first(backend: Backend) {
    let Some(app) = spawn_app(backend, "list_executions").await else {
        return;
    };
    failing_on_marker(&app).await;
    let (key, agent) = app.tenant_with_agent("acme").await;
    let ids = run(&app, &key, &agent, &["a", "b", "fail-me", "d", "e"]).await;
    let base = format!("/api/agents/{}/executions", agent.id);

    // Page by two, following the cursor: every execution once, newest first.
    let mut seen = Vec::new();
    let mut url = format!("{base}?limit=2");
    loop {
        let page = json(&app, &key, &url).await;
        let page_ids = ids_of(&page);
        assert!(page_ids.len() <= 2);
        seen.extend(page_ids);
        match page["next_cursor"].as_str() {
            Some(cursor) => url = format!("{base}?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);

    let failed = json(&app, &key, &format!("{base}?status=failed")).await;
    assert_eq!(ids_of(&failed), [ids[2].clone()]);
    assert_eq!(failed["executions"][0]["status"], "failed");
    let rows = json(&app, &key, &base).await;
    assert!(rows["next_cursor"].is_null());
    for row in rows["executions"].as_array().unwrap() {
        assert_eq!(row["config_version"], 1, "{row}");
        assert_eq!(row["agent_id"], agent.id.as_str());
    }

    // since is inclusive, until exclusive, on queued_at.
    let third = rows["executions"][2]["queued_at"]
        .as_str()
        .unwrap()
        .to_owned();
    let since = json(&app, &key, &format!("{base}?since={third}")).await;
    assert_eq!(ids_of(&since), newest_first[..3].to_vec());
    let until = json(&app, &key, &format!("{base}?until={third}")).await;
    assert_eq!(ids_of(&until), newest_first[3..].to_vec());
    let window = json(&app, &key, &format!("{base}?since={third}&until={third}")).await;
    assert!(ids_of(&window).is_empty());

    for bad in [
        "?status=done",
        "?limit=0",
        "?limit=501",
        "?cursor=xyz",
        "?since=yesterday",
    ] {
        let r = app.get(&key, &format!("{base}{bad}")).await;
        support::app::assert_error(r, 400).await;
    }
    // Another tenant cannot list this agent's executions.
    let other = app.create_tenant("beta").await;
    support::app::assert_error(app.get(&other, &base).await, 404).await;
}

/// Polls `GET /api/agents` until `done` holds (deadline 15 s).
async fn agents_until(app: &TestApp, key: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = json(app, key, "/api/agents").await;
        if done(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "agents never reached the state: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn agent_summaries_count_executions_and_follow_the_configuration_version(backend: Backend) {
    let Some(app) = spawn_app(backend, "agent_summaries").await else {
        return;
    };
    failing_on_marker(&app).await;
    let (key, first) = app.tenant_with_agent("acme").await;
    let second = app.create_agent(&key, None).await;
    let ids = run(&app, &key, &first, &["ok", "fail-me", "ok again"]).await;

    // Pause and reactivate: two configuration changes, as the catalog counts them.
    for status in ["paused", "active"] {
        let r = app
            .client
            .patch(app.url(&format!("/api/agents/{}", first.id)))
            .bearer_auth(&key)
            .json(&json!({"status": status}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let catalog = json(&app, &key, &format!("/api/agents/{}", first.id)).await;
    assert_eq!(catalog["config_version"], 3);
    let later = run(&app, &key, &first, &["after the changes"]).await;

    let v = agents_until(&app, &key, |v| {
        v["agents"][0]["executions_total"] == 4 && v["agents"][0]["config_version"] == 3
    })
    .await;
    let summary = &v["agents"][0];
    assert_eq!(summary["agent_id"], first.id.as_str());
    assert_eq!(summary["status"], "active");
    assert_eq!(
        (
            &summary["executions_succeeded"],
            &summary["executions_failed"],
            &summary["executions_in_progress"]
        ),
        (&json!(3), &json!(1), &json!(0))
    );
    assert_eq!(summary["total_tokens"], 3 * 18);
    assert_eq!(summary["last_execution_id"], later[0].as_str());
    assert_eq!(summary["last_execution_status"], "succeeded");
    assert_eq!(summary["model"], "gpt-4o-mini");
    assert_eq!(v["agents"][1]["agent_id"], second.id.as_str());
    assert_eq!(v["agents"][1]["executions_total"], 0);

    // Each execution records the configuration it ran with.
    let row = json(&app, &key, &format!("/api/executions/{}", ids[0])).await;
    assert_eq!(row["config_version"], 1);
    let row = json(&app, &key, &format!("/api/executions/{}", later[0])).await;
    assert_eq!(row["config_version"], 3);

    // Paged one at a time; another tenant sees none of them.
    let page = json(&app, &key, "/api/agents?limit=1").await;
    assert_eq!(page["agents"].as_array().unwrap().len(), 1);
    let cursor = page["next_cursor"].as_str().unwrap();
    let next = json(&app, &key, &format!("/api/agents?limit=1&cursor={cursor}")).await;
    assert_eq!(next["agents"][0]["agent_id"], second.id.as_str());
    assert!(next["next_cursor"].is_null());
    let other = app.create_tenant("beta").await;
    assert_eq!(json(&app, &other, "/api/agents").await["agents"], json!([]));
}

async fn daily_stats_count_outcomes_tokens_and_duration_percentiles(backend: Backend) {
    let Some(app) = spawn_app(backend, "daily_stats").await else {
        return;
    };
    failing_on_marker(&app).await;
    let (key, agent) = app.tenant_with_agent("acme").await;
    let ids = run(&app, &key, &agent, &["a", "b", "c", "fail-me"]).await;
    let stats = json(&app, &key, &format!("/api/agents/{}/stats/daily", agent.id)).await;
    let days = stats["days"].as_array().unwrap();
    assert_eq!(days.len(), 1, "{stats}");
    let today = &days[0];
    assert_eq!(
        today["day"],
        chrono::Utc::now().format("%Y-%m-%d").to_string()
    );
    assert_eq!(
        (&today["queued"], &today["succeeded"], &today["failed"]),
        (&json!(4), &json!(3), &json!(1))
    );
    assert_eq!(
        (
            &today["prompt_tokens"],
            &today["completion_tokens"],
            &today["total_tokens"]
        ),
        (&json!(33), &json!(21), &json!(54))
    );
    assert_eq!(today["duration_count"], 4);

    // p50/p95 within 5% (at least 1 ms) of the exact nearest-rank values.
    let mut durations = Vec::new();
    for id in &ids {
        let row = json(&app, &key, &format!("/api/executions/{id}")).await;
        durations.push(row["duration_ms"].as_i64().unwrap());
    }
    durations.sort_unstable();
    for (field, p) in [("p50_duration_ms", 0.5), ("p95_duration_ms", 0.95)] {
        let exact = durations[((p * 4.0_f64).ceil() as usize).max(1) - 1];
        let reported = today[field].as_i64().unwrap();
        let tolerance = (exact as f64 * 0.05).max(1.0);
        assert!(
            (reported - exact).abs() as f64 <= tolerance,
            "{field}: {reported} vs exact {exact} ({durations:?})"
        );
    }
    let none = json(
        &app,
        &key,
        &format!(
            "/api/agents/{}/stats/daily?since=2020-01-01&until=2020-01-31",
            agent.id
        ),
    )
    .await;
    assert_eq!(none["days"], json!([]));
    let other = app.create_tenant("beta").await;
    let r = app
        .get(&other, &format!("/api/agents/{}/stats/daily", agent.id))
        .await;
    support::app::assert_error(r, 404).await;
}

async fn the_agent_event_stream_is_served_to_its_tenant_only(backend: Backend) {
    let Some(app) = spawn_app(backend, "agent_events").await else {
        return;
    };
    let (key, agent) = app.tenant_with_agent("acme").await;
    let r = app
        .client
        .patch(app.url(&format!("/api/agents/{}", agent.id)))
        .bearer_auth(&key)
        .json(&json!({"status": "paused"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v = json(&app, &key, &format!("/api/agents/{}/events", agent.id)).await;
    let types: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["AgentRegistered", "AgentPaused"]);
    assert_eq!(v["events"][0]["metadata"]["tenant_id"], "acme");
    let page = json(
        &app,
        &key,
        &format!("/api/agents/{}/events?limit=1", agent.id),
    )
    .await;
    assert_eq!(page["next_from"], 1);
    let rest = json(
        &app,
        &key,
        &format!("/api/agents/{}/events?from=1", agent.id),
    )
    .await;
    assert_eq!(rest["events"][0]["type"], "AgentPaused");
    let other = app.create_tenant("beta").await;
    let r = app
        .get(&other, &format!("/api/agents/{}/events", agent.id))
        .await;
    support::app::assert_error(r, 404).await;
}
