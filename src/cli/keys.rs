//! `hookrun keys rotate` and `hookrun keys status`: master key rotation.
//!
//! Procedure (docs/security.md): set the new key as `HOOKRUN_MASTER_KEY` and the old
//! one in `HOOKRUN_MASTER_KEY_OLD` on every node, run `hookrun keys rotate` until it
//! reports `remaining_rows: 0` and `by_key` names only the new key, then remove the
//! old key.

use super::{KeysCommand, print_json};
use crate::catalog::reseal;
use crate::config::Settings;
use crate::startup::Stores;

pub(super) async fn run(settings: Settings, command: KeysCommand) -> anyhow::Result<()> {
    let stores = Stores::open(&settings).await?;
    match command {
        KeysCommand::Rotate { limit } => {
            let report = reseal::reseal_all(&stores.db, &stores.sealer, limit).await?;
            print_json(&serde_json::to_value(&report)?)?;
            if !report.failures.is_empty() {
                anyhow::bail!(
                    "{} row(s) could not be resealed (see failures); nothing was lost",
                    report.failures.len()
                );
            }
            Ok(())
        }
        KeysCommand::Status => {
            let by_key = reseal::count_by_key(&stores.db).await?;
            print_json(&serde_json::json!({
                "current_key_id": stores.sealer.current_key_id().to_string(),
                "by_key": by_key,
            }))
        }
    }
}
