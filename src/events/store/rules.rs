//! Append rules every backend applies the same way: the expected-version check, the
//! idempotent re-append of stored ids, and the hash chain of new events.

use std::collections::HashSet;

use super::{AppendResult, ExpectedVersion, StoreError};
use crate::events::chain::{self, ChainedEvent, Hash};
use crate::events::envelope::{NewEvent, Position};

/// The hash new events chain to, from the stream's last stored hash (`None`: the
/// stream is new, or its last event predates hashes — the chain starts here).
pub(in crate::events::store) fn previous_hash(
    stream: &str,
    stored: Option<String>,
) -> Result<Option<Hash>, StoreError> {
    stored
        .map(|h| {
            chain::from_hex(&h).ok_or_else(|| {
                StoreError::Backend(format!(
                    "the last event of {stream} has a malformed hash {h:?}: \
                     refusing to extend a damaged chain"
                ))
            })
        })
        .transpose()
}

/// The stored (hex) hash of `event` at `revision`, and advances `previous` to it.
pub(in crate::events::store) fn chain(
    previous: &mut Option<Hash>,
    stream: &str,
    revision: u64,
    event: &NewEvent,
    data: &str,
    metadata: &str,
) -> String {
    let hash = chain::event_hash(
        previous.as_ref(),
        &ChainedEvent {
            stream_id: stream,
            revision,
            event_id: &event.event_id,
            event_type: &event.event_type,
            data,
            metadata,
        },
    );
    *previous = Some(hash);
    chain::to_hex(&hash)
}

/// An event already stored under one of the ids being appended.
#[derive(Debug, Clone)]
pub(in crate::events::store) struct StoredId {
    pub stream_id: String,
    pub revision: u64,
    pub position: Position,
}

/// An append carries at least one event, and no event id twice.
pub(in crate::events::store) fn check_events(
    stream: &str,
    events: &[NewEvent],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Err(StoreError::Backend(format!(
            "append to {stream} has no events: an append needs at least one"
        )));
    }
    let mut seen = HashSet::with_capacity(events.len());
    if let Some(twice) = events.iter().find(|e| !seen.insert(e.event_id)) {
        return Err(StoreError::Backend(format!(
            "append to {stream} carries event id {} twice",
            twice.event_id
        )));
    }
    Ok(())
}

/// `current`: revision of the stream's last event, `None` if the stream does not exist.
pub(in crate::events::store) fn check_expected(
    stream: &str,
    expected: ExpectedVersion,
    current: Option<u64>,
) -> Result<(), StoreError> {
    let ok = match expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream => current.is_none(),
        ExpectedVersion::Exact(n) => current == Some(n),
    };
    if ok {
        Ok(())
    } else {
        Err(StoreError::WrongExpectedVersion {
            stream: stream.to_owned(),
            expected,
            actual: current,
        })
    }
}

/// Decides an append whose ids are (partly) stored already: `None` when none are
/// (append normally); the stored result when all are, in `stream` (a retried append:
/// nothing is written, whatever the expected version); an error otherwise.
pub(in crate::events::store) fn already_stored(
    stream: &str,
    events: &[NewEvent],
    stored: &[StoredId],
) -> Option<Result<AppendResult, StoreError>> {
    if stored.is_empty() {
        return None;
    }
    if let Some(other) = stored.iter().find(|s| s.stream_id != stream) {
        return Some(Err(StoreError::Backend(format!(
            "append to {stream}: an event id is already used in stream {} (revision {})",
            other.stream_id, other.revision
        ))));
    }
    let distinct = events
        .iter()
        .map(|e| e.event_id)
        .collect::<HashSet<_>>()
        .len();
    if stored.len() != distinct {
        return Some(Err(StoreError::Backend(format!(
            "append to {stream} mixes {} already stored event ids with {} new ones: \
             a retried append must carry exactly the same events",
            stored.len(),
            distinct - stored.len()
        ))));
    }
    let last = stored.iter().max_by_key(|s| s.revision)?;
    Some(Ok(AppendResult {
        next_expected_version: last.revision,
        position: last.position,
    }))
}
