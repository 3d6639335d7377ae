//! Erasure by crypto-shredding, through the real server on SQLite and PostgreSQL:
//! payloads, outputs and gateway error texts are sealed at rest, the API still answers
//! them in plaintext, and after `DELETE /api/tenants/{id}` none of that text can
//! be found anywhere in the database (SQLite: the files, WAL included; PostgreSQL:
//! every table), while its streams stay complete, chained and replayable and other
//! tenants are untouched.

use crate::support;

use hookrun::db::Db;
use serde_json::{Value, json};
use support::app::{ADMIN_TOKEN, Backend, TestApp, assert_error, completion, spawn_app};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, ResponseTemplate};

on_both_backends!(
    erasing_a_tenant_leaves_its_streams_but_no_readable_payload_or_output_anywhere,
    erasure_needs_the_admin_token_and_an_existing_tenant,
);

const PAYLOAD: &str = "acme-confidential-payload-5f2e";
const OUTPUT: &str = "acme-confidential-answer-8c41";
const OTHER_PAYLOAD: &str = "beta-payload-still-here";
/// A payload the gateway refuses, quoting it in its error message.
const REFUSED: &str = "acme-refused-payload-91d0";

async fn execution(app: &TestApp, key: &str, agent: &support::app::Agent, text: &str) -> String {
    let body = json!({ "ticket": text }).to_string();
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

/// Where `needle` occurs in the stored database: SQLite file names, or PostgreSQL tables.
async fn found_in_database(app: &TestApp, needle: &str) -> Vec<String> {
    match &app.state.db {
        Db::Sqlite(_) => std::fs::read_dir(app.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("hookrun") // hookrun.db, its WAL, and an events file if configured
            })
            .filter(|p| {
                let bytes = std::fs::read(p).unwrap();
                bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
            })
            .map(|p| p.display().to_string())
            .collect(),
        Db::Postgres(pg) => {
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
            )
            .fetch_all(pg)
            .await
            .unwrap();
            let mut found = Vec::new();
            for table in tables {
                let sql = format!("SELECT count(*) FROM \"{table}\" t WHERE t::text LIKE $1");
                let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(format!("%{needle}%"))
                    .fetch_one(pg)
                    .await
                    .unwrap();
                if n > 0 {
                    found.push(table);
                }
            }
            found
        }
    }
}

/// Stored events whose data contains `needle` (read from the table, not the store, which
/// opens what is sealed).
async fn stored_events_containing(app: &TestApp, needle: &str) -> i64 {
    let sql = "SELECT count(*) FROM events WHERE CAST(data AS TEXT) LIKE $1";
    hookrun::with_db_read!(&app.events_db().await, |pool| {
        sqlx::query_scalar(sql)
            .bind(format!("%{needle}%"))
            .fetch_one(pool)
            .await
            .unwrap()
    })
}

async fn rows_of(app: &TestApp, tenant: &str) -> i64 {
    let mut total = 0;
    for table in [
        "agent_test_executions",
        "agent_summaries",
        "agent_daily_stats",
    ] {
        let sql = sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table} WHERE tenant_id = $1"));
        let n: i64 = hookrun::with_db_read!(&app.state.db, |pool| {
            sqlx::query_scalar(sql)
                .bind(tenant)
                .fetch_one(pool)
                .await
                .unwrap()
        });
        total += n;
    }
    total
}

async fn cli(app: &TestApp, args: &'static [&'static str]) -> Option<i32> {
    let env = app.env.clone();
    tokio::task::spawn_blocking(move || support::app::run_cli(&env, args).status.code())
        .await
        .unwrap()
}

async fn erasing_a_tenant_leaves_its_streams_but_no_readable_payload_or_output_anywhere(
    backend: Backend,
) {
    let Some(app) = spawn_app(backend, "erasure").await else {
        return;
    };
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_string_contains(PAYLOAD))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(OUTPUT)))
        .with_priority(1)
        .mount(&app.gateway)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_string_contains(REFUSED))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": {"message": format!("content policy: refused {REFUSED}")}
        })))
        .with_priority(1)
        .mount(&app.gateway)
        .await;
    let (acme, acme_agent) = app.tenant_with_agent("acme").await;
    let (beta, beta_agent) = app.tenant_with_agent("beta").await;
    let first = execution(&app, &acme, &acme_agent, PAYLOAD).await;
    execution(&app, &acme, &acme_agent, PAYLOAD).await;
    let kept = execution(&app, &beta, &beta_agent, OTHER_PAYLOAD).await;
    let refused = execution(&app, &acme, &acme_agent, REFUSED).await;
    app.projector.catch_up().await.unwrap();

    // Sealed at rest, plaintext through the API.
    let events: Value = app
        .get(&acme, &format!("/api/executions/{first}/events"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(events["events"][0]["data"]["payload"]["ticket"], PAYLOAD);
    assert_eq!(events["events"][3]["data"]["output"], OUTPUT);
    assert_eq!(app.wait_terminal(&acme, &first).await["output"], OUTPUT);
    assert_eq!(found_in_database(&app, PAYLOAD).await, Vec::<String>::new());
    let failed = app.wait_terminal(&acme, &refused).await;
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["error"].as_str().unwrap().contains(REFUSED),
        "{failed}"
    );
    let events = app.execution_events(&acme, &refused).await;
    assert_eq!(
        support::app::event_types(&events)[3..],
        ["LlmCallFailed", "ExecutionFailed"]
    );
    for event in &events[3..] {
        assert!(event["data"]["message"].as_str().unwrap().contains(REFUSED));
    }
    // Stored sealed: only the read model holds the text in the clear.
    assert_eq!(stored_events_containing(&app, REFUSED).await, 0);
    assert_eq!(stored_events_containing(&app, "content policy").await, 0);
    assert!(
        !found_in_database(&app, OUTPUT).await.is_empty(),
        "the read model shows the output, so the search works"
    );
    // A rebuild has just swapped the executions table out: the copy it set aside still
    // holds the tenant's rows until it is removed.
    let retired = hookrun::projections::shadow::retired("agent_test_executions");
    support::sql(
        &app.state.db,
        format!("CREATE TABLE \"{retired}\" AS SELECT * FROM agent_test_executions"),
    )
    .await;

    let r = app
        .client
        .delete(app.url("/api/tenants/acme"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let erased: Value = r.json().await.unwrap();
    assert_eq!(
        (
            &erased["erased"],
            &erased["keys_destroyed"],
            &erased["agents_deleted"]
        ),
        (&json!(true), &json!(1), &json!(1))
    );

    // Nothing of the tenant's data is left to find, in any file or table.
    for needle in [PAYLOAD, OUTPUT, REFUSED] {
        assert_eq!(
            found_in_database(&app, needle).await,
            Vec::<String>::new(),
            "{needle}"
        );
    }
    assert_eq!(rows_of(&app, "acme").await, 0);
    assert_error(
        app.get(&acme, &format!("/api/executions/{first}")).await,
        401,
    )
    .await;

    // The streams are still there, complete, but the tenant data in them cannot be opened.
    let all = app.all_events().await;
    let stream: Vec<_> = all
        .iter()
        .filter(|e| e.stream_id == format!("execution-{first}"))
        .collect();
    assert_eq!(stream.len(), 4);
    assert!(stream[0].data["payload"]["$sealed"].is_string());
    assert!(stream[0].metadata["unreadable"].is_string());
    assert!(stream[3].data["output"]["$sealed"].is_string());
    let failed: Vec<_> = all
        .iter()
        .filter(|e| e.stream_id == format!("execution-{refused}"))
        .collect();
    assert_eq!(failed.len(), 5);
    for event in &failed[3..] {
        assert!(
            event.data["message"]["$sealed"].is_string(),
            "{:?}",
            event.data
        );
        assert!(event.metadata["unreadable"].is_string());
    }
    assert!(
        all.iter()
            .any(|e| e.stream_id == "tenant-acme" && e.event_type == "TenantErased")
    );

    // Other tenants are untouched.
    let beta_events: Value = app
        .get(&beta, &format!("/api/executions/{kept}/events"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        beta_events["events"][0]["data"]["payload"]["ticket"],
        OTHER_PAYLOAD
    );
    assert!(rows_of(&app, "beta").await > 0);

    // Replays agree: the erased rows do not come back, and the history is intact.
    assert_eq!(cli(&app, &["projections", "rebuild", "all"]).await, Some(0));
    assert_eq!(rows_of(&app, "acme").await, 0);
    assert_eq!(cli(&app, &["verify"]).await, Some(0));
    assert_eq!(cli(&app, &["verify", "--chain"]).await, Some(0));
}

async fn erasure_needs_the_admin_token_and_an_existing_tenant(backend: Backend) {
    let Some(app) = spawn_app(backend, "erasure_auth").await else {
        return;
    };
    let (key, _) = app.tenant_with_agent("acme").await;
    let r = app
        .client
        .delete(app.url("/api/tenants/acme"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_error(r, 401).await;
    let r = app
        .client
        .delete(app.url("/api/tenants/nobody"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_error(r, 404).await;
    // Still there after the refused attempts.
    assert_eq!(app.get(&key, "/api/agents").await.status(), 200);
}
