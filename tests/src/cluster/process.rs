//! Child processes of the test cluster: spawned so that none can outlive the test, logged to files,
//! and stopped with SIGTERM, a bounded wait, then SIGKILL.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

/// Spawns every child from one dedicated thread that lives exactly as long as the cluster.
///
/// Children get `PR_SET_PDEATHSIG=SIGKILL`, so they die with us even when we are SIGKILLed or a
/// cluster kept in a `static` is never dropped. The kernel ties that signal to the *thread* that
/// forked, not the process: spawning from a test's own thread would kill the cluster as soon as
/// that thread ended (e.g. a cluster shared by several tests). Hence the dedicated thread.
pub struct Spawner {
    requests: Option<mpsc::Sender<SpawnRequest>>,
    thread: Option<thread::JoinHandle<()>>,
}

struct SpawnRequest {
    command: Command,
    reply: mpsc::Sender<io::Result<Child>>,
}

impl Spawner {
    pub fn new() -> Result<Spawner> {
        let (requests, receiver) = mpsc::channel::<SpawnRequest>();
        let thread = thread::Builder::new()
            .name("apiscope-cluster-spawner".into())
            .spawn(move || {
                // Ends when the Spawner is dropped, after the cluster has stopped its children.
                for mut request in receiver {
                    let _ = request.reply.send(request.command.spawn());
                }
            })
            .context("starting the cluster's process spawner thread")?;
        Ok(Spawner {
            requests: Some(requests),
            thread: Some(thread),
        })
    }

    pub fn spawn(&self, mut command: Command) -> Result<Child> {
        let parent_pid = std::process::id();
        // SAFETY: the closure runs between fork and exec and only calls async-signal-safe
        // functions (prctl, getppid, _exit).
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                ) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                // The parent may have died before prctl took effect: then nobody would kill us.
                if libc::getppid() as u32 != parent_pid {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        // Own process group: a terminal's Ctrl-C reaches only us, and we stop children in order.
        command.process_group(0);
        let (reply, answer) = mpsc::channel();
        self.requests
            .as_ref()
            .context("spawner already shut down")?
            .send(SpawnRequest { command, reply })
            .map_err(|_| anyhow!("the cluster's spawner thread has ended"))?;
        answer
            .recv()
            .map_err(|_| anyhow!("the cluster's spawner thread ended while spawning"))?
            .map_err(anyhow::Error::from)
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        self.requests.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One running component: its child handle, the command line it was started with (for restarts)
/// and the file its stdout and stderr go to.
pub struct ManagedProcess {
    pub name: &'static str,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub log_path: PathBuf,
    child: Child,
}

impl ManagedProcess {
    /// Starts `program` directly (no shell), so the child's pid is the component's own pid.
    pub fn start(
        spawner: &Spawner,
        name: &'static str,
        program: &Path,
        args: Vec<String>,
        log_path: PathBuf,
    ) -> Result<ManagedProcess> {
        Self::start_with_env(spawner, name, program, args, &[], log_path)
    }

    /// [`ManagedProcess::start`] with extra environment variables (on top of ours).
    pub fn start_with_env(
        spawner: &Spawner,
        name: &'static str,
        program: &Path,
        args: Vec<String>,
        env: &[(String, String)],
        log_path: PathBuf,
    ) -> Result<ManagedProcess> {
        let log = open_log(&log_path)?;
        let mut command = Command::new(program);
        command
            .args(&args)
            .envs(env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("duplicating a log file handle")?)
            .stderr(log);
        let child = spawner
            .spawn(command)
            .with_context(|| format!("starting {name} ({})", program.display()))?;
        Ok(ManagedProcess {
            name,
            program: program.to_path_buf(),
            args,
            log_path,
            child,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Result<Option<ExitStatus>> {
        self.child
            .try_wait()
            .with_context(|| format!("checking whether {} is still running", self.name))
    }

    /// Fails with the log's tail if the process has already exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        if let Some(status) = self.exited()? {
            bail!(
                "{} exited ({status}); last lines of {}:\n{}",
                self.name,
                self.log_path.display(),
                log_tail(&self.log_path, LOG_TAIL_LINES)
            );
        }
        Ok(())
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL. Always reaps the child.
    pub fn terminate(&mut self, grace: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.exited()? {
            return Ok(status);
        }
        send_signal(self.pid(), libc::SIGTERM);
        if let Some(status) = self.wait_for_exit(grace)? {
            return Ok(status);
        }
        eprintln!(
            "apiscope test cluster: {} (pid {}) still running {grace:?} after SIGTERM; sending SIGKILL",
            self.name,
            self.pid()
        );
        self.child
            .kill()
            .with_context(|| format!("killing {}", self.name))?;
        self.child
            .wait()
            .with_context(|| format!("reaping {}", self.name))
    }

    fn wait_for_exit(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path, LOG_TAIL_LINES)
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        // Normally already stopped by the cluster; this is the last line of defence.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn send_signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions. The pid is our own unreaped child, so
    // it cannot have been recycled for another process.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

fn open_log(path: &Path) -> Result<File> {
    // Append: a restarted apiserver keeps one log, its earlier life stays readable.
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening log file {}", path.display()))
}

pub const LOG_TAIL_LINES: usize = 40;

/// The last `lines` lines of a log file (at most 256 KiB are read), for error messages. A Go
/// crash ends in goroutine dumps that bury the reason, so the first klog fatal (`F…`), `panic:`
/// or `fatal error:` line, if any, comes first.
pub fn log_tail(path: &Path, lines: usize) -> String {
    const MAX_BYTES: u64 = 256 * 1024;
    let read = || -> io::Result<String> {
        let mut file = File::open(path)?;
        let length = file.metadata()?.len();
        file.seek(SeekFrom::Start(length.saturating_sub(MAX_BYTES)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let all: Vec<&str> = text.lines().collect();
        let tail = all[all.len().saturating_sub(lines)..].join("\n");
        Ok(match all.iter().find(|line| is_crash_line(line)) {
            Some(crash) if !tail.contains(*crash) => format!("{crash}\n[...]\n{tail}"),
            _ => tail,
        })
    };
    read().unwrap_or_else(|error| format!("(cannot read {}: {error})", path.display()))
}

fn is_crash_line(line: &str) -> bool {
    let klog_fatal = line.len() > 5
        && line.starts_with('F')
        && line.as_bytes()[1..5].iter().all(u8::is_ascii_digit);
    klog_fatal || line.starts_with("panic:") || line.starts_with("fatal error:")
}

/// Distinct free TCP ports on 127.0.0.1. The listeners are all held until every port is chosen, so
/// the ports differ from each other; another process may still take one before we bind it, which
/// callers handle by retrying.
pub fn free_loopback_ports(count: usize) -> Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<io::Result<Vec<_>>>()
        .context("binding 127.0.0.1:0 to find free ports")?;
    listeners
        .iter()
        .map(|listener| Ok(listener.local_addr()?.port()))
        .collect()
}

/// Whether the log shows the component failed because its port was taken.
pub fn log_shows_port_conflict(path: &Path) -> bool {
    fs::read_to_string(path)
        .map(|text| text.contains("address already in use"))
        .unwrap_or(false)
}

/// Runs `start` (a server on ports chosen with [`free_loopback_ports`]) up to `attempts` times,
/// again only when its log shows another process took a port between the choice and the bind.
/// Attempt `n` logs to `workdir/<name>-<n>.log`, the path `start` is given.
pub fn start_retrying_port_conflicts<T>(
    name: &str,
    workdir: &Path,
    attempts: usize,
    mut start: impl FnMut(PathBuf) -> Result<T>,
) -> Result<T> {
    let mut last_error = None;
    for attempt in 1..=attempts {
        let log_path = workdir.join(format!("{name}-{attempt}.log"));
        match start(log_path.clone()) {
            Ok(started) => return Ok(started),
            Err(error) if log_shows_port_conflict(&log_path) => {
                eprintln!("{name}: port taken on attempt {attempt}, retrying: {error:#}");
                last_error = Some(error);
            }
            Err(error) => return Err(error),
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("{name} did not start")))
}

/// Polls `check` until it returns `Some`, at most `max_attempts` times and for at most `timeout`.
/// `check` errors abort the wait (e.g. "the process exited").
pub fn poll_until<T>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let start = Instant::now();
    // The count bound backs up the time bound should a check return instantly forever.
    let max_attempts = (timeout.as_millis() / interval.as_millis().max(1)) as u64 + 10;
    for _ in 0..max_attempts {
        if let Some(value) = check()? {
            return Ok(value);
        }
        if start.elapsed() >= timeout {
            break;
        }
        thread::sleep(interval);
    }
    bail!("timed out after {:.1?} waiting for {what}", start.elapsed())
}
