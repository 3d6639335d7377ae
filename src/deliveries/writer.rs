//! The background task that writes delivery records: batches from the queue, one
//! transaction each, pruning what exceeds the per-agent bounds in the same
//! transaction; and every few seconds, the aggregate rows of suppressed requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::{DeliveryRecord, Outcome, store};
use crate::config::AuditSettings;
use crate::db::Db;
use crate::domain::AgentId;

/// Records written per transaction at most.
const BATCH: usize = 1024;

/// Shortest time between two writes while records keep coming (a flush does not wait).
const LINGER: Duration = Duration::from_millis(50);

/// How often suppressed requests are written as aggregate rows.
const AGGREGATE_EVERY: Duration = Duration::from_secs(5);

pub(super) enum Msg {
    Record(DeliveryRecord),
    /// Answered once everything queued before it (and the aggregates) is written.
    Flush(oneshot::Sender<()>),
}

/// Suppressed requests are aggregated per agent, outcome, reason and status.
pub(super) type AggregateKey = (Option<AgentId>, Outcome, Option<&'static str>, u16);

/// Adds a suppressed request to its aggregate: the first one's time, the latest
/// one's details, the mean duration and the count.
pub(super) fn fold(
    aggregates: &Mutex<HashMap<AggregateKey, DeliveryRecord>>,
    record: DeliveryRecord,
) {
    let key = (
        record.agent.as_ref().map(|(id, _)| *id),
        record.outcome,
        record.reason,
        record.status,
    );
    let mut aggregates = aggregates.lock().expect("audit aggregates lock");
    match aggregates.get_mut(&key) {
        None => {
            let mut first = record;
            first.delivery_id = None;
            first.execution_id = None;
            aggregates.insert(key, first);
        }
        Some(agg) => {
            let n = agg.count as f64;
            agg.duration_ms = (agg.duration_ms * n + record.duration_ms) / (n + 1.0);
            agg.count += 1;
            agg.requested_agent = record.requested_agent;
            agg.source_addr = record.source_addr;
        }
    }
}

pub(super) async fn run(
    db: Db,
    settings: AuditSettings,
    mut rx: mpsc::Receiver<Msg>,
    aggregates: Arc<Mutex<HashMap<AggregateKey, DeliveryRecord>>>,
) {
    let mut tick = tokio::time::interval(AGGREGATE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut messages = Vec::with_capacity(BATCH);
    let mut last_write: Option<Instant> = None;
    loop {
        tokio::select! {
            received = rx.recv_many(&mut messages, BATCH) => {
                if received == 0 {
                    // Every sender is gone (shutdown): write what is left and stop.
                    write_aggregates(&db, &settings, &aggregates).await;
                    return;
                }
                // Under a steady stream, gather for up to LINGER since the last write:
                // one transaction (one fsync on the writer the event store shares) per
                // LINGER rather than one per wake-up. After a quiet spell, at once.
                let wait = last_write.map_or(Duration::ZERO, |at| LINGER.saturating_sub(at.elapsed()));
                if !wait.is_zero() && !has_flush(&messages) {
                    let _ = tokio::time::timeout(wait, async {
                        while messages.len() < BATCH && !has_flush(&messages) {
                            let room = BATCH - messages.len();
                            if rx.recv_many(&mut messages, room).await == 0 {
                                break;
                            }
                        }
                    })
                    .await;
                }
                let mut records = Vec::with_capacity(messages.len());
                let mut flushes = Vec::new();
                for msg in messages.drain(..) {
                    match msg {
                        Msg::Record(r) => records.push(r),
                        Msg::Flush(done) => flushes.push(done),
                    }
                }
                write(&db, &settings, &records).await;
                last_write = Some(Instant::now());
                if !flushes.is_empty() {
                    write_aggregates(&db, &settings, &aggregates).await;
                    for done in flushes {
                        let _ = done.send(());
                    }
                }
            }
            _ = tick.tick() => write_aggregates(&db, &settings, &aggregates).await,
        }
    }
}

fn has_flush(messages: &[Msg]) -> bool {
    messages.iter().any(|m| matches!(m, Msg::Flush(_)))
}

async fn write_aggregates(
    db: &Db,
    settings: &AuditSettings,
    aggregates: &Mutex<HashMap<AggregateKey, DeliveryRecord>>,
) {
    let records: Vec<DeliveryRecord> = {
        let mut aggregates = aggregates.lock().expect("audit aggregates lock");
        aggregates.drain().map(|(_, r)| r).collect()
    };
    write(db, settings, &records).await;
}

async fn write(db: &Db, settings: &AuditSettings, records: &[DeliveryRecord]) {
    if records.is_empty() {
        return;
    }
    if let Err(e) = store::insert_and_prune(db, settings, records).await {
        // The audit log must never break webhooks: the rows are lost, the cause logged.
        tracing::warn!(error = %e, rows = records.len(), "could not write delivery records");
    }
}
