//! Agent actors are let go once idle (`HOOKRUN_AGENT_IDLE_MS`), so memory does not
//! grow with every agent that ever received a webhook; the next webhook starts a new
//! actor and runs as before.

use crate::support;

use std::time::{Duration, Instant};

use support::app::{Agent, Backend, TestApp, spawn_app_with};

on_both_backends!(an_idle_agent_actor_is_let_go_and_the_next_webhook_starts_another);

/// Sends a webhook and waits for its execution to succeed.
async fn run_one(app: &TestApp, key: &str, agent: &Agent, delivery: &str) {
    let r = app.send_signed(agent, b"{}", delivery).await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let id = r.json::<serde_json::Value>().await.unwrap()["execution_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(app.wait_terminal(key, &id).await["status"], "succeeded");
}

async fn an_idle_agent_actor_is_let_go_and_the_next_webhook_starts_another(backend: Backend) {
    let idle = [("HOOKRUN_AGENT_IDLE_MS", "200")];
    let Some(app) = spawn_app_with(backend, "idle_actors", &idle).await else {
        return;
    };
    let key = app.create_tenant("acme").await;
    let (first, other) = (
        app.create_agent(&key, None).await,
        app.create_agent(&key, None).await,
    );
    run_one(&app, &key, &first, "first-1").await;
    assert_eq!(app.state.registry.actor_count(), 1);

    // Webhooks to the other agent give the registry its chances to let idle actors go.
    let deadline = Instant::now() + Duration::from_secs(10);
    for n in 0.. {
        run_one(&app, &key, &other, &format!("other-{n}")).await;
        if app.state.registry.actor_count() == 1 {
            break; // only the other agent's actor is left
        }
        assert!(
            Instant::now() < deadline,
            "the first agent's idle actor was never let go"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    run_one(&app, &key, &first, "first-2").await;
}
