//! The standard `process_*` metrics of Prometheus clients, read from `/proc/self` at each
//! scrape: CPU seconds, resident and virtual memory, open and allowed descriptors, start time.
//! Parsing is pure (table-tested); reading the files is at the edge, and a file that cannot be
//! read leaves its metrics out rather than failing the scrape.

use std::fmt::Write as _;

/// What `/proc/self/stat` says, in the units of the metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcStat {
    /// User and system CPU time, seconds.
    pub cpu_seconds: f64,
    pub virtual_bytes: u64,
    pub resident_bytes: u64,
    /// Unix seconds.
    pub start_time: f64,
}

/// Reads `/proc/self/stat`'s fields after the command name (which may hold spaces and
/// parentheses, so the split is at the last `)`). `ticks`: clock ticks a second; `page`: bytes
/// a page; `boot_time`: `/proc/stat`'s `btime`, Unix seconds.
pub fn parse_stat(stat: &str, ticks: f64, page: u64, boot_time: u64) -> Option<ProcStat> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // Field 3 (state) is the first after the name: field n is at n - 3.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let num = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    if ticks <= 0.0 {
        return None;
    }
    let (utime, stime, start) = (num(14)?, num(15)?, num(22)?);
    Some(ProcStat {
        cpu_seconds: (utime + stime) as f64 / ticks,
        virtual_bytes: num(23)?,
        resident_bytes: num(24)?.saturating_mul(page),
        start_time: boot_time as f64 + start as f64 / ticks,
    })
}

/// `btime` of `/proc/stat`: when the system booted, Unix seconds.
pub fn parse_boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Every `process_*` family [`render`] writes (each when it could be read).
pub const NAMES: [&str; 6] = [
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_start_time_seconds",
    "process_open_fds",
    "process_max_fds",
];

/// The `process_*` families, with HELP and TYPE, for what could be read.
pub fn render(out: &mut String) {
    // SAFETY: sysconf only reads a system constant.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| parse_boot_time(&s));
    let stat = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| parse_stat(&s, ticks as f64, u64::try_from(page).unwrap_or(4096), boot?));
    if let Some(s) = stat {
        family(
            out,
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            "counter",
            s.cpu_seconds,
        );
        family(
            out,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            "gauge",
            s.resident_bytes as f64,
        );
        family(
            out,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            "gauge",
            s.virtual_bytes as f64,
        );
        family(
            out,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            "gauge",
            s.start_time,
        );
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        // The directory's own descriptor is among the entries while it is read.
        let open = dir.count().saturating_sub(1);
        family(
            out,
            "process_open_fds",
            "Number of open file descriptors.",
            "gauge",
            open as f64,
        );
    }
    family(
        out,
        "process_max_fds",
        "Maximum number of open file descriptors.",
        "gauge",
        crate::fdlimit::nofile_limit() as f64,
    );
}

fn family(out: &mut String, name: &str, help: &str, kind: &str, value: f64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    out.push_str(name);
    out.push(' ');
    super::render::write_float(out, value);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real line of /proc/self/stat (fields 1–52), with a name holding a space and a ')'.
    const STAT: &str = "4242 (dcr ship)) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 50 0 0 20 0 \
        9 0 123400 987654321 2048 18446744073709551615 1 1 0 0 0 0 0 4096 17415 0 0 0 17 1 0 0 0 \
        0 0 0 0 0 0 0 0 0 0";

    #[test]
    fn stat_fields_become_seconds_and_bytes() {
        let s = parse_stat(STAT, 100.0, 4096, 1_700_000_000).expect("parsed");
        assert_eq!(s.cpu_seconds, 3.0, "(250 + 50) ticks at 100 a second");
        assert_eq!(s.virtual_bytes, 987_654_321);
        assert_eq!(s.resident_bytes, 2048 * 4096);
        assert_eq!(s.start_time, 1_700_000_000.0 + 1234.0);
    }

    #[test]
    fn bad_stat_lines_give_nothing() {
        for bad in [
            "",
            "4242 dcrship S 1",
            "4242 (x) S 1 2 3",
            "4242 (x) S a b c d e f g h i j k l m n o p q r s t u v",
        ] {
            assert_eq!(parse_stat(bad, 100.0, 4096, 0), None, "{bad:?}");
        }
        assert_eq!(parse_stat(STAT, 0.0, 4096, 0), None, "no tick rate");
    }

    #[test]
    fn boot_time_is_the_btime_line() {
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nintr 5\nbtime 1700000000\nprocesses 9\n"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_boot_time("cpu 1\n"), None);
        assert_eq!(parse_boot_time("btime x\n"), None);
    }

    #[test]
    fn this_process_is_described() {
        let mut out = String::new();
        render(&mut out);
        for name in NAMES {
            let line = out
                .lines()
                .find(|l| l.starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} in\n{out}"));
            let v: f64 = line[name.len() + 1..].parse().expect("a number");
            assert!(v >= 0.0, "{line}");
        }
        let now = jiff::Timestamp::now().as_second() as f64;
        let start = out
            .lines()
            .find_map(|l| l.strip_prefix("process_start_time_seconds "))
            .and_then(|v| v.parse::<f64>().ok())
            .expect("start");
        assert!(
            start <= now + 1.0 && start > now - 86_400.0 * 365.0,
            "{start}"
        );
    }
}
