//! One measured run: set the map up, start the workers (processes, or threads for the
//! in-process references), release them together, collect and merge what they measured.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use shmap::{AttachOptions, Location, MapBackend, MapParams};
use shmap_backends::with_backend;

use crate::cleanup::{self, Resources};
use crate::control::{ControlSegment, ControlWords};
use crate::kill::{self, KillReport};
use crate::spec::{Spec, TargetKind};
use crate::targets::{
    DashTarget, LmdbTarget, NullTarget, RedisTarget, RwLockTarget, ShmTarget, Target,
};
use crate::workload::{new_histogram, prefill, run_worker, Measured};

/// How long workers may take to attach and reach the barrier.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long past its window a worker may take to report before it counts as hung.
const EXIT_GRACE: Duration = Duration::from_secs(10);

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
}

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
    let outcome = workers.drive(spec, ctl.words());
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
    let mut hist = Vec::new();
    V2Serializer::new()
        .serialize(&measured.latency, &mut hist)
        .map_err(|e| format!("histogram: {e:?}"))?;
    let line = WorkerLine {
        ops: measured.ops,
        errors: measured.errors,
        first_error: measured.first_error,
        window_s: measured.window_s,
    };
    println!(
        "{}",
        serde_json::to_string(&line).map_err(|e| e.to_string())?
    );
    println!(
        "{}",
        hist.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    Ok(())
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

/// The worker's first act, before exec: die with the harness (SIGKILL when it exits, however
/// it exits), and exit at once if it already has (its parent is no longer the harness).
fn die_with_parent(harness: u32) -> impl FnMut() -> std::io::Result<()> {
    move || {
        // SAFETY: prctl, getppid and _exit are async-signal-safe and touch no shared state.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            if libc::getppid() as u32 != harness {
                libc::_exit(1);
            }
        }
        Ok(())
    }
}

/// Worker processes; any still running when this is dropped are killed and reaped.
pub(crate) struct Workers {
    children: Vec<Option<Child>>,
    outputs: Vec<Option<(std::process::ExitStatus, String, String)>>,
    name: String,
    ctl_name: String,
}

impl Workers {
    fn spawn(spec: &Spec, name: &str, ctl_name: &str) -> Result<Self, String> {
        let mut workers = Workers {
            children: Vec::new(),
            outputs: Vec::new(),
            name: name.to_owned(),
            ctl_name: ctl_name.to_owned(),
        };
        for w in 0..spec.procs {
            let child = workers.start(spec, w)?;
            workers.children.push(Some(child));
            workers.outputs.push(None);
        }
        Ok(workers)
    }

    /// Starts worker number `w` of `spec`.
    fn start(&self, spec: &Spec, w: usize) -> Result<Child, String> {
        let (name, ctl_name) = (&self.name, &self.ctl_name);
        let exe = std::env::current_exe().map_err(|e| format!("find own executable: {e}"))?;
        let spec_json = serde_json::to_string(spec).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&exe);
        cmd.args([
            "worker",
            "--spec",
            &spec_json,
            "--name",
            name,
            "--ctl",
            ctl_name,
            "--worker",
            &w.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        // SAFETY: the hook runs in the child between fork and exec and calls only
        // async-signal-safe functions (prctl, getppid, _exit).
        unsafe {
            cmd.pre_exec(die_with_parent(std::process::id()));
        }
        // Registered before the interrupt handler can run: it takes the same lock.
        cleanup::spawn_registered(&mut cmd).map_err(|e| format!("spawn worker: {e}"))
    }

    /// SIGKILLs worker `w` (if it still runs), reaps it, and starts `respawn` in its place.
    /// A worker that had already exited on its own is left for `poll` to report.
    pub(crate) fn kill_and_respawn(&mut self, w: usize, respawn: &Spec) -> Result<bool, String> {
        let Some(child) = self.children[w].as_mut() else {
            return Ok(false);
        };
        if child.try_wait().map_err(|e| e.to_string())?.is_some() {
            return Ok(false);
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        cleanup::reaped(child.id());
        self.children[w] = Some(self.start(respawn, w)?);
        Ok(true)
    }

    /// Reaps every worker that has exited; returns how many have.
    pub(crate) fn poll(&mut self) -> Result<usize, String> {
        for (child, slot) in self.children.iter_mut().zip(&mut self.outputs) {
            let Some(c) = child else { continue };
            if c.try_wait()
                .map_err(|e| format!("wait for worker: {e}"))?
                .is_some()
            {
                let c = child.take().expect("present");
                let pid = c.id();
                // Already exited: this returns at once, reading what is left in the pipes.
                let out = c
                    .wait_with_output()
                    .map_err(|e| format!("read worker output: {e}"))?;
                cleanup::reaped(pid);
                let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
                *slot = Some((out.status, text(out.stdout), text(out.stderr)));
            }
        }
        Ok(self.outputs.iter().filter(|o| o.is_some()).count())
    }

    pub(crate) fn first_failure(&self) -> Option<String> {
        self.outputs.iter().enumerate().find_map(|(w, o)| {
            let (status, _, stderr) = o.as_ref()?;
            (!status.success()).then(|| format!("worker {w} failed ({status}): {}", stderr.trim()))
        })
    }

    /// Releases the workers, kills some under `--kill-every`, and collects what they
    /// measured, with how many were killed.
    fn drive(&mut self, spec: &Spec, ctl: &ControlWords) -> Result<(Outcome, Option<u64>), String> {
        let ready_deadline = Instant::now() + READY_TIMEOUT;
        while ctl.ready() < spec.procs as u64 {
            self.poll()?;
            if let Some(failure) = self.first_failure() {
                return Err(failure);
            }
            if self.outputs.iter().any(Option::is_some) {
                return Err("a worker exited before the start".into());
            }
            if Instant::now() > ready_deadline {
                return Err(format!(
                    "only {} of {} workers reached the start barrier in {READY_TIMEOUT:?}",
                    ctl.ready(),
                    spec.procs
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        ctl.release();
        let window = Duration::from_secs_f64(spec.warmup_s + spec.duration_s);
        let end = Instant::now() + window;
        let kills = (spec.kill_every_ms > 0)
            .then(|| kill::kill_during(self, spec, end))
            .transpose()?;
        let deadline = end + EXIT_GRACE;
        while self.poll()? < spec.procs {
            if let Some(failure) = self.first_failure() {
                return Err(failure);
            }
            if Instant::now() > deadline {
                let hung: Vec<_> = self
                    .children
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.is_some())
                    .map(|(w, _)| w)
                    .collect();
                return Err(format!(
                    "workers {hung:?} hung: no exit {EXIT_GRACE:?} after their window"
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Some(failure) = self.first_failure() {
            return Err(failure);
        }
        let mut latency = new_histogram();
        let mut lines = Vec::new();
        for (w, (_, stdout, _)) in self.outputs.iter().flatten().enumerate() {
            let mut it = stdout.lines();
            let bad = || format!("worker {w} printed no result: {stdout:?}");
            let line: WorkerLine =
                serde_json::from_str(it.next().ok_or_else(bad)?).map_err(|_| bad())?;
            let hex = it.next().ok_or_else(bad)?;
            let bytes: Vec<u8> = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
                .collect::<Result<_, _>>()
                .map_err(|_| bad())?;
            let h: Histogram<u64> = Deserializer::new()
                .deserialize(&mut &bytes[..])
                .map_err(|e| format!("worker {w} histogram: {e:?}"))?;
            latency
                .add(&h)
                .map_err(|e| format!("merge histograms: {e:?}"))?;
            lines.push(line);
        }
        let outcome = Outcome {
            workers: lines,
            latency,
            kills: None, // filled in by `run`, which can check the map
        };
        Ok((outcome, kills))
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for c in self.children.iter_mut().filter_map(Option::take) {
            let mut c = c;
            let _ = c.kill();
            let _ = c.wait();
            cleanup::reaped(c.id());
        }
    }
}
