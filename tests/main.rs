//! Every integration test, in one test binary: the crate's dependencies are linked
//! once, not once per file. Each module is one area (`cargo test --test integration
//! pipeline::` runs one); most start the real server against a fresh SQLite file and a
//! fresh PostgreSQL database per test.

#[macro_use]
mod support;

mod agent_actors;
mod agent_cache;
mod api;
mod audit;
mod chaos;
mod cli;
mod deliveries;
mod durability;
mod erasure;
mod event_store;
mod gateway_http2;
mod hostile_input;
mod isolation;
mod key_rotation;
mod litellm;
mod pipeline;
mod projections;
mod read_model_commits;
mod read_models;
mod recovery_order;
mod rejections;
mod secret_rotation;
mod signature_vectors;
mod storage_layout;
mod test_databases;
mod upcast;
mod webhook_protocols;
