//! Rebuild: how fast `hookrun projections rebuild` folds 1,000,000 events.
//!
//! TODO(rebuild): the command is being built in another branch. Once
//! `hookrun projections rebuild --help` succeeds, fill [`measure`]: seed 1,000,000 execution events (250,000
//! streams of `ExecutionQueued`, `ExecutionStarted`, `LlmCalled`, `ExecutionSucceeded`,
//! cloned from one real execution recorded by the server, inserted directly in batches),
//! stop the server, run `hookrun projections rebuild` with the same environment, and
//! report events/s = 1,000,000 / wall time, plus the row count it produced.

use super::{Ctx, Figures};
use crate::server::Backend;

/// Whether the hookrun binary has `projections rebuild` (clap exits 2 on an unknown
/// subcommand, 0 on `--help` of a known one).
pub fn available(ctx: &Ctx) -> bool {
    std::process::Command::new(&ctx.env.hookrun)
        .args(["projections", "rebuild", "--help"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `None` while the command does not exist ("not available yet").
pub async fn run(ctx: &Ctx, backend: Backend) -> anyhow::Result<Option<Figures>> {
    if !available(ctx) {
        return Ok(None);
    }
    measure(ctx, backend).await.map(Some)
}

async fn measure(_ctx: &Ctx, backend: Backend) -> anyhow::Result<Figures> {
    anyhow::bail!(
        "`hookrun projections rebuild` exists now, but the rebuild benchmark is still a TODO \
         (bench/src/scenarios/rebuild.rs) on {}",
        backend.name()
    )
}
