//! Projections fold events into read models. A projection is a pure function of the
//! events (no side effects); the [`runner`] reads the global order from its checkpoint
//! and writes rows and checkpoint in one transaction.

pub mod executions;
pub mod executions_table;
pub mod runner;

pub use executions::ExecutionRow;
pub use runner::ProjectionRunner;
