//! The delivery audit log through the real server, on SQLite and PostgreSQL: what a
//! row holds, paging, the bounds that keep floods from filling the disk, the CLI,
//! and that recording can never turn an accepted webhook into an error.

use crate::support;

use serde_json::Value;
use support::app::{Backend, assert_error, spawn_app, spawn_app_with};

on_both_backends!(
    every_webhook_request_is_recorded_with_its_outcome_newest_first,
    rejected_rows_are_bounded_per_agent_and_for_unknown_agents,
    a_flood_of_rejections_is_folded_into_aggregate_rows,
    the_audit_log_failing_never_fails_a_webhook,
    a_batch_of_any_size_is_written_whole,
);

async fn every_webhook_request_is_recorded_with_its_outcome_newest_first(backend: Backend) {
    let Some(app) = spawn_app(backend, "deliveries").await else {
        return;
    };
    let (key, agent) = app.tenant_with_agent("acme").await;
    let r = app.send_signed(&agent, b"{}", "d-1").await;
    assert_eq!(r.status(), 202);
    let execution = r.json::<Value>().await.unwrap()["execution_id"].clone();
    assert_eq!(app.send_signed(&agent, b"{}", "d-1").await.status(), 200);
    let r = app
        .post_webhook(
            &agent.id,
            b"{}",
            &[
                ("X-Hub-Signature-256", "sha256=00"),
                ("X-GitHub-Delivery", "d-2"),
            ],
        )
        .await;
    assert_error(r, 401).await;
    let r = app.post_webhook(&agent.id, b"not json", &[]).await;
    assert_error(r, 401).await;

    let rows = app.deliveries(&key, &agent.id).await;
    let summary: Vec<(&str, Option<&str>, i64, Option<&str>)> = rows
        .iter()
        .map(|d| {
            (
                d["outcome"].as_str().unwrap(),
                d["reason"].as_str(),
                d["status"].as_i64().unwrap(),
                d["delivery_id"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("rejected", Some("invalid_signature"), 401, None),
            ("rejected", Some("invalid_signature"), 401, Some("d-2")),
            ("duplicate", None, 200, Some("d-1")),
            ("accepted", None, 202, Some("d-1")),
        ],
        "newest first: {rows:?}"
    );
    for d in &rows {
        assert_eq!(d["agent_id"], agent.id.as_str());
        assert_eq!(d["tenant_id"], "acme");
        assert_eq!(d["source_addr"], "127.0.0.1");
        assert_eq!(d["count"], 1);
        assert!(d["duration_ms"].as_f64().unwrap() >= 0.0, "{d}");
        assert!(chrono::DateTime::parse_from_rfc3339(d["received_at"].as_str().unwrap()).is_ok());
    }
    assert_eq!(rows[2]["execution_id"], execution);
    assert_eq!(rows[3]["execution_id"], execution);

    // Pages of two, following the cursor, give the same rows in the same order.
    let page: Value = app
        .get(
            &key,
            &format!("/api/agents/{}/deliveries?limit=2", agent.id),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["deliveries"].as_array().unwrap()[..], rows[..2]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let page: Value = app
        .get(
            &key,
            &format!(
                "/api/agents/{}/deliveries?limit=2&cursor={cursor}",
                agent.id
            ),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["deliveries"].as_array().unwrap()[..], rows[2..]);
    for bad in ["limit=0", "limit=501", "cursor=abc", "limit=x"] {
        let r = app
            .get(&key, &format!("/api/agents/{}/deliveries?{bad}", agent.id))
            .await;
        assert_error(r, 400).await;
    }

    // The CLI prints the same rows as JSON lines.
    let out = app.cli_ok(&["deliveries", "--agent", &agent.id], &[]).await;
    let printed: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(printed, rows);
}

async fn rejected_rows_are_bounded_per_agent_and_for_unknown_agents(backend: Backend) {
    let extra = [
        ("HOOKRUN_AUDIT_KEEP_PER_AGENT", "5"),
        ("HOOKRUN_AUDIT_KEEP_UNKNOWN", "3"),
    ];
    let Some(app) = spawn_app_with(backend, "deliveries_bound", &extra).await else {
        return;
    };
    let (key, agent) = app.tenant_with_agent("acme").await;
    for i in 0..3 {
        let r = app.send_signed(&agent, b"{}", &format!("ok-{i}")).await;
        assert_eq!(r.status(), 202);
    }
    for i in 0..12 {
        let delivery = format!("bad-{i:02}");
        let r = app
            .post_webhook(
                &agent.id,
                b"{}",
                &[
                    ("X-Hub-Signature-256", "sha256=00"),
                    ("X-GitHub-Delivery", &delivery),
                ],
            )
            .await;
        assert_error(r, 401).await;
        // One at a time, so that each batch prunes (the bound holds batch by batch too).
        app.flush_audit().await;
    }
    for _ in 0..10 {
        let r = app
            .post_webhook(&uuid::Uuid::new_v4().to_string(), b"{}", &[])
            .await;
        assert_error(r, 404).await;
    }
    let r = app.post_webhook(&"x".repeat(300), b"{}", &[]).await;
    assert_error(r, 404).await;

    let rows = app.deliveries(&key, &agent.id).await;
    let rejected: Vec<&str> = rows
        .iter()
        .filter(|d| d["outcome"] == "rejected")
        .map(|d| d["delivery_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        rejected,
        ["bad-11", "bad-10", "bad-09", "bad-08", "bad-07"],
        "the newest 5"
    );
    let accepted = rows.iter().filter(|d| d["outcome"] == "accepted").count();
    assert_eq!(accepted, 3, "accepted rows are never pruned");

    let unknown = hookrun::deliveries::store::list(&app.state.db, None, None, 100)
        .await
        .unwrap();
    assert_eq!(
        unknown.len(),
        3,
        "unknown agents share one budget: {unknown:?}"
    );
    assert!(
        unknown
            .iter()
            .all(|d| d.agent_id.is_none() && d.status == 404)
    );
    assert_eq!(
        unknown[0].requested_agent,
        "x".repeat(64),
        "the path is truncated"
    );
    let out = app.cli_ok(&["deliveries", "--unknown-agents"], &[]).await;
    assert_eq!(out.lines().count(), 3);
}

async fn a_flood_of_rejections_is_folded_into_aggregate_rows(backend: Backend) {
    let extra = [
        ("HOOKRUN_AUDIT_DETAIL_PER_MIN", "1"),
        ("HOOKRUN_AUDIT_DETAIL_BURST", "3"),
    ];
    let Some(app) = spawn_app_with(backend, "deliveries_flood", &extra).await else {
        return;
    };
    let (key, agent) = app.tenant_with_agent("acme").await;
    let flood = futures::future::join_all(
        (0..40)
            .map(|_| app.post_webhook(&agent.id, b"{}", &[("X-Hub-Signature-256", "sha256=00")])),
    )
    .await;
    assert!(flood.iter().all(|r| r.status() == 401));
    // Accepted deliveries are always recorded one by one.
    assert_eq!(app.send_signed(&agent, b"{}", "ok").await.status(), 202);

    let rows = app.deliveries(&key, &agent.id).await;
    let rejected: Vec<&Value> = rows.iter().filter(|d| d["outcome"] == "rejected").collect();
    let total: i64 = rejected.iter().map(|d| d["count"].as_i64().unwrap()).sum();
    assert_eq!(total, 40, "every rejection is counted: {rejected:?}");
    assert!(
        rejected.len() <= 5,
        "but not written one by one: {rejected:?}"
    );
    let aggregate = rejected
        .iter()
        .find(|d| d["count"].as_i64() > Some(1))
        .unwrap();
    assert_eq!(aggregate["reason"], "invalid_signature");
    assert_eq!(
        rows.iter().filter(|d| d["outcome"] == "accepted").count(),
        1
    );
    let folded = app.state.audit.suppressed();
    assert!(
        folded >= 36,
        "at most the burst (and a refill) one by one: {folded}"
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(&format!("hookrun_audit_aggregated_total {folded}")),
        "{metrics}"
    );
}

async fn the_audit_log_failing_never_fails_a_webhook(backend: Backend) {
    let Some(app) = spawn_app(backend, "deliveries_broken").await else {
        return;
    };
    let (key, agent) = app.tenant_with_agent("acme").await;
    support::sql(&app.state.db, "DROP TABLE webhook_deliveries").await;
    let r = app
        .send_signed(&agent, br#"{"still":"works"}"#, "d-1")
        .await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["execution_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.flush_audit().await;
    assert_eq!(app.send_signed(&agent, b"{}", "d-1").await.status(), 200);
    assert_eq!(app.wait_terminal(&key, &id).await["status"], "succeeded");
    let r = app
        .get(&key, &format!("/api/agents/{}/deliveries", agent.id))
        .await;
    assert_eq!(r.status(), 500, "the listing reports the broken table");
}

/// The audit writer inserts a batch in statements of at most 256 rows: every row of a
/// larger batch must still be written once, in order.
async fn a_batch_of_any_size_is_written_whole(backend: Backend) {
    use hookrun::deliveries::{DeliveryRecord, Outcome, store};
    let Some(app) = spawn_app(backend, "deliveries_batch").await else {
        return;
    };
    let record = |n: usize| DeliveryRecord {
        agent: None,
        requested_agent: "nobody".to_owned(),
        delivery_id: Some(format!("d-{n:03}")),
        execution_id: None,
        outcome: Outcome::Rejected,
        reason: Some("unknown_agent"),
        status: 404,
        source_addr: None,
        received_at: chrono::Utc::now(),
        duration_ms: 0.5,
        count: 1,
    };
    let batch: Vec<DeliveryRecord> = (0..300).map(record).collect(); // 256 + 44
    store::insert_and_prune(&app.state.db, &app.state.settings.audit, &batch)
        .await
        .unwrap();
    let rows = store::list(&app.state.db, None, None, 500).await.unwrap();
    let ids: Vec<&str> = rows
        .iter()
        .map(|r| r.delivery_id.as_deref().unwrap())
        .collect();
    let expected: Vec<String> = (0..300).rev().map(|n| format!("d-{n:03}")).collect();
    assert_eq!(
        ids, expected,
        "newest first: every row once, in batch order"
    );
}
