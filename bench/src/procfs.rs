//! This process's memory and CPU use, read from `/proc/self` the way the anchors read
//! theirs (VmHWM from `status`), so that the figures compare.

use std::time::Duration;

/// Clock ticks per second of `utime`/`stime` in `/proc/<pid>/stat`: `USER_HZ`, which
/// Linux fixes at 100 on every architecture it reports to user space.
const USER_HZ: f64 = 100.0;

/// A `kB` field of `/proc/self/status` (`VmHWM`, `VmRSS`) or a count (`Threads`);
/// 0 when missing (not Linux).
pub fn status_field(name: &str) -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    parse_status_field(&text, name).unwrap_or(0)
}

/// The value of `name:` in a `/proc/<pid>/status` text.
pub fn parse_status_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(':')?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// CPU time this process used so far (user + system).
pub fn cpu_time() -> Duration {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|text| parse_cpu_ticks(&text))
        .map_or(Duration::ZERO, |ticks| {
            Duration::from_secs_f64(ticks as f64 / USER_HZ)
        })
}

/// `utime + stime` (fields 14 and 15) of a `/proc/<pid>/stat` line. The command name
/// (field 2) may hold spaces and parentheses, so fields are counted after its last `)`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    // Fields 3.. follow the name: utime is the 12th of them, stime the 13th.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// File descriptors this process has open.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields() {
        let text = "Name:\tdht-bench\nVmHWM:\t   51396 kB\nVmRSS:\t   28244 kB\nThreads:\t504\n";
        assert_eq!(parse_status_field(text, "VmHWM"), Some(51_396));
        assert_eq!(parse_status_field(text, "VmRSS"), Some(28_244));
        assert_eq!(parse_status_field(text, "Threads"), Some(504));
        assert_eq!(parse_status_field(text, "VmPeak"), None);
    }

    #[test]
    fn cpu_ticks_after_a_name_with_spaces() {
        let stat = "4242 (a b) c) S 1 2 3 4 5 6 7 8 9 10 250 70 0 0 20 0 3 0";
        assert_eq!(parse_cpu_ticks(stat), Some(320));
        assert_eq!(parse_cpu_ticks("garbage"), None);
        // The real file parses (its figure may still be 0 ticks this early in a
        // test process, so only the parse is checked, not the value).
        if let Ok(real) = std::fs::read_to_string("/proc/self/stat") {
            assert!(parse_cpu_ticks(&real).is_some(), "{real}");
        }
    }
}
