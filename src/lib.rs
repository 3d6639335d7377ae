//! hookrun turns signed webhooks into LLM agent runs and keeps every step as an event.
//!
//! # Layout
//! Data flows one way: `http` → `actors` → `events` → `projections`, and `http`
//! reads projections.
//! - [`config`]: settings from the environment; backend choice as enums.
//! - [`startup`]: `Application::build(settings)` wires stores, actors, projector, server.
//! - [`domain`]: validated newtypes (tenant, agent, execution and delivery ids).
//! - [`webhook`]: pure verification of signatures and payload schemas (no I/O).
//! - [`http`]: actix-web handlers, one file per resource; error → status mapping.
//! - [`actors`]: the registry and the per-agent actor that queues and runs executions.
//! - [`events`]: event enums, envelope, the [`events::EventStore`] trait and backends.
//! - [`projections`]: read models (executions, agent summaries, daily stats), the runner,
//!   rebuilds into shadow tables, lag.
//! - [`audit`]: hash-chain checks and read-model verification (`hookrun verify`).
//! - [`erasure`]: erasing a tenant by destroying its data keys (crypto-shredding).
//! - [`recovery`]: node heartbeats and resuming executions whose node died.
//! - [`catalog`]: tenants, API keys and agents (configuration, SQL tables).
//! - [`deliveries`]: the delivery audit log (every webhook request, bounded).
//! - [`llm`]: the OpenAI-compatible gateway client and key resolution.
//! - [`crypto`]: sealing secrets at rest (XChaCha20-Poly1305).
//! - [`db`]: SQL connections and migrations (SQLite default, PostgreSQL).
//! - [`cli`]: the `hookrun` commands.

pub mod actors;
pub mod audit;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod db;
pub mod deliveries;
pub mod domain;
pub mod erasure;
pub mod events;
pub mod http;
pub mod llm;
pub mod migrations;
pub mod projections;
pub mod recovery;
pub mod startup;
pub mod webhook;
