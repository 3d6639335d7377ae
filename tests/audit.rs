//! Audit tools as an auditor uses them, against the real server's database on SQLite
//! and PostgreSQL: `hookrun events` (stream, category, from a position, follow),
//! `hookrun verify` (read models against a replay) and `hookrun verify --chain` (hash
//! chains, after an event is edited directly in SQL).

use crate::support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::app::{Backend, TestApp, spawn_app};
use support::sql;

on_both_backends!(
    events_prints_a_stream_a_category_or_everything_from_a_position,
    events_follow_prints_new_events_as_they_are_stored,
    verify_passes_on_intact_read_models_and_names_each_row_that_differs,
    verify_chain_names_the_first_broken_link_after_an_event_is_edited_in_sql,
);

async fn execution(app: &TestApp, key: &str, agent: &support::app::Agent, text: &str) -> String {
    let body = serde_json::json!({ "text": text }).to_string();
    let r = app
        .send_signed(agent, body.as_bytes(), &uuid::Uuid::new_v4().to_string())
        .await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["execution_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_terminal(key, &id).await;
    id
}

/// Runs the CLI off the server's thread (the server keeps answering meanwhile).
async fn cli(app: &TestApp, args: &[&str]) -> (Option<i32>, String, String) {
    let env = app.env.clone();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        support::app::run_cli(&env, &args)
    })
    .await
    .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

async fn events_prints_a_stream_a_category_or_everything_from_a_position(backend: Backend) {
    let Some(app) = spawn_app(backend, "events_cli").await else {
        return;
    };
    let (key, agent) = app.tenant_with_agent("acme").await;
    let first = execution(&app, &key, &agent, "first ticket").await;
    execution(&app, &key, &agent, "second ticket").await;

    let (code, out, err) = cli(&app, &["events", "--stream", &format!("execution-{first}")]).await;
    assert_eq!(code, Some(0), "{err}");
    let stream = lines(&out);
    let types: Vec<&str> = stream
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "ExecutionQueued",
            "ExecutionStarted",
            "LlmCalled",
            "ExecutionSucceeded"
        ]
    );
    assert_eq!(stream[0]["data"]["payload"]["text"], "first ticket");

    let (_, out, _) = cli(&app, &["events", "--category", "execution"]).await;
    let category = lines(&out);
    assert_eq!(category.len(), 8);
    assert!(
        category
            .iter()
            .all(|e| e["stream_id"].as_str().unwrap().starts_with("execution-"))
    );

    let (_, out, _) = cli(&app, &["events"]).await;
    let all = lines(&out);
    assert_eq!(
        all.len(),
        9,
        "the agent's AgentRegistered and 8 execution events"
    );
    assert_eq!(all[0]["event_type"], "AgentRegistered");
    let position = |e: &Value| -> (u64, u64) {
        (
            e["position"]["commit"].as_u64().unwrap(),
            e["position"]["prepare"].as_u64().unwrap(),
        )
    };
    assert!(
        all.windows(2).all(|w| position(&w[0]) < position(&w[1])),
        "global order"
    );

    let (c, p) = position(&all[2]);
    let (_, out, _) = cli(&app, &["events", "--from", &format!("{c}/{p}")]).await;
    assert_eq!(lines(&out), all[3..].to_vec());

    let (code, _, err) = cli(&app, &["events", "--from", "yesterday"]).await;
    assert_ne!(code, Some(0));
    assert!(err.contains("not a position"), "{err}");
}

async fn events_follow_prints_new_events_as_they_are_stored(backend: Backend) {
    let Some(app) = spawn_app(backend, "events_follow").await else {
        return;
    };
    let (key, agent) = app.tenant_with_agent("acme").await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookrun"))
        .args(["events", "--category", "execution", "--follow"])
        .envs(app.env.iter())
        .env("HOOKRUN_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // Stored after the follower started: it must see them without being restarted.
    let id = execution(&app, &key, &agent, "followed").await;
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let line = tokio::time::timeout(Duration::from_secs(15), rx.recv())
            .await
            .expect("the follower printed the new events in time")
            .expect("the follower is running");
        seen.push(serde_json::from_str::<Value>(&line).unwrap());
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        seen.iter()
            .all(|e| e["stream_id"] == format!("execution-{id}"))
    );
    assert_eq!(seen[3]["event_type"], "ExecutionSucceeded");
}

async fn verify_passes_on_intact_read_models_and_names_each_row_that_differs(backend: Backend) {
    let Some(app) = spawn_app(backend, "verify_models").await else {
        return;
    };
    let (key, agent) = app.tenant_with_agent("acme").await;
    let first = execution(&app, &key, &agent, "one").await;
    let second = execution(&app, &key, &agent, "two").await;
    app.projector.catch_up().await.unwrap();

    let (code, out, err) = cli(&app, &["verify"]).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("every read model matches"), "{out}");

    let db = &app.state.db;
    sql(
        db,
        format!(
            "UPDATE agent_test_executions SET output = 'tampered' WHERE execution_id = '{first}'"
        ),
    )
    .await;
    sql(
        db,
        format!("DELETE FROM agent_test_executions WHERE execution_id = '{second}'"),
    )
    .await;
    sql(
        db,
        format!(
            "UPDATE agent_summaries SET executions_total = 99 WHERE agent_id = '{}'",
            agent.id
        ),
    )
    .await;
    let (code, out, err) = cli(&app, &["verify"]).await;
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(
        out.contains(&format!(
            "agent_test_executions: row {first}: column output: live \"tampered\", replay \"{}\"",
            support::app::GATEWAY_OUTPUT
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "agent_test_executions: row {second}: in the replay but missing"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "agent_summaries: row {}: column executions_total: live 99, replay 2",
            agent.id
        )),
        "{out}"
    );
    assert!(err.contains("3 read-model row(s) differ"), "{err}");
}

async fn verify_chain_names_the_first_broken_link_after_an_event_is_edited_in_sql(
    backend: Backend,
) {
    let Some(app) = spawn_app(backend, "verify_chain").await else {
        return;
    };
    let (key, agent) = app.tenant_with_agent("acme").await;
    let edited = execution(&app, &key, &agent, "one").await;
    let cut = execution(&app, &key, &agent, "two").await;
    let (code, out, err) = cli(&app, &["verify", "--chain"]).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("checked 3 streams, 9 events"), "{out}");
    assert!(out.contains("every hash chain is intact"), "{out}");

    // Rewrite what a stored event says, and remove an event from another stream.
    let db = &app.events_db().await;
    sql(db, format!(
        "UPDATE events SET data = '{{\"type\":\"LlmCalled\",\"model\":\"cheaper\",\"key_source\":\"platform\",\"attempt\":1,\"called_at\":\"2026-01-01T00:00:00Z\"}}' \
         WHERE stream_id = 'execution-{edited}' AND revision = 2"
    )).await;
    sql(
        db,
        format!("DELETE FROM events WHERE stream_id = 'execution-{cut}' AND revision = 1"),
    )
    .await;
    let (code, out, err) = cli(&app, &["verify", "--chain"]).await;
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(
        out.contains(&format!(
            "broken chain: stream execution-{edited} revision 2: the stored hash does not match"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "broken chain: stream execution-{cut} revision 1: expected revision 1 here"
        )),
        "{out}"
    );
    assert!(
        err.contains("2 stream(s) have a broken hash chain"),
        "{err}"
    );
}
