//! Actors: one [`AgentActor`] per agent, started on demand by the [`Registry`].
//!
//! The HTTP layer hands a verified, validated webhook to the registry; the agent's
//! actor decides (dedupe, capacity), appends `ExecutionQueued`, answers, and then runs
//! the execution (claim → LLM call → outcome), recording every step as an event.
//! Actors talk to the event store and the LLM gateway; they do no SQL and know nothing
//! of HTTP.

mod agent;
mod registry;
pub mod run;
mod state;

pub use agent::{AgentActor, Enqueue, EnqueueError, Enqueued, Resume};
pub use registry::Registry;
pub use run::{ExecutionDeps, Job};
pub use state::ExecutionState;
