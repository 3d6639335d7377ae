//! Progress of a long rebuild on stderr: a bar redrawn in place on a terminal, a plain
//! line every few seconds otherwise (logs and CI keep a readable record).

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::projections::rebuild::Progress;

pub struct ProgressPrinter {
    label: String,
    tty: bool,
    /// When the last line was printed, and how many events it showed.
    last: Mutex<Option<(Instant, u64)>>,
}

impl ProgressPrinter {
    pub fn new(label: impl Into<String>) -> Self {
        ProgressPrinter {
            label: label.into(),
            tty: std::io::stderr().is_terminal(),
            last: Mutex::new(None),
        }
    }

    pub fn report(&self, p: Progress) {
        let every = if self.tty {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(5)
        };
        let finished = p.done >= p.total;
        {
            let mut last = self.last.lock().expect("progress lock");
            let shown = match *last {
                Some((at, done)) => done == p.done || (!finished && at.elapsed() < every),
                None => false,
            };
            if shown {
                return;
            }
            *last = Some((Instant::now(), p.done));
        }
        let line = render(&self.label, &p, self.tty);
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r{line}\x1b[K");
            if finished {
                let _ = writeln!(err);
            }
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }
}

/// One progress line: `label [#####-----] done/total events, rate events/s, ETA`.
pub fn render(label: &str, p: &Progress, bar: bool) -> String {
    let fraction = if p.total == 0 {
        1.0
    } else {
        (p.done as f64 / p.total as f64).min(1.0)
    };
    let eta = match p.eta() {
        Some(eta) if p.done < p.total => format!("ETA {}s", eta.as_secs()),
        _ => "done".to_owned(),
    };
    let stats = format!(
        "{}/{} events ({:.0}%), {:.0} events/s, {eta}",
        p.done,
        p.total,
        fraction * 100.0,
        p.rate()
    );
    if bar {
        const WIDTH: usize = 30;
        let filled = (fraction * WIDTH as f64).round() as usize;
        format!(
            "{label} [{}{}] {stats}",
            "#".repeat(filled),
            "-".repeat(WIDTH - filled)
        )
    } else {
        format!("{label}: {stats}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_shows_done_total_rate_and_eta() {
        let p = Progress {
            done: 250,
            total: 1000,
            elapsed: Duration::from_secs(5),
        };
        assert_eq!(
            render("rebuild x", &p, false),
            "rebuild x: 250/1000 events (25%), 50 events/s, ETA 15s"
        );
        assert!(render("x", &p, true).starts_with("x [########----------------------] 250/1000"));
    }
}
