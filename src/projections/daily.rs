//! The `agent_daily_stats` read model: per agent and UTC day, executions accepted that
//! day, executions that finished that day by outcome, their tokens, and the p50/p95 of
//! their durations.
//!
//! Each event counts on the day it happened (`queued_at`, `completed_at`), so folding
//! needs no state beyond the day's row. Exact percentiles would need every duration;
//! the row keeps a log-bucketed histogram instead (buckets 5% wide), so p50/p95 are
//! within 5% of the exact value and the row stays small however busy the day.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::model::Projection;
use crate::events::RecordedEvent;
use crate::events::execution::{self, ExecutionEvent};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DailyStats {
    #[serde(skip)]
    pub stat_key: String,
    pub agent_id: String,
    #[serde(skip)]
    pub tenant_id: String,
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    pub queued: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    /// Finished executions whose duration is in the histogram.
    pub duration_count: i64,
    /// `{bucket: count}` (see [`bucket_of`]).
    #[serde(skip)]
    pub duration_histogram: String,
    pub p50_duration_ms: Option<i64>,
    pub p95_duration_ms: Option<i64>,
}

crate::record!(DailyStats, key = stat_key, tenant = tenant_id, {
    stat_key: text,
    agent_id: text fixed,
    tenant_id: text fixed,
    day: text fixed,
    queued: int,
    succeeded: int,
    failed: int,
    prompt_tokens: int,
    completion_tokens: int,
    total_tokens: int,
    duration_count: int,
    duration_histogram: text,
    p50_duration_ms: opt_int,
    p95_duration_ms: opt_int,
});

#[derive(Debug)]
pub enum DayFact {
    Queued,
    Finished {
        succeeded: bool,
        duration_ms: u64,
        tokens: [u64; 3],
    },
}

/// Who and when, shared by every fact.
#[derive(Debug)]
pub struct Dated {
    agent_id: String,
    tenant_id: String,
    day: String,
    fact: DayFact,
}

pub struct DailyAgentStats;

impl Projection for DailyAgentStats {
    type Row = DailyStats;
    type Event = Dated;
    const NAME: &'static str = "agent_daily_stats";
    const VERSION: u32 = 1;

    fn decode(event: &RecordedEvent) -> Option<(String, Dated)> {
        if !event.stream_id.starts_with(execution::STREAM_PREFIX) {
            return None;
        }
        let meta = |k: &str| event.metadata.get(k)?.as_str().map(str::to_owned);
        let (agent_id, tenant_id) = (meta("agent_id")?, meta("tenant_id")?);
        let (at, fact): (DateTime<Utc>, DayFact) =
            match crate::events::upcast::decode::<ExecutionEvent>(event).ok()? {
                ExecutionEvent::ExecutionQueued { queued_at, .. } => (queued_at, DayFact::Queued),
                ExecutionEvent::ExecutionSucceeded {
                    prompt_tokens,
                    completion_tokens,
                    total_tokens,
                    duration_ms,
                    completed_at,
                    ..
                } => (
                    completed_at,
                    DayFact::Finished {
                        succeeded: true,
                        duration_ms,
                        tokens: [
                            prompt_tokens.unwrap_or(0),
                            completion_tokens.unwrap_or(0),
                            total_tokens.unwrap_or(0),
                        ],
                    },
                ),
                ExecutionEvent::ExecutionFailed {
                    duration_ms,
                    completed_at,
                    ..
                } => (
                    completed_at,
                    DayFact::Finished {
                        succeeded: false,
                        duration_ms,
                        tokens: [0; 3],
                    },
                ),
                _ => return None,
            };
        let day = at.format("%Y-%m-%d").to_string();
        Some((
            format!("{agent_id}/{day}"),
            Dated {
                agent_id,
                tenant_id,
                day,
                fact,
            },
        ))
    }

    fn apply(row: Option<DailyStats>, event: Dated, _: &RecordedEvent) -> Option<DailyStats> {
        let mut row = row.unwrap_or_else(|| DailyStats {
            stat_key: format!("{}/{}", event.agent_id, event.day),
            agent_id: event.agent_id,
            tenant_id: event.tenant_id,
            day: event.day,
            queued: 0,
            succeeded: 0,
            failed: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            total_tokens: 0,
            duration_count: 0,
            duration_histogram: "{}".into(),
            p50_duration_ms: None,
            p95_duration_ms: None,
        });
        match event.fact {
            DayFact::Queued => row.queued += 1,
            DayFact::Finished {
                succeeded,
                duration_ms,
                tokens,
            } => {
                if succeeded {
                    row.succeeded += 1;
                } else {
                    row.failed += 1;
                }
                row.prompt_tokens += tokens[0] as i64;
                row.completion_tokens += tokens[1] as i64;
                row.total_tokens += tokens[2] as i64;
                let mut histogram: BTreeMap<u32, u64> =
                    serde_json::from_str(&row.duration_histogram).unwrap_or_default();
                *histogram.entry(bucket_of(duration_ms)).or_default() += 1;
                row.duration_count += 1;
                row.p50_duration_ms = percentile(&histogram, 0.50).map(|v| v as i64);
                row.p95_duration_ms = percentile(&histogram, 0.95).map(|v| v as i64);
                row.duration_histogram =
                    serde_json::to_string(&histogram).expect("a map of numbers serializes");
            }
        }
        Some(row)
    }
}

const GROWTH: f64 = 1.05;

/// Bucket 0 holds 0 ms; bucket `b ≥ 1` holds `[1.05^(b-1), 1.05^b)` ms.
pub fn bucket_of(ms: u64) -> u32 {
    if ms == 0 {
        0
    } else {
        1 + ((ms as f64).ln() / GROWTH.ln()).floor() as u32
    }
}

/// The smallest whole number of milliseconds in a bucket: what the bucket reports.
pub fn bucket_value(bucket: u32) -> u64 {
    if bucket == 0 {
        0
    } else {
        GROWTH.powi(bucket as i32 - 1).ceil() as u64
    }
}

/// The nearest-rank percentile `p` (0..=1) of the histogram's values.
pub fn percentile(histogram: &BTreeMap<u32, u64>, p: f64) -> Option<u64> {
    let n: u64 = histogram.values().sum();
    if n == 0 {
        return None;
    }
    let rank = ((p * n as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (bucket, count) in histogram {
        seen += count;
        if seen >= rank {
            return Some(bucket_value(*bucket));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_report_values_within_five_percent() {
        for ms in [1u64, 2, 3, 10, 99, 1000, 12_345, 3_600_000] {
            let reported = bucket_value(bucket_of(ms)) as f64;
            let error = (reported - ms as f64).abs() / ms as f64;
            assert!(error <= 0.05, "{ms} ms reported as {reported}");
        }
        assert_eq!(bucket_value(bucket_of(0)), 0);
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut h = BTreeMap::new();
        for ms in 1..=100u64 {
            *h.entry(bucket_of(ms)).or_default() += 1;
        }
        let p50 = percentile(&h, 0.5).unwrap() as f64;
        let p95 = percentile(&h, 0.95).unwrap() as f64;
        assert!((p50 - 50.0).abs() <= 2.5, "p50 {p50}");
        assert!((p95 - 95.0).abs() <= 4.75, "p95 {p95}");
        assert_eq!(percentile(&BTreeMap::new(), 0.5), None);
    }
}
