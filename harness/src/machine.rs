//! A one-line description of the machine, recorded next to every result.

fn first_line_with(path: &str, prefix: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(prefix))?;
    Some(line.split_once(':')?.1.trim().to_owned())
}

/// E.g. `AMD EPYC, 2 cpus, 24 GiB, Linux 6.18.44`.
pub fn describe() -> String {
    let cpu = first_line_with("/proc/cpuinfo", "model name")
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = first_line_with("/proc/meminfo", "MemTotal")
        .and_then(|kb| kb.trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| (kb + (1 << 19)) >> 20);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpu}, {cpus} cpus, {mem_gib} GiB, Linux {}", kernel.trim())
}
