//! Which rows a writer may already have put in a table. A rebuild fills a shadow table
//! that was empty when it began, and nothing else writes it meanwhile (a flush applies
//! only if the checkpoint is still where this writer left it, `behind.rs`), so a row
//! whose key it never wrote is not there: the event that brings such a key need not
//! ask the database for it. In a full rebuild that is every row's first event.
//!
//! The keys are kept as 64-bit hashes: two keys with one hash only cost a needless
//! load. Past [`MAX_KEYS`] (about 40 MiB) the writer stops keeping them and loads every
//! key, as a writer that does not know the table does.

use std::collections::HashSet;
use std::hash::BuildHasher;

/// Keys kept before giving up (a table of this many `u64`s takes about 38 MiB).
pub const MAX_KEYS: usize = 3_500_000;

/// The keys a writer has written to a table it has seen from empty, or nothing known.
#[derive(Debug)]
pub struct RowsWritten {
    /// Hashes of the keys written, by the set's own hasher; `None`: nothing known.
    keys: Option<HashSet<u64>>,
    cap: usize,
}

impl RowsWritten {
    /// For a table that is empty now and that only this writer will write.
    pub fn from_empty() -> Self {
        Self::capped(MAX_KEYS)
    }

    fn capped(cap: usize) -> Self {
        RowsWritten {
            keys: Some(HashSet::new()),
            cap,
        }
    }

    /// For a table whose rows are not known: every key may be there.
    pub fn unknown() -> Self {
        RowsWritten { keys: None, cap: 0 }
    }

    /// False only for a key this writer certainly never wrote to the table it watched.
    pub fn may_exist(&self, key: &str) -> bool {
        self.keys
            .as_ref()
            .is_none_or(|keys| keys.contains(&keys.hasher().hash_one(key)))
    }

    /// Notes the keys of rows about to be written (an upsert that then fails leaves
    /// extra keys, which only cost loads).
    pub fn record<'a>(&mut self, written: impl IntoIterator<Item = &'a str>) {
        let Some(keys) = &mut self.keys else {
            return;
        };
        let hasher = keys.hasher().clone();
        keys.extend(written.into_iter().map(|k| hasher.hash_one(k)));
        if keys.len() > self.cap {
            self.keys = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_keys_never_written_to_a_table_seen_from_empty_are_absent() {
        let mut written = RowsWritten::from_empty();
        assert!(!written.may_exist("a"));
        written.record(["a", "b"]);
        assert!(written.may_exist("a") && written.may_exist("b"));
        assert!(!written.may_exist("c"));
        assert!(RowsWritten::unknown().may_exist("c"));
    }

    #[test]
    fn past_the_cap_every_key_may_exist() {
        let mut written = RowsWritten::capped(2);
        written.record(["a", "b"]);
        assert!(!written.may_exist("never written"));
        written.record(["c"]);
        assert!(written.may_exist("never written"));
    }
}
