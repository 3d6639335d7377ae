//! reqwest client for an OpenAI-compatible chat completions endpoint.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

use super::key::ResolvedKey;
use super::request_body::RequestBody;
use crate::config::LlmHttp;

#[derive(Clone)]
pub struct LlmClient {
    /// One client over HTTP/1.1 (its pool opens a socket per call in flight); over
    /// HTTP/2, one per connection wanted, each holding one connection, taken in turn:
    /// a client never opens a second HTTP/2 connection when the gateway's stream limit
    /// is reached, it makes calls wait for a stream.
    http: Arc<[reqwest::Client]>,
    next: Arc<AtomicUsize>,
    endpoint: String,
}

/// One chat completion: the agent's system prompt and the payload as the user message.
pub struct ChatRequest<'a> {
    pub model: &'a str,
    pub params: &'a serde_json::Map<String, Value>,
    pub system_prompt: &'a str,
    pub user_message: &'a str,
    pub key: &'a ResolvedKey,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Usage {
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub total_tokens: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    pub content: String,
    pub usage: Usage,
    pub latency: Duration,
}

/// A failed call, classified so the caller can decide whether to retry.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct LlmError {
    /// `connect`, `timeout`, `rate_limited`, `server_error`, `client_error`, `auth`,
    /// `invalid_response`.
    pub kind: &'static str,
    pub status: Option<u16>,
    pub message: String,
    pub retryable: bool,
    /// The gateway's `Retry-After`, if it sent one.
    pub retry_after: Option<Duration>,
}

impl LlmClient {
    pub fn new(base_url: &str, version: LlmHttp) -> anyhow::Result<Self> {
        let builder = || {
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .pool_max_idle_per_host(64)
        };
        let http = match version {
            LlmHttp::Http1 => vec![builder().http1_only().build()?],
            // A connection carries many calls: pings notice a dead one long before the
            // calls' own timeouts would.
            LlmHttp::Http2 { connections } => (0..connections.get())
                .map(|_| {
                    builder()
                        .http2_prior_knowledge()
                        .http2_keep_alive_interval(Duration::from_secs(20))
                        .http2_keep_alive_timeout(Duration::from_secs(10))
                        .http2_keep_alive_while_idle(true)
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        Ok(LlmClient {
            http: http.into(),
            next: Arc::new(AtomicUsize::new(0)),
            endpoint: format!("{}/v1/chat/completions", base_url.trim_end_matches('/')),
        })
    }

    /// The client for the next call: the one there is, or the next connection's.
    fn http(&self) -> &reqwest::Client {
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        &self.http[turn % self.http.len()]
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub async fn chat(&self, req: ChatRequest<'_>) -> Result<ChatResponse, LlmError> {
        let body = RequestBody {
            params: req.params,
            model: req.model,
            system_prompt: req.system_prompt,
            user_message: req.user_message,
        };
        let mut request = self
            .http()
            .post(&self.endpoint)
            .timeout(req.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_bytes());
        if let Some(key) = &req.key.key {
            request = request.bearer_auth(key);
        }
        let started = Instant::now();
        let response = request.send().await.map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response
            .text()
            .await
            .map_err(|e| self.transport_error(&e))?;
        let latency = started.elapsed();
        if !status.is_success() {
            return Err(status_error(status.as_u16(), &text, retry_after));
        }
        parse_completion(&text, latency)
    }

    fn transport_error(&self, e: &reqwest::Error) -> LlmError {
        let (kind, what) = if e.is_timeout() {
            ("timeout", "timed out calling")
        } else if e.is_connect() {
            ("connect", "could not connect to")
        } else {
            ("connect", "request failed to")
        };
        LlmError {
            kind,
            status: None,
            message: format!(
                "{what} the LLM gateway at {}: {}",
                self.endpoint,
                error_chain(e)
            ),
            retryable: true,
            retry_after: None,
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn status_error(status: u16, body: &str, retry_after: Option<Duration>) -> LlmError {
    // OpenAI and LiteLLM answer {"error": {"message": …}}; fall back to the raw text.
    let message = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| match &v["error"] {
            Value::Object(e) => e.get("message").and_then(Value::as_str).map(str::to_owned),
            Value::String(s) => Some(s.clone()),
            _ => v["detail"].as_str().map(str::to_owned),
        })
        .unwrap_or_else(|| body.chars().take(500).collect());
    let (kind, retryable) = match status {
        429 => ("rate_limited", true),
        401 | 403 => ("auth", false),
        s if s >= 500 => ("server_error", true),
        _ => ("client_error", false),
    };
    LlmError {
        kind,
        status: Some(status),
        message: format!("LLM gateway answered {status}: {message}"),
        retryable,
        retry_after,
    }
}

fn parse_completion(body: &str, latency: Duration) -> Result<ChatResponse, LlmError> {
    #[derive(Deserialize)]
    struct Completion {
        choices: Vec<Choice>,
        #[serde(default)]
        usage: Option<Usage>,
    }
    #[derive(Deserialize)]
    struct Choice {
        message: Message,
    }
    #[derive(Deserialize)]
    struct Message {
        content: Option<String>,
    }
    let invalid = |why: String| LlmError {
        kind: "invalid_response",
        status: None,
        message: format!("LLM gateway sent an invalid completion: {why}"),
        retryable: false,
        retry_after: None,
    };
    let completion: Completion = serde_json::from_str(body).map_err(|e| invalid(e.to_string()))?;
    let choice = completion
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| invalid("no choices".into()))?;
    Ok(ChatResponse {
        content: choice.message.content.unwrap_or_default(),
        usage: completion.usage.unwrap_or_default(),
        latency,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_errors_keep_the_gateway_message_and_are_classified() {
        let e = status_error(
            400,
            r#"{"error":{"message":"Invalid model name passed in model=nope"}}"#,
            None,
        );
        assert_eq!(
            (e.kind, e.retryable, e.status),
            ("client_error", false, Some(400))
        );
        assert!(e.message.contains("Invalid model name"), "{}", e.message);
        assert!(status_error(503, "no healthy deployments", None).retryable);
        assert!(status_error(429, "{}", None).retryable);
        assert!(!status_error(401, "{}", None).retryable);
    }

    #[test]
    fn parses_content_and_usage() {
        let body = r#"{"choices":[{"message":{"role":"assistant","content":"hi"}}],
                       "usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;
        let r = parse_completion(body, Duration::from_millis(5)).unwrap();
        assert_eq!(r.content, "hi");
        assert_eq!(r.usage.total_tokens, Some(4));
        assert_eq!(
            parse_completion("{}", Duration::ZERO).unwrap_err().kind,
            "invalid_response"
        );
    }
}
