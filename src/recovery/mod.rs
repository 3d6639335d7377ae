//! Recovery: nothing accepted is lost when a node dies.
//!
//! Every node beats a heartbeat into the `nodes` table and sweeps, at start and then
//! periodically, for unfinished executions (from the `agent_test_executions` read
//! model) whose owner stopped beating or whose lease ran out. For each it reads the
//! execution's stream — the source of truth, not the read model — and hands it to the
//! agent's actor, which re-claims it with `ExecutionStarted` at the expected version:
//! when two nodes try, one wins and the other lets go.

pub mod nodes;
mod sweeper;

pub use sweeper::Sweeper;
