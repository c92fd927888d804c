//! What a run measured ([`Outcome`], its latencies in histograms of one shape:
//! [`new_histogram`]), and how each worker process hands its share to the harness: two lines
//! on its stdout, written by [`print_worker_result`] and read back by [`parse_worker_result`].

use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The first line a worker prints: its counts, then a line with its histogram in hex.
#[derive(Debug, Serialize, Deserialize)]
pub struct WorkerLine {
    pub ops: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub window_s: f64,
}

/// What a run measured, merged over its workers.
#[derive(Debug)]
pub struct Outcome {
    pub workers: Vec<WorkerLine>,
    pub latency: Histogram<u64>,
    /// Under `--kill-every`: what the kills did.
    pub kills: Option<KillReport>,
    /// What the map held at the end, for the targets that can say it.
    pub memory: Option<Memory>,
}

/// A map's memory at the end of a run, counted as its peers count theirs: the pages the
/// kernel holds for our map's files, LMDB's pages in use.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pub bytes: u64,
    pub entries: u64,
}

impl Memory {
    /// Bytes per entry; `None` for an empty map.
    pub fn per_entry(&self) -> Option<f64> {
        (self.entries > 0).then(|| self.bytes as f64 / self.entries as f64)
    }
}

/// What the kills did to a run.
#[derive(Debug)]
pub struct KillReport {
    /// Workers SIGKILLed (each replaced by a new one).
    pub kills: u64,
    /// Measured operations of all workers, killed ones included.
    pub ops: u64,
    /// Torn or misplaced values workers read.
    pub violations: u64,
    /// The check of the map after the run: its entries, or what was wrong.
    pub map_check: Result<usize, String>,
}

/// A latency histogram, in nanoseconds: every worker's and the merged one of a run have these
/// bounds, so they add up.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// Prints a worker's result on stdout: `line` as JSON, then `latency` serialised, in hex.
pub fn print_worker_result(line: &WorkerLine, latency: &Histogram<u64>) -> Result<(), String> {
    let mut hist = Vec::new();
    V2Serializer::new()
        .serialize(latency, &mut hist)
        .map_err(|e| format!("histogram: {e:?}"))?;
    println!(
        "{}",
        serde_json::to_string(line).map_err(|e| e.to_string())?
    );
    println!(
        "{}",
        hist.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    Ok(())
}

/// Reads back what worker `w` printed with [`print_worker_result`].
pub fn parse_worker_result(w: usize, stdout: &str) -> Result<(WorkerLine, Histogram<u64>), String> {
    let mut it = stdout.lines();
    let bad = || format!("worker {w} printed no result: {stdout:?}");
    let line: WorkerLine = serde_json::from_str(it.next().ok_or_else(bad)?).map_err(|_| bad())?;
    let hex = it.next().ok_or_else(bad)?;
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let latency: Histogram<u64> = Deserializer::new()
        .deserialize(&mut &bytes[..])
        .map_err(|e| format!("worker {w} histogram: {e:?}"))?;
    Ok((line, latency))
}
