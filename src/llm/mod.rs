//! The LLM gateway: an OpenAI-compatible `POST /v1/chat/completions` (a LiteLLM proxy
//! in production), and which key to call it with.

mod client;
mod key;

pub use client::{ChatRequest, ChatResponse, LlmClient, LlmError, Usage};
pub use key::{ResolvedKey, resolve_key};
