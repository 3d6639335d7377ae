//! Audit tools: checks that the stored history is intact and that the read models are
//! what the history says they should be.
//!
//! - [`chain`]: every stream's hash chain (`hookrun verify --chain`).
//! - [`verify`]: every read model against a replay of the history (`hookrun verify`).

pub mod chain;
pub mod verify;
