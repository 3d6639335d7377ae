//! The webhook path keeps agent records in memory for a short time
//! (`HOOKRUN_AGENT_CACHE_TTL_MS`). A change made through this server applies at once;
//! one made on another node applies when the entry expires, or at once when the
//! cached record would have refused the webhook. Records in use are read again in the
//! background, so they do not expire on a webhook's path.

use crate::support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::app::{Backend, TestApp, spawn_app_with};

on_both_backends!(
    a_pause_on_another_node_applies_within_the_ttl_and_an_activation_at_once,
    a_pause_through_this_server_applies_at_once,
    an_agent_in_use_is_not_read_again_on_the_webhook_path,
);

async fn set_status(app: &TestApp, key: &str, agent: &str, status: &str) {
    let r = app
        .client
        .patch(app.url(&format!("/api/agents/{agent}")))
        .bearer_auth(key)
        .json(&json!({ "status": status }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

async fn a_pause_on_another_node_applies_within_the_ttl_and_an_activation_at_once(
    backend: Backend,
) {
    let ttl = [("HOOKRUN_AGENT_CACHE_TTL_MS", "300")];
    let Some(app) = spawn_app_with(backend, "cache_other_node", &ttl).await else {
        return;
    };
    let (key, agent) = app.tenant_with_agent("acme").await;
    let accepted = app.send_signed(&agent, b"{}", "warm-up").await;
    assert_eq!(
        accepted.status(),
        202,
        "the agent's record is now in memory"
    );

    let other = app.another_node().await;
    set_status(&other, &key, &agent.id, "paused").await;
    // This node holds the active record for at most the TTL, then refuses.
    let deadline = Instant::now() + Duration::from_secs(10);
    for n in 0.. {
        let r = app.send_signed(&agent, b"{}", &format!("while-{n}")).await;
        match r.status().as_u16() {
            409 => break,
            202 => assert!(
                Instant::now() < deadline,
                "the pause made on another node never reached this one"
            ),
            other => panic!("unexpected {other}: {}", r.text().await.unwrap()),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Its record says paused now; an activation elsewhere works on the next webhook,
    // because a refusal is decided again on the stored record.
    set_status(&other, &key, &agent.id, "active").await;
    let r = app.send_signed(&agent, b"{}", "after-activation").await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
}

async fn a_pause_through_this_server_applies_at_once(backend: Backend) {
    // A TTL far longer than the test: only invalidation can make the pause visible.
    let ttl = [("HOOKRUN_AGENT_CACHE_TTL_MS", "3600000")];
    let Some(app) = spawn_app_with(backend, "cache_same_node", &ttl).await else {
        return;
    };
    let (key, agent) = app.tenant_with_agent("acme").await;
    assert_eq!(
        app.send_signed(&agent, b"{}", "warm-up").await.status(),
        202
    );
    set_status(&app, &key, &agent.id, "paused").await;
    let r = app.send_signed(&agent, b"{}", "after-pause").await;
    assert_eq!(r.status(), 409, "{}", r.text().await.unwrap());
    set_status(&app, &key, &agent.id, "active").await;
    assert_eq!(
        app.send_signed(&agent, b"{}", "after-resume")
            .await
            .status(),
        202
    );
}

async fn cache_misses(app: &TestApp) -> u64 {
    app.metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix("hookrun_agent_cache_misses_total "))
        .expect("hookrun_agent_cache_misses_total in /metrics")
        .parse()
        .unwrap()
}

async fn an_agent_in_use_is_not_read_again_on_the_webhook_path(backend: Backend) {
    let ttl = [("HOOKRUN_AGENT_CACHE_TTL_MS", "200")];
    let Some(app) = spawn_app_with(backend, "cache_refresh", &ttl).await else {
        return;
    };
    let (_, agent) = app.tenant_with_agent("acme").await;
    let r = app.send_signed(&agent, b"{}", "warm-up").await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let before = cache_misses(&app).await;
    // Ten TTLs of webhooks: each entry expiring on use would cost a read each TTL.
    let until = Instant::now() + Duration::from_secs(2);
    let mut sent = 0;
    while Instant::now() < until {
        let r = app.send_signed(&agent, b"{}", &format!("d-{sent}")).await;
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
        sent += 1;
    }
    let misses = cache_misses(&app).await - before;
    assert!(
        misses <= 2,
        "{misses} reads on the webhook path over {sent} webhooks in 10 TTLs"
    );
}
