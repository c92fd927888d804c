//! One measured run: the target's adapter sets up its map (see `targets`), then this starts
//! the workers (processes, or threads for the in-process references), releases them together,
//! and collects and merges what they measured.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::cleanup::Resources;
use crate::control::{ControlSegment, ControlWords};
use crate::kill;
use crate::outcome::{new_histogram, print_worker_result, KillReport, Outcome, WorkerLine};
use crate::spec::Spec;
use crate::targets::{self, Sharing, Store, Target};
use crate::workers::Workers;
use crate::workload::{prefill, run_worker, Measured};

fn segment_name() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "shmap-harness-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `spec` and returns what it measured, or why it failed. Never hangs: a worker that
/// does not reach the barrier, or does not exit after its window, fails the run.
pub fn run(spec: &Spec) -> Result<Outcome, String> {
    spec.validate()?;
    match targets::sharing(spec.target) {
        Sharing::Threads(map) => run_threads(spec, &*map),
        Sharing::Processes(store) => run_processes(spec, store),
    }
}

fn run_processes(spec: &Spec, store: &dyn Store) -> Result<Outcome, String> {
    let mut resources = Resources::default();
    let name = segment_name();
    // Filled, then let go: every worker opens its own handle.
    prefill(&*store.create(spec, &name, &mut resources)?, spec)?;
    let ctl_name = format!("{name}-ctl");
    resources.segment(&ctl_name); // first, as the map's; and for the Ctrl-C path
    let ctl = ControlSegment::create(&ctl_name)?;
    let mut workers = Workers::spawn(spec, &name, &ctl_name)?;
    let outcome = drive(&mut workers, spec, ctl.words());
    if outcome.is_err() {
        ctl.words().abort();
    }
    let (mut outcome, killed) = outcome?;
    // After the workers, before the cleanup: what the map holds now (a failure to say is
    // reported and leaves the column empty, not the run failed).
    outcome.memory = store.memory(spec, &name).and_then(|m| {
        m.inspect_err(|e| eprintln!("memory of {}: {e}", spec.target))
            .ok()
    });
    if let Some(kills) = killed {
        outcome.kills = store
            .check_after_kills(spec, &name)
            .map(|map_check| KillReport {
                kills,
                ops: ctl.words().ops(),
                violations: ctl.words().violations(),
                map_check,
            });
    }
    Ok(outcome)
}

/// The worker side: attach, run, print two lines. Errors go to stderr and a non-zero exit.
pub fn worker_main(spec: &Spec, name: &str, ctl_name: &str, worker: u64) -> Result<(), String> {
    if spec.kill_every_ms > 0 {
        shmap::set_stall_timeout(kill::KILL_STALL);
    }
    let ctl = ControlSegment::attach(ctl_name)?;
    let Sharing::Processes(store) = targets::sharing(spec.target) else {
        return Err(format!("{} runs in-process, not as a worker", spec.target));
    };
    let measured = run_worker(&*store.attach(spec, name)?, spec, worker, ctl.words());
    let line = WorkerLine {
        ops: measured.ops,
        errors: measured.errors,
        first_error: measured.first_error,
        window_s: measured.window_s,
    };
    print_worker_result(&line, &measured.latency)
}

/// Releases the workers together, kills some under `--kill-every`, and collects what they
/// measured, with how many were killed.
fn drive(
    workers: &mut Workers,
    spec: &Spec,
    ctl: &ControlWords,
) -> Result<(Outcome, Option<u64>), String> {
    workers.wait_ready(spec, ctl)?;
    ctl.release();
    let window = Duration::from_secs_f64(spec.warmup_s + spec.duration_s);
    let end = Instant::now() + window;
    let kills = (spec.kill_every_ms > 0)
        .then(|| kill::kill_during(workers, spec, end))
        .transpose()?;
    Ok((workers.collect(spec, end)?, kills))
}

fn run_threads(spec: &Spec, target: &dyn Target) -> Result<Outcome, String> {
    prefill(target, spec)?;
    let ctl = ControlWords::default();
    let measured: Vec<Measured> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..spec.procs as u64)
            .map(|w| {
                s.spawn({
                    let (t, c) = (target, &ctl);
                    move || run_worker(t, spec, w, c)
                })
            })
            .collect();
        while ctl.ready() < spec.procs as u64 {
            std::thread::yield_now();
        }
        ctl.release();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker thread panicked"))
            .collect()
    });
    let mut latency = new_histogram();
    let workers = measured
        .into_iter()
        .map(|m| {
            latency.add(&m.latency).expect("same bounds");
            WorkerLine {
                ops: m.ops,
                errors: m.errors,
                first_error: m.first_error,
                window_s: m.window_s,
            }
        })
        .collect();
    Ok(Outcome {
        workers,
        latency,
        kills: None,
        memory: None,
    })
}
