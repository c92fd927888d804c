//! The worker processes of a run: started with the run's spec, watched, replaced when
//! `--kill-every` kills one, and collected once their window ends. Every child is registered
//! with [`cleanup`] until it is reaped, and none outlives the harness.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cleanup;
use crate::control::ControlWords;
use crate::outcome::{new_histogram, parse_worker_result, Outcome};
use crate::spec::Spec;

/// How long workers may take to attach and reach the barrier.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long past its window a worker may take to report before it counts as hung.
const EXIT_GRACE: Duration = Duration::from_secs(10);

/// Worker processes; any still running when this is dropped are killed and reaped.
pub(crate) struct Workers {
    children: Vec<Option<Child>>,
    outputs: Vec<Option<(std::process::ExitStatus, String, String)>>,
    name: String,
    ctl_name: String,
}

impl Workers {
    pub(crate) fn spawn(spec: &Spec, name: &str, ctl_name: &str) -> Result<Self, String> {
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

    /// Waits until every worker is attached and at the start barrier; fails if one exits
    /// first, or if they take longer than [`READY_TIMEOUT`].
    pub(crate) fn wait_ready(&mut self, spec: &Spec, ctl: &ControlWords) -> Result<(), String> {
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
        Ok(())
    }

    /// Waits for every worker to exit after its window, which ends at `end`, and merges what
    /// they measured. A worker still running [`EXIT_GRACE`] later counts as hung.
    pub(crate) fn collect(&mut self, spec: &Spec, end: Instant) -> Result<Outcome, String> {
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
            let (line, h) = parse_worker_result(w, stdout)?;
            latency
                .add(&h)
                .map_err(|e| format!("merge histograms: {e:?}"))?;
            lines.push(line);
        }
        Ok(Outcome {
            workers: lines,
            latency,
            kills: None,  // filled in by `run`, which can check the map
            memory: None, // likewise: it asks the store
        })
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
