//! A stand-in for an OpenAI-compatible gateway (a LiteLLM proxy in production) that
//! costs as little as possible: `POST /v1/chat/completions` answers a fixed completion
//! with usage, after an optional fixed delay. `GET /stats` reports how many requests it
//! saw and the most it held at once (fan-in), as JSON. It speaks HTTP/1.1 and HTTP/2
//! (also without TLS, by prior knowledge), with no limit on concurrent streams.
//!
//! Run it standalone with `hookrun-bench gateway --listen 127.0.0.1:4000 --delay-ms 0`;
//! it prints `listening on ADDR` once ready.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

const COMPLETION: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":0,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Triage: restart the worker."},"finish_reason":"stop"}],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}}"#;

#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
}

/// Serves until the process ends.
pub async fn serve(listen: SocketAddr, delay: Duration) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    println!("listening on {}", listener.local_addr()?);
    let stats = Arc::new(Stats::default());
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: say so, back off, go on.
                eprintln!("gateway: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let stats = stats.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, stats.clone(), delay));
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder.http2().max_concurrent_streams(None);
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    stats: Arc<Stats>,
    delay: Duration,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/v1/chat/completions") => {
            let _ = req.into_body().collect().await?;
            stats.requests.fetch_add(1, Ordering::Relaxed);
            let now = stats.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
            stats.max_in_flight.fetch_max(now, Ordering::Relaxed);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            stats.in_flight.fetch_sub(1, Ordering::Relaxed);
            Ok(json(
                StatusCode::OK,
                Bytes::from_static(COMPLETION.as_bytes()),
            ))
        }
        (&Method::GET, "/stats") => {
            let body = serde_json::json!({
                "requests": stats.requests.load(Ordering::Relaxed),
                "in_flight": stats.in_flight.load(Ordering::Relaxed),
                "max_in_flight": stats.max_in_flight.load(Ordering::Relaxed),
            });
            Ok(json(StatusCode::OK, Bytes::from(body.to_string())))
        }
        _ => Ok(json(
            StatusCode::NOT_FOUND,
            Bytes::from_static(br#"{"error":{"message":"not found"}}"#),
        )),
    }
}

fn json(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(body))
        .expect("valid response")
}
