//! One measured run: set the map up, start the workers (processes, or threads for the
//! in-process references), release them together, collect and merge what they measured.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use shmap::{AttachOptions, Location, MapBackend, MapParams};
use shmap_backends::with_backend;

use crate::cleanup::Resources;
use crate::control::{ControlSegment, ControlWords};
use crate::kill;
use crate::outcome::{print_worker_result, KillReport, Outcome, WorkerLine};
use crate::spec::{Spec, TargetKind};
use crate::targets::{
    DashTarget, LmdbTarget, NullTarget, RedisTarget, RwLockTarget, ShmTarget, Target,
};
use crate::workers::Workers;
use crate::workload::{new_histogram, prefill, run_worker, Measured};

fn segment_name() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "shmap-harness-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn lmdb_dir(spec: &Spec, name: &str) -> PathBuf {
    spec.storage_dir
        .as_deref()
        .unwrap_or(std::path::Path::new("/dev/shm"))
        .join(format!("{name}-lmdb"))
}

/// Where the run's map lives: `/dev/shm/NAME`, or `DIR/NAME.map` with `--storage file:DIR`.
pub(crate) fn location(spec: &Spec, name: &str) -> Location {
    match &spec.storage_dir {
        None => Location::Shm(name.to_owned()),
        Some(dir) => Location::File(dir.join(format!("{name}.map"))),
    }
}

fn redis_url(spec: &Spec) -> Result<&str, String> {
    spec.redis_url.as_deref().ok_or_else(|| {
        "the redis backend needs a server: --redis-url, or redis-server on PATH".into()
    })
}

fn lmdb_bytes(spec: &Spec) -> usize {
    2 * spec.keys as usize * (spec.key_size + spec.value_size + 64)
}

fn map_params(spec: &Spec) -> MapParams {
    MapParams {
        capacity: spec.capacity,
        max_key_size: spec.key_size,
        max_value_size: spec.value_size.max(1),
        // Only rapid-grow lets the table grow (the workload that measures growth).
        max_capacity: if spec.grows() {
            shmap::MAX_CAPACITY
        } else {
            spec.capacity
        },
    }
}

/// Runs `spec` and returns what it measured, or why it failed. Never hangs: a worker that
/// does not reach the barrier, or does not exit after its window, fails the run.
pub fn run(spec: &Spec) -> Result<Outcome, String> {
    spec.validate()?;
    if spec.target.is_in_process() {
        return run_threads(spec);
    }
    let mut resources = Resources::default();
    let name = segment_name();
    match spec.target.shm_kind() {
        Some(kind) => with_backend!(kind, M => {
            let at = location(spec, &name);
            // Registered before it exists: an interrupt in the middle of the create must not
            // leave it behind (removing a name that is not there yet is harmless).
            match &at {
                Location::Shm(_) => resources.segment(&name),
                Location::File(path) => resources.file(path.clone()),
            }
            let map = M::create_in(&at, map_params(spec)).map_err(|e| format!("create map: {e}"))?;
            prefill(&ShmTarget(map), spec)?;
        }),
        None if spec.target == TargetKind::Redis => {
            // Unlinked however the run ends (the server may be the user's).
            resources.redis(redis_url(spec)?, &name);
            prefill(
                &RedisTarget::create(redis_url(spec)?, &name, map_params(spec))?,
                spec,
            )?;
        }
        None => {
            resources.dir(lmdb_dir(spec, &name));
            prefill(
                &LmdbTarget::open(&lmdb_dir(spec, &name), lmdb_bytes(spec))?,
                spec,
            )?;
        }
    }
    let ctl_name = format!("{name}-ctl");
    resources.segment(&ctl_name); // first, as the map's; and for the Ctrl-C path
    let ctl = ControlSegment::create(&ctl_name)?;
    let mut workers = Workers::spawn(spec, &name, &ctl_name)?;
    let outcome = drive(&mut workers, spec, ctl.words());
    if outcome.is_err() {
        ctl.words().abort();
    }
    let (mut outcome, killed) = outcome?;
    if let (Some(kills), Some(kind)) = (killed, spec.target.shm_kind()) {
        outcome.kills = Some(KillReport {
            kills,
            ops: ctl.words().ops(),
            violations: ctl.words().violations(),
            map_check: with_backend!(kind, M => kill::check_map::<M>(&location(spec, &name))),
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
    let measured = match spec.target.shm_kind() {
        Some(kind) => with_backend!(kind, M => {
            let map = M::attach_in(&location(spec, name), AttachOptions::default())
                .map_err(|e| format!("attach: {e}"))?;
            run_worker(&ShmTarget(map), spec, worker, ctl.words())
        }),
        None if spec.target == TargetKind::Redis => run_worker(
            &RedisTarget::attach(redis_url(spec)?, name)?,
            spec,
            worker,
            ctl.words(),
        ),
        None if spec.target == TargetKind::Lmdb => run_worker(
            &LmdbTarget::open(&lmdb_dir(spec, name), lmdb_bytes(spec))?,
            spec,
            worker,
            ctl.words(),
        ),
        None => return Err(format!("{} runs in-process, not as a worker", spec.target)),
    };
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

fn run_threads(spec: &Spec) -> Result<Outcome, String> {
    let target: Box<dyn Target + Send + Sync> = match spec.target {
        TargetKind::Dashmap => Box::new(DashTarget::default()),
        TargetKind::Rwlock => Box::new(RwLockTarget::default()),
        TargetKind::Null => Box::new(NullTarget),
        other => return Err(format!("{other} runs as processes, not threads")),
    };
    prefill(&*target, spec)?;
    let ctl = ControlWords::default();
    let measured: Vec<Measured> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..spec.procs as u64)
            .map(|w| {
                s.spawn({
                    let (t, c) = (&*target, &ctl);
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
    })
}
