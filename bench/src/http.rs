//! A minimal HTTP/1.1 client over hyper: one keep-alive connection per [`Conn`].
//!
//! The load generator gives each simulated sender its own `Conn`, so "concurrency N"
//! means exactly N TCP connections to the server. Admin calls (create tenant, create
//! agent, scrape metrics) use [`request`], which opens a connection per call.

use std::net::SocketAddr;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One keep-alive HTTP/1.1 connection.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake")?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Conn { sender })
    }

    /// Sends `req` and reads the whole answer.
    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> anyhow::Result<(StatusCode, Bytes)> {
        self.sender.ready().await.context("connection not ready")?;
        let resp = self.sender.send_request(req).await.context("send")?;
        let status = resp.status();
        let body = resp.into_body().collect().await.context("read body")?;
        Ok((status, body.to_bytes()))
    }
}

/// Builds a request with a Host header and a body (empty for `None`).
pub fn build(
    method: Method,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Bytes>,
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .body(Full::new(body.unwrap_or_default()))
        .expect("valid request")
}

/// One request on a fresh connection; the body parsed as JSON when it is JSON.
pub async fn request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    bearer: Option<&str>,
    json: Option<&serde_json::Value>,
) -> anyhow::Result<(StatusCode, serde_json::Value, Bytes)> {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(auth) = &auth {
        headers.push(("authorization", auth.as_str()));
    }
    let body = json.map(|j| Bytes::from(j.to_string()));
    let mut conn = Conn::open(addr).await?;
    let (status, bytes) = conn
        .send(build(method, addr, path, &headers, body))
        .await
        .with_context(|| format!("{path} on {addr}"))?;
    let value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Ok((status, value, bytes))
}
