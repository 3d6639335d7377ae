//! `HOOKRUN_LLM_HTTP=2`: hookrun calls the gateway over HTTP/2 without TLS (prior
//! knowledge). The gateway here speaks nothing else, so an execution can only succeed
//! if hookrun did; it also checks what arrived on the stream, and that calls spread
//! over `HOOKRUN_LLM_HTTP2_CONNECTIONS` connections when one allows few streams.

use crate::support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use support::app::{Backend, GATEWAY_OUTPUT, PLATFORM_KEY, completion, spawn_app_with};
use tokio::net::TcpListener;
use tokio::sync::watch;

on_both_backends!(an_http2_only_gateway_runs_the_agent_when_http2_is_set);

/// What the gateway saw of one call.
struct Seen {
    version: Version,
    authorization: Option<String>,
    body: Value,
}

/// An HTTP/2-only gateway on a free port: every call gets the standard completion.
struct Gateway {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// The most calls answered at once so far (a watch: held calls wait for it to grow).
    max_in_flight: watch::Sender<usize>,
    connections: Arc<AtomicUsize>,
}

/// Starts a gateway that allows `max_streams` concurrent streams per connection (`None`:
/// no limit) and holds every call until `hold_until` calls are in at once, or for 5 s
/// at most.
async fn http2_only_gateway(max_streams: Option<u32>, hold_until: usize) -> Gateway {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = Gateway {
        url: format!("http://{}", listener.local_addr().unwrap()),
        seen: Arc::new(Mutex::new(Vec::new())),
        max_in_flight: watch::Sender::new(0),
        connections: Arc::new(AtomicUsize::new(0)),
    };
    // Calls being answered now.
    let in_flight = Arc::new(AtomicUsize::new(0));
    let (log, max) = (gateway.seen.clone(), gateway.max_in_flight.clone());
    let connections = gateway.connections.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            connections.fetch_add(1, Ordering::SeqCst);
            let (log, in_flight, max) = (log.clone(), in_flight.clone(), max.clone());
            let service = service_fn(move |req: Request<Incoming>| {
                let (log, in_flight, max) = (log.clone(), in_flight.clone(), max.clone());
                async move {
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    max.send_modify(|m| *m = (*m).max(now));
                    let mut most = max.subscribe();
                    let all_here = most.wait_for(|m| *m >= hold_until);
                    let _ = tokio::time::timeout(Duration::from_secs(5), all_here).await;
                    let version = req.version();
                    let authorization = req
                        .headers()
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_owned());
                    let bytes = req.into_body().collect().await.unwrap().to_bytes();
                    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                    log.lock().unwrap().push(Seen {
                        version,
                        authorization,
                        body,
                    });
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    let answer = completion(GATEWAY_OUTPUT).to_string();
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(answer)))
                            .unwrap(),
                    )
                }
            });
            let mut server = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            server.max_concurrent_streams(max_streams);
            tokio::spawn(server.serve_connection(TokioIo::new(stream), service));
        }
    });
    gateway
}

async fn an_http2_only_gateway_runs_the_agent_when_http2_is_set(backend: Backend) {
    let Gateway { url, seen, .. } = http2_only_gateway(None, 0).await;
    let Some(app) = spawn_app_with(
        backend,
        "gateway_http2",
        &[("HOOKRUN_LLM_BASE_URL", &url), ("HOOKRUN_LLM_HTTP", "2")],
    )
    .await
    else {
        return;
    };
    let (key, agent) = app.tenant_with_agent("acme").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let body = format!(r#"{{"ticket_id":"TKT-{i}","note":"say \"hi\""}}"#);
        let r = app
            .send_signed(&agent, body.as_bytes(), &format!("h2-{i}"))
            .await;
        assert_eq!(r.status(), 202);
        let v: Value = r.json().await.unwrap();
        ids.push(v["execution_id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        let row = app.wait_terminal(&key, id).await;
        assert_eq!(row["status"], "succeeded", "{row}");
        assert_eq!(row["output"], GATEWAY_OUTPUT);
    }

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    let mut users: Vec<&str> = Vec::new();
    for call in seen.iter() {
        assert_eq!(call.version, Version::HTTP_2);
        assert_eq!(
            call.authorization.as_deref(),
            Some(format!("Bearer {PLATFORM_KEY}").as_str())
        );
        assert_eq!(call.body["model"], "gpt-4o-mini");
        assert_eq!(call.body["temperature"], 0.1);
        assert_eq!(call.body["messages"][0]["role"], "system");
        assert_eq!(call.body["messages"][1]["role"], "user");
        users.push(call.body["messages"][1]["content"].as_str().unwrap());
    }
    users.sort();
    let expected: Vec<String> = (0..3)
        .map(|i| json!({"ticket_id": format!("TKT-{i}"), "note": "say \"hi\""}).to_string())
        .collect();
    assert_eq!(users, expected);
}

/// A gateway that allows 2 streams per connection: over one connection, hookrun's
/// client makes the third call wait for a stream; over three, six calls are at the
/// gateway at once. The gateway holds each call until six are in (5 s at most), so
/// with fewer connections the count never reaches six.
#[actix_web::test]
async fn calls_spread_over_the_http2_connections_asked_for() {
    let gateway = http2_only_gateway(Some(2), 6).await;
    let app = spawn_app_with(
        Backend::Sqlite,
        "gateway_http2_connections",
        &[
            ("HOOKRUN_LLM_BASE_URL", &gateway.url),
            ("HOOKRUN_LLM_HTTP", "2"),
            ("HOOKRUN_LLM_HTTP2_CONNECTIONS", "3"),
            ("HOOKRUN_AGENT_CONCURRENCY", "6"),
        ],
    )
    .await
    .expect("sqlite app");
    let (key, agent) = app.tenant_with_agent("acme").await;
    for id in app.send_accepted(&agent, 6, "conn").await {
        let row = app.wait_terminal(&key, &id).await;
        assert_eq!(row["status"], "succeeded", "{row}");
    }
    assert_eq!(gateway.connections.load(Ordering::SeqCst), 3);
    assert_eq!(*gateway.max_in_flight.borrow(), 6);
    assert!(
        gateway
            .seen
            .lock()
            .unwrap()
            .iter()
            .all(|call| call.version == Version::HTTP_2)
    );
}
