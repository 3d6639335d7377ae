//! The envelope around every event: identity, metadata and position.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Version of the envelope and event payload format written by this build (see
/// `events::upcast` for what each version changed and how older ones are read).
pub const SCHEMA_VERSION: u32 = 2;

/// Metadata stored with every event (serialized as the event's `metadata` JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventMetadata {
    pub event_id: Uuid,
    pub tenant_id: String,
    pub agent_id: String,
    /// The delivery id of the webhook that started the chain of events.
    pub correlation_id: String,
    /// The event (or command) that caused this one.
    pub causation_id: Option<Uuid>,
    pub occurred_at: DateTime<Utc>,
    pub schema_version: u32,
}

/// An event about to be appended. The store treats `data` and `metadata` as opaque JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_id: Uuid,
    /// Stable name of the event (`ExecutionQueued`, …): part of the stored format.
    pub event_type: String,
    pub data: serde_json::Value,
    pub metadata: serde_json::Value,
}

/// A position in the global order of all events (`$all`).
///
/// Ordered lexicographically: `commit` first, then `prepare`. For SQLite both are
/// the global sequence number; for PostgreSQL `commit` is the appending transaction's
/// id and `prepare` the global sequence number, so that the order readers see is the
/// order transactions became visible (see `store::postgres`). The pair mirrors
/// KurrentDB's `$all` positions.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Position {
    pub commit: u64,
    pub prepare: u64,
}

impl Position {
    /// Before the first event.
    pub const START: Position = Position {
        commit: 0,
        prepare: 0,
    };
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.commit, self.prepare)
    }
}

impl std::str::FromStr for Position {
    type Err = String;

    /// Parses the `commit/prepare` form [`Display`](std::fmt::Display) writes.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (commit, prepare) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a position: expected <commit>/<prepare>"))?;
        let number = |v: &str| {
            v.trim()
                .parse::<u64>()
                .map_err(|e| format!("{s:?} is not a position: {e}"))
        };
        Ok(Position {
            commit: number(commit)?,
            prepare: number(prepare)?,
        })
    }
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordedEvent {
    pub stream_id: String,
    /// 0-based revision of the event within its stream.
    pub revision: u64,
    pub position: Position,
    pub event_id: Uuid,
    pub event_type: String,
    pub data: serde_json::Value,
    pub metadata: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
}

/// The id of an event that is not a retry of another: time-ordered (UUIDv7), so each
/// store's unique event-id index grows at its end instead of taking a write on another
/// page for every event (on SQLite, a page per event in each group commit).
pub fn fresh_event_id() -> Uuid {
    Uuid::now_v7()
}

/// Namespace for the hashed part of step event ids.
const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6b1f_2d0e_8c4a_4f51_9a57_3e1c_0d2b_7a11);

/// The id of the event of type `event_type` at `revision` of a stream that began at
/// `began` (an execution's `queued_at`, as stored): deterministic, so a retried append
/// of the same step carries the same id and is not stored twice; and time-ordered, so
/// it lands near the end of the event-id index like a fresh id does, not on a random
/// page of it. It is a UUIDv7 whose timestamp is `began` (milliseconds) and whose
/// other 74 bits are those of the UUIDv5 of `{stream}/{revision}/{event_type}`.
pub fn step_event_id(stream: &str, revision: u64, event_type: &str, began: DateTime<Utc>) -> Uuid {
    let step = format!("{stream}/{revision}/{event_type}");
    let hashed = Uuid::new_v5(&EVENT_ID_NAMESPACE, step.as_bytes());
    let mut rest = [0u8; 10];
    rest.copy_from_slice(&hashed.as_bytes()[6..]);
    let millis = u64::try_from(began.timestamp_millis()).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(millis, &rest).into_uuid()
}

impl NewEvent {
    /// Wraps a typed event (serialized with its `type` tag) and its metadata.
    pub fn from_typed<E: Serialize>(
        event_type: &str,
        event: &E,
        metadata: &EventMetadata,
    ) -> Result<Self, serde_json::Error> {
        Ok(NewEvent {
            event_id: metadata.event_id,
            event_type: event_type.to_owned(),
            data: serde_json::to_value(event)?,
            metadata: serde_json::to_value(metadata)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_step_id_is_the_same_for_the_same_step_and_differs_for_another() {
        let began = Utc.timestamp_millis_opt(1_780_000_000_123).unwrap();
        let id = step_event_id("execution-a", 1, "ExecutionStarted", began);
        // Stored ids do not change between builds: the UUIDv5 of
        // "execution-a/1/ExecutionStarted" in EVENT_ID_NAMESPACE, under the time.
        assert_eq!(id.to_string(), "019e7044-887b-7219-b48d-6f4f26edfe84");
        for (stream, revision, event_type) in [
            ("execution-a", 2, "ExecutionStarted"),
            ("execution-a", 1, "LlmCalled"),
            ("execution-b", 1, "ExecutionStarted"),
        ] {
            let other = step_event_id(stream, revision, event_type, began);
            assert_ne!(id, other, "{stream} {revision} {event_type}");
        }
    }

    #[test]
    fn a_step_id_sorts_by_the_time_its_stream_began() {
        let began = Utc.timestamp_millis_opt(1_780_000_000_123).unwrap();
        let id = step_event_id("execution-a", 1, "ExecutionStarted", began);
        assert_eq!(id.get_version_num(), 7);
        let (secs, nanos) = id.get_timestamp().unwrap().to_unix();
        assert_eq!((secs, nanos / 1_000_000), (1_780_000_000, 123));
        // Across streams and steps, a later start sorts after, also as stored text.
        let later = step_event_id(
            "execution-0",
            0,
            "A",
            began + chrono::Duration::milliseconds(1),
        );
        assert!(later > id);
        assert!(later.to_string() > id.to_string());
    }
}
