//! CPU seconds and memory of processes, read from /proc (Linux only).

use std::collections::HashMap;

/// utime + stime of `pid` in seconds, or `None` once it has exited.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14 and stime field 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// Resident set size of `pid` in MiB (`VmRSS`), and its peak (`VmHWM`).
pub fn rss_mib(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// The pids of processes whose name is exactly `name` (`pgrep -x`).
pub fn pgrep(name: &str) -> Vec<u32> {
    std::process::Command::new("pgrep")
        .args(["-x", name])
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|pid| pid.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Busy and total jiffies of the whole machine (`/proc/stat`, first line).
pub fn machine_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let numbers: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|n| n.parse().ok())
        .collect();
    let total: u64 = numbers.iter().sum();
    // idle and iowait
    let idle = numbers.get(3).copied().unwrap_or(0) + numbers.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// CPU seconds of named groups of processes at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// group → pid → seconds
    groups: HashMap<String, HashMap<u32, f64>>,
    machine: (u64, u64),
}

impl Snapshot {
    /// Reads the CPU time of every pid of every group.
    pub fn take(groups: &[(String, Vec<u32>)]) -> Snapshot {
        let groups = groups
            .iter()
            .map(|(name, pids)| {
                let seconds = pids
                    .iter()
                    .filter_map(|&pid| Some((pid, cpu_seconds(pid)?)))
                    .collect();
                (name.clone(), seconds)
            })
            .collect();
        Snapshot {
            groups,
            machine: machine_jiffies(),
        }
    }

    /// CPU seconds each group spent since `earlier`: pids present in both snapshots count their
    /// difference, pids that appeared since count whole (they started during the run).
    pub fn since(&self, earlier: &Snapshot) -> Vec<(String, f64)> {
        let mut spent: Vec<(String, f64)> = self
            .groups
            .iter()
            .map(|(name, now)| {
                let before = earlier.groups.get(name);
                let seconds = now
                    .iter()
                    .map(|(pid, s)| s - before.and_then(|b| b.get(pid)).copied().unwrap_or(0.0))
                    .sum();
                (name.clone(), seconds)
            })
            .collect();
        spent.sort_by(|a, b| a.0.cmp(&b.0));
        spent
    }

    /// The share of the machine's CPU time that was busy since `earlier` (0..1).
    pub fn machine_busy_since(&self, earlier: &Snapshot) -> f64 {
        let busy = self.machine.0.saturating_sub(earlier.machine.0) as f64;
        let total = self.machine.1.saturating_sub(earlier.machine.1) as f64;
        if total > 0.0 {
            busy / total
        } else {
            0.0
        }
    }
}
