//! Projections fold events into read models. A projection is a pure function of the
//! events (no side effects); the runner reads the global order from each projection's
//! checkpoint and writes rows and checkpoint in one transaction. Every read model can
//! be rebuilt from the events at any time, beside the live one.
//!
//! # Layout
//! - [`model`]: the [`Projection`] trait (name, version, pure fold) and row codec.
//! - [`executions`], [`agents`], [`daily`]: the read models and their folds.
//! - [`executions_table`], [`agents_table`]: the queries the API serves from them.
//! - [`batch`]: one batch into one table, with its checkpoint, in one transaction.
//! - [`any`]: every read model behind one trait object.
//! - [`runner`]: follows the store for every projection; rebuilds outdated ones on start.
//!   While they are level, one batch goes into all of them in one transaction (`together`).
//! - [`rebuild`], [`shadow`]: rebuilding into a shadow table and swapping it in;
//!   [`behind`]: the rebuild's rows, folded in memory and written behind; [`written`]:
//!   which rows it has written, so it does not look for the others.
//! - [`status`]: checkpoints and lag, for `/metrics` and `GET /api/projections`.
//! - [`sql`], [`rows`]: the SQL all read models share (both backends): the batch
//!   transaction and checkpoints; the row statements.

pub mod agents;
pub mod agents_table;
pub mod any;
mod aside;
pub mod batch;
pub mod behind;
pub mod daily;
pub mod executions;
pub mod executions_table;
pub mod model;
pub mod rebuild;
pub mod rows;
pub mod runner;
pub mod shadow;
mod shared_reads;
pub mod sql;
pub mod status;
mod together;
pub mod writes;
pub mod written;

pub use executions::ExecutionRow;
pub use model::Projection;
pub use runner::ProjectionRunner;
