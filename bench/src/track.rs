//! Following executions from their 202 to a terminal row in `agent_test_executions`.
//!
//! The load generator hands over a sample of accepted execution ids with the moment
//! their 202 arrived; this polls the read model directly (primary-key lookups for the
//! pending samples every 10 ms, a count of terminal rows every 50 ms) until every
//! accepted execution is terminal. Visibility is thus resolved to about 10 ms.
//! Executions that make no progress for [`STALL`] once sending is over are counted as
//! stuck (an error) instead of waiting forever.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use hdrhistogram::Histogram;
use tokio::sync::{mpsc, oneshot};

use crate::load::{Accepted, new_histogram};
use crate::readmodel::Db;

const TICK: Duration = Duration::from_millis(10);
/// No execution became terminal for this long after sending ended: stop waiting.
pub const STALL: Duration = Duration::from_secs(30);

pub struct Visibility {
    /// 202-to-terminal latency of the samples, in microseconds.
    pub latency: Histogram<u64>,
    /// When the last accepted execution became terminal.
    pub all_visible_at: Instant,
    /// Executions that ended `failed`.
    pub failed: u64,
    /// Accepted executions still not terminal when progress stalled.
    pub stuck: u64,
}

/// Polls until `total` (sent once sending is over) executions beyond `baseline`
/// (terminal rows before the pass) are terminal, or `timeout` passes.
pub async fn follow(
    db: &Db,
    mut samples: mpsc::UnboundedReceiver<Accepted>,
    mut total: oneshot::Receiver<u64>,
    baseline: (u64, u64),
    timeout: Duration,
) -> anyhow::Result<Visibility> {
    let deadline = Instant::now() + timeout;
    let mut pending: HashMap<String, Instant> = HashMap::new();
    let mut latency = new_histogram();
    let mut expected: Option<u64> = None;
    let mut done_at: Option<Instant> = None;
    let mut failed = 0;
    let mut tick = 0u64;
    let mut terminal = 0;
    let mut progress_at = Instant::now();
    loop {
        while let Ok(s) = samples.try_recv() {
            pending.insert(s.execution_id, s.at);
        }
        if expected.is_none()
            && let Ok(n) = total.try_recv()
        {
            expected = Some(n);
            progress_at = Instant::now();
        }
        if !pending.is_empty() {
            let ids: Vec<String> = pending.keys().take(2000).cloned().collect();
            let seen = db.terminal_among(&ids).await?;
            let now = Instant::now();
            for id in seen {
                if let Some(at) = pending.remove(&id) {
                    let micros = now.saturating_duration_since(at).as_micros() as u64;
                    latency.saturating_record(micros.max(1));
                }
            }
        }
        if tick.is_multiple_of(5) || expected.is_some() && done_at.is_none() {
            let (ok, bad) = db.terminal_counts().await?;
            let now_terminal = (ok + bad).saturating_sub(baseline.0 + baseline.1);
            if now_terminal > terminal {
                terminal = now_terminal;
                progress_at = Instant::now();
            }
            failed = bad.saturating_sub(baseline.1);
            if done_at.is_none() && expected.is_some_and(|n| terminal >= n) {
                done_at = Some(Instant::now());
            }
        }
        if let Some(at) = done_at
            && pending.is_empty()
        {
            return Ok(Visibility {
                latency,
                all_visible_at: at,
                failed,
                stuck: 0,
            });
        }
        if let Some(n) = expected
            && done_at.is_none()
            && progress_at.elapsed() > STALL
        {
            eprintln!(
                "  {} of {n} executions stuck (not terminal, no progress for {STALL:?})",
                n - terminal
            );
            return Ok(Visibility {
                latency,
                all_visible_at: progress_at,
                failed,
                stuck: n - terminal,
            });
        }
        if Instant::now() > deadline {
            bail!(
                "executions not all terminal within {timeout:?} ({} samples pending, expected {expected:?})",
                pending.len()
            );
        }
        tick += 1;
        tokio::time::sleep(TICK).await;
    }
}
