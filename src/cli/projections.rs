//! `hookrun projections rebuild <name>` and `hookrun projections status`.

use super::print_json;
use super::progress::ProgressPrinter;
use crate::config::Settings;
use crate::projections::rebuild::Pace;
use crate::projections::runner::{all_projections, projection};
use crate::projections::status;
use crate::startup::Stores;

pub(super) async fn rebuild(settings: Settings, name: &str) -> anyhow::Result<()> {
    let stores = Stores::open(&settings).await?;
    let targets = if name == "all" {
        all_projections()
    } else {
        let known: Vec<_> = all_projections().iter().map(|p| p.name()).collect();
        vec![projection(name).ok_or_else(|| {
            anyhow::anyhow!(
                "no projection {name:?}; known: {} (or all)",
                known.join(", ")
            )
        })?]
    };
    for p in targets {
        let printer = ProgressPrinter::new(format!("rebuild {}", p.name()));
        let report = p
            .rebuild(&stores.store, &stores.db, Pace::Full, &|progress| {
                printer.report(progress)
            })
            .await?;
        println!(
            "rebuilt {} (version {}): {} events in {:.1}s ({:.0} events/s), swapped in at {}",
            p.name(),
            p.version(),
            report.events,
            report.elapsed.as_secs_f64(),
            report.rate(),
            report.position
        );
    }
    Ok(())
}

pub(super) async fn status(settings: Settings) -> anyhow::Result<()> {
    let stores = Stores::open(&settings).await?;
    let all = status::all(stores.store.as_ref(), &stores.db).await?;
    print_json(&serde_json::json!({ "projections": all }))
}
