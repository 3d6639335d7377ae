//! `hookrun events`: a stream, or all events in global order, as JSON lines.

use std::io::Write;

use crate::config::Settings;
use crate::events::Position;
use crate::startup::Stores;

pub(super) async fn run(settings: Settings, stream: Option<String>) -> anyhow::Result<()> {
    let stores = Stores::open(&settings).await?;
    let mut out = std::io::stdout().lock();
    match stream {
        Some(stream) => {
            let mut from = 0;
            loop {
                let batch = stores.store.read_stream(&stream, from, 1000).await?;
                for event in &batch {
                    writeln!(out, "{}", serde_json::to_string(event)?)?;
                }
                match batch.last() {
                    Some(last) if batch.len() == 1000 => from = last.revision + 1,
                    _ => break,
                }
            }
        }
        None => {
            let mut after = Position::START;
            loop {
                let batch = stores.store.read_all(after, 1000).await?;
                for event in &batch {
                    writeln!(out, "{}", serde_json::to_string(event)?)?;
                }
                match batch.last() {
                    Some(last) => after = last.position,
                    None => break,
                }
            }
        }
    }
    Ok(())
}
