//! Shared helpers for integration tests.
#![allow(dead_code)]

pub mod app;
pub mod pg;
pub mod process;
