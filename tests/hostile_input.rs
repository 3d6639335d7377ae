//! Hostile and sloppy webhook requests through the real server, on SQLite and
//! PostgreSQL: odd bodies, odd signature headers, and rate limits. Each refusal is a
//! JSON error that says what to fix, and stores no execution.

use crate::support;

use serde_json::Value;
use support::app::{Backend, TestApp, assert_error, github_signature, spawn_app_with};

on_both_backends!(
    odd_bodies_are_refused_with_a_reason,
    signature_headers_are_read_strictly_but_not_pedantically,
    agent_and_tenant_rate_limits_answer_429_before_storing_anything,
);

const LIMIT: usize = 1024;

async fn app(backend: Backend, test: &str, extra: &[(&str, &str)]) -> Option<TestApp> {
    let limit = LIMIT.to_string();
    let mut all = vec![("HOOKRUN_MAX_BODY_BYTES", limit.as_str())];
    all.extend_from_slice(extra);
    spawn_app_with(backend, test, &all).await
}

async fn refused(app: &TestApp, r: reqwest::Response, status: u16, code: &str) -> String {
    let e = assert_error(r, status).await;
    assert_eq!(e["code"], code, "{e}");
    assert_eq!(app.execution_count().await, 0, "{code} stored an execution");
    e["message"].as_str().unwrap().to_owned()
}

async fn odd_bodies_are_refused_with_a_reason(backend: Backend) {
    let Some(app) = app(backend, "odd_bodies", &[]).await else {
        return;
    };
    let (_, agent) = app.tenant_with_agent("acme").await;
    let signed = |body: &[u8]| github_signature(&agent.secret, body);
    let send = |body: Vec<u8>| {
        let sig = signed(&body);
        let app = &app;
        let id = agent.id.clone();
        async move {
            app.post_webhook(
                &id,
                &body,
                &[
                    ("Content-Type", "application/json"),
                    ("X-Hub-Signature-256", &sig),
                ],
            )
            .await
        }
    };

    let m = refused(&app, send(Vec::new()).await, 400, "invalid_json").await;
    assert!(m.contains("empty"), "{m}");
    let m = refused(&app, send(b" \n ".to_vec()).await, 400, "invalid_json").await;
    assert!(m.contains("empty"), "{m}");
    let m = refused(
        &app,
        send(b"{\"a\":\"\xff\xfe\"}".to_vec()).await,
        400,
        "invalid_json",
    )
    .await;
    assert!(m.contains("UTF-8") && m.contains("offset 6"), "{m}");
    let deep = format!("{}{}", "{\"a\":".repeat(80), "}".repeat(80));
    let m = refused(&app, send(deep.into_bytes()).await, 400, "invalid_json").await;
    assert!(m.contains("nesting"), "{m}");
    let m = refused(
        &app,
        send(vec![b'['; LIMIT + 1]).await,
        413,
        "payload_too_large",
    )
    .await;
    assert!(m.contains(&LIMIT.to_string()), "{m}");
    // A chunked body (no Content-Length) is cut off at the limit too.
    let (status, answer) =
        post_chunked(&app, &agent.id, &[vec![b' '; LIMIT], b"{}".to_vec()]).await;
    assert_eq!(status, 413, "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
    // Exactly the limit is fine.
    let mut at_limit = b"{}".to_vec();
    at_limit.resize(LIMIT, b' ');
    assert_eq!(send(at_limit).await.status(), 202);
}

async fn signature_headers_are_read_strictly_but_not_pedantically(backend: Backend) {
    let Some(app) = app(backend, "odd_signatures", &[]).await else {
        return;
    };
    let (_, agent) = app.tenant_with_agent("acme").await;
    let body = br#"{"ticket_id":"T-1","priority":"low"}"#;
    let sig = github_signature(&agent.secret, body);
    let hex = &sig["sha256=".len()..];
    let post = |headers: Vec<(&'static str, String)>| {
        let app = &app;
        let id = agent.id.clone();
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            app.post_webhook(&id, body, &headers).await
        }
    };
    const H: &str = "X-Hub-Signature-256";

    // Refused: the header twice (even identical), sha1, a re-serialized body.
    let r = post(vec![(H, sig.clone()), (H, sig.clone())]).await;
    let m = refused(&app, r, 401, "invalid_signature").await;
    assert!(m.contains("exactly once"), "{m}");
    let r = post(vec![(H, format!("sha1={}", &hex[..40]))]).await;
    let m = refused(&app, r, 401, "invalid_signature").await;
    assert!(m.contains("only sha256"), "{m}");
    let pretty =
        serde_json::to_vec_pretty(&serde_json::from_slice::<Value>(body).unwrap()).unwrap();
    let r = app
        .post_webhook(
            &agent.id,
            &pretty,
            &[(H, &sig), ("Content-Type", "application/json")],
        )
        .await;
    let m = refused(&app, r, 401, "invalid_signature").await;
    assert!(
        m.contains("exact raw request body") && m.contains("not re-serialized JSON"),
        "{m}"
    );
    let r = post(vec![(H, format!("sha256={}", &hex[..63]))]).await;
    refused(&app, r, 401, "invalid_signature").await;

    // Accepted: lower or upper case hex, any case of the prefix, spaces around values.
    for (i, value) in [
        format!("sha256={}", hex.to_lowercase()),
        format!("sha256={}", hex.to_uppercase()),
        format!("SHA256={hex}"),
        format!("sha256= {hex} "),
        format!("sha256 ={hex}"),
    ]
    .into_iter()
    .enumerate()
    {
        let r = post(vec![
            (H, value.clone()),
            ("X-GitHub-Delivery", format!("ok-{i}")),
        ])
        .await;
        assert_eq!(r.status(), 202, "{value:?}: {:?}", r.text().await);
    }
    // Delivery ids that are not 1-256 printable characters are ignored (a fresh id),
    // not trusted.
    let r = post(vec![
        (H, sig.clone()),
        ("X-GitHub-Delivery", "x".repeat(257)),
    ])
    .await;
    assert_eq!(r.status(), 202);
}

async fn agent_and_tenant_rate_limits_answer_429_before_storing_anything(backend: Backend) {
    let extra = [
        ("HOOKRUN_RATE_AGENT_PER_S", "0.01"),
        ("HOOKRUN_RATE_AGENT_BURST", "3"),
        ("HOOKRUN_RATE_TENANT_PER_S", "0.01"),
        ("HOOKRUN_RATE_TENANT_BURST", "5"),
    ];
    let Some(app) = app(backend, "rate_limits", &extra).await else {
        return;
    };
    let (key, first) = app.tenant_with_agent("acme").await;
    let second = app.create_agent(&key, None).await;
    let (_, other_tenant) = app.tenant_with_agent("other").await;

    for i in 0..3 {
        assert_eq!(
            app.send_signed(&first, b"{}", &format!("f{i}"))
                .await
                .status(),
            202
        );
    }
    let r = app.send_signed(&first, b"{}", "f3").await;
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=100).contains(&retry_after), "{retry_after}");
    let e = assert_error(r, 429).await;
    assert_eq!(e["code"], "rate_limited");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains(&format!("agent {}", first.id)),
        "{e}"
    );
    // Refused before the body is read: an oversized chunked body gets 429, not 413.
    let (status, answer) = post_chunked(&app, &first.id, &[vec![b' '; 2 * LIMIT]]).await;
    assert_eq!(status, 429, "{answer}");

    // The tenant's budget (5) is shared by its agents; another tenant has its own.
    for i in 0..2 {
        assert_eq!(
            app.send_signed(&second, b"{}", &format!("s{i}"))
                .await
                .status(),
            202
        );
    }
    let r = app.send_signed(&second, b"{}", "s2").await;
    assert!(r.headers().contains_key("retry-after"));
    let e = assert_error(r, 429).await;
    assert!(
        e["message"].as_str().unwrap().contains("tenant acme"),
        "{e}"
    );
    assert_eq!(
        app.send_signed(&other_tenant, b"{}", "o1").await.status(),
        202
    );
    assert_eq!(
        app.execution_count().await,
        6,
        "refused deliveries stored nothing"
    );
    let reasons: Vec<String> = app
        .deliveries(&key, &first.id)
        .await
        .iter()
        .filter_map(|d| d["reason"].as_str().map(str::to_owned))
        .collect();
    assert!(reasons.contains(&"rate_limited".to_owned()), "{reasons:?}");
}

/// POSTs a chunked body (no Content-Length) over a raw connection, as a sender that
/// streams might: the status and the whole answer.
async fn post_chunked(app: &TestApp, agent_id: &str, chunks: &[Vec<u8>]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let mut request = format!(
        "POST /webhooks/agents/{agent_id} HTTP/1.1\r\nHost: {host}\r\n\
         Content-Type: application/json\r\nX-Hub-Signature-256: sha256=00\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in chunks {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    // The server may answer (and close) before reading everything: that is the point.
    let _ = stream.write_all(&request).await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("an HTTP answer: {answer:?}"));
    (status, answer)
}
