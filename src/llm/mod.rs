//! The LLM gateway: an OpenAI-compatible `POST /v1/chat/completions` (a LiteLLM proxy
//! in production), which key to call it with, and how to retry.

mod client;
mod key;
mod request_body;
mod retry;

pub use client::{ChatRequest, ChatResponse, LlmClient, LlmError, Usage};
pub use key::{ResolvedKey, resolve_key};
pub use retry::RetryPolicy;
