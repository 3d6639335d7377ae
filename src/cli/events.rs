//! `hookrun events`: a stream, a category of streams, or all events from a position,
//! as JSON lines; `--follow` keeps printing new events as they are stored (a catch-up
//! subscription to `$all`, woken by the store's change signal).

use std::io::Write;

use futures::StreamExt;

use crate::config::Settings;
use crate::events::store::subscription::subscribe_all;
use crate::events::{Position, RecordedEvent};
use crate::startup::Stores;

/// Which events to print.
#[derive(Debug, Clone)]
pub enum Selection {
    All,
    /// One stream, by name.
    Stream(String),
    /// Every stream named `{category}-…`.
    Category(String),
}

impl Selection {
    fn matches(&self, event: &RecordedEvent) -> bool {
        match self {
            Selection::All => true,
            Selection::Stream(s) => &event.stream_id == s,
            Selection::Category(c) => event
                .stream_id
                .strip_prefix(c.as_str())
                .is_some_and(|rest| rest.starts_with('-')),
        }
    }
}

const BATCH: usize = 1000;

pub(super) async fn run(
    settings: Settings,
    selection: Selection,
    from: Option<Position>,
    follow: bool,
) -> anyhow::Result<()> {
    let stores = Stores::open(&settings).await?;
    let mut out = std::io::stdout();
    let mut print = |event: &RecordedEvent| -> anyhow::Result<()> {
        writeln!(out, "{}", serde_json::to_string(event)?)?;
        if follow {
            out.flush()?; // a follower (a pipe, `jq`) sees each event as it comes
        }
        Ok(())
    };
    let mut after = from.unwrap_or(Position::START);
    match &selection {
        // One stream is read by revision (its own index), unless following it.
        Selection::Stream(stream) if from.is_none() && !follow => {
            let mut revision = 0;
            loop {
                let batch = stores.store.read_stream(stream, revision, BATCH).await?;
                batch.iter().try_for_each(&mut print)?;
                match batch.last() {
                    Some(last) if batch.len() == BATCH => revision = last.revision + 1,
                    _ => return Ok(()),
                }
            }
        }
        _ if !follow => loop {
            let batch = stores.store.read_all(after, BATCH).await?;
            batch
                .iter()
                .filter(|e| selection.matches(e))
                .try_for_each(&mut print)?;
            match batch.last() {
                Some(last) => after = last.position,
                None => return Ok(()),
            }
        },
        _ => {
            let mut events = subscribe_all(stores.store.clone(), after, BATCH);
            while let Some(event) = events.next().await {
                match event {
                    Ok(event) if selection.matches(&event) => print(&event)?,
                    Ok(_) => {}
                    Err(e) => tracing::warn!("reading events failed, retrying: {e}"),
                }
            }
            Ok(())
        }
    }
}
