//! How busy the whole machine was during a pass, from `/proc/stat`: the share of CPU
//! time spent working (everything but idle and I/O wait) and the share the hypervisor
//! gave to another guest (`steal`), over all CPUs. The server, the database, the
//! gateway and the load generator share the machine, so a latency figure reads
//! differently at 70 % busy, and a stall may be time the virtual CPUs did not run.

/// The machine's CPU time counters at one moment (clock ticks, all CPUs together).
#[derive(Clone, Copy, Debug)]
pub struct CpuTimes {
    busy: u64,
    steal: u64,
    total: u64,
}

impl CpuTimes {
    /// Now; `None` where `/proc/stat` cannot be read (not Linux).
    pub fn now() -> Option<CpuTimes> {
        parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// Per cent of the CPU time since `earlier`: (working, stolen).
    pub fn shares_since(&self, earlier: &CpuTimes) -> (f64, f64) {
        let total = self.total.saturating_sub(earlier.total).max(1) as f64;
        let busy = self.busy.saturating_sub(earlier.busy) as f64;
        let steal = self.steal.saturating_sub(earlier.steal) as f64;
        (100.0 * busy / total, 100.0 * steal / total)
    }
}

/// The first line of `/proc/stat`: `cpu user nice system idle iowait irq softirq steal …`
/// (guest time is already counted in user and nice).
fn parse(stat: &str) -> Option<CpuTimes> {
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let [user, nice, system, idle, iowait, irq, softirq, steal] = ticks.try_into().ok()?;
    let busy = user + nice + system + irq + softirq;
    Some(CpuTimes {
        busy,
        steal,
        total: busy + idle + iowait + steal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_of_busy_and_stolen_time() {
        let before = parse("cpu  100 0 50 800 10 0 0 40 0 0\ncpu0 1 2 3\n").unwrap();
        let after = parse("cpu  160 0 80 890 10 5 5 50 7 0\n").unwrap();
        // +100 busy (60 user, 30 system, 5 irq, 5 softirq), +90 idle, +10 steal.
        let (busy, stolen) = after.shares_since(&before);
        assert!((busy - 50.0).abs() < 1e-9, "{busy}");
        assert!((stolen - 5.0).abs() < 1e-9, "{stolen}");
    }

    #[test]
    fn unreadable_stat_gives_none() {
        assert!(parse("").is_none());
        assert!(parse("intr 1 2 3").is_none());
        assert!(parse("cpu  1 2 3").is_none());
    }
}
