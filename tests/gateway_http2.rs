//! `HOOKRUN_LLM_HTTP=2`: hookrun calls the gateway over HTTP/2 without TLS (prior
//! knowledge). The gateway here speaks nothing else, so an execution can only succeed
//! if hookrun did; it also checks what arrived on the stream.

use crate::support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use support::app::{Backend, GATEWAY_OUTPUT, PLATFORM_KEY, completion, spawn_app_with};
use tokio::net::TcpListener;

on_both_backends!(an_http2_only_gateway_runs_the_agent_when_http2_is_set);

/// What the gateway saw of one call.
struct Seen {
    version: Version,
    authorization: Option<String>,
    body: Value,
}

/// An HTTP/2-only gateway on a free port: every call gets the standard completion.
async fn http2_only_gateway() -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = log.clone();
            let service = service_fn(move |req: Request<Incoming>| {
                let log = log.clone();
                async move {
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
                    let answer = completion(GATEWAY_OUTPUT).to_string();
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(answer)))
                            .unwrap(),
                    )
                }
            });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    (url, seen)
}

async fn an_http2_only_gateway_runs_the_agent_when_http2_is_set(backend: Backend) {
    let (url, seen) = http2_only_gateway().await;
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
