//! Feeds: threads that read a watch stream's bytes as they arrive, off the packet path.
//!
//! A [`Feed`] runs a command (`--context-command`, through `sh -c`, in a process group of
//! its own) or reads a FIFO (a `--context` path), and sends what it reads, stamped with the
//! wall-clock time it was read, to the reload thread over a channel. When the command exits
//! (or the FIFO's writer closes it) the feed starts it again: at once for a FIFO (opening
//! waits for the next writer), after a backoff for a command (1 s, doubling up to 60 s, back
//! to 1 s after a run of at least 30 s). A command that cannot be started is retried the
//! same way. The reload thread turns the bytes into windows ([`super::watch`]).

use super::reload::now_ns;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The first wait before a command is started again.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// The longest wait.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A run at least this long resets the backoff to its first step.
pub const BACKOFF_RESET: Duration = Duration::from_secs(30);

/// Where a stream comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A shell command whose standard output is the stream.
    Command(String),
    /// A FIFO: each writer's output is one run of the stream.
    Fifo(PathBuf),
}

impl Origin {
    /// How messages name it: ``command `kubectl ...` `` or `FIFO /path`.
    pub fn describe(&self) -> String {
        match self {
            Origin::Command(c) => format!("command `{c}`"),
            Origin::Fifo(p) => format!("FIFO {}", p.display()),
        }
    }
}

/// What a feed tells the reload thread.
#[derive(Debug)]
pub enum FeedMsg {
    /// A run began (the command started, or a writer opened the FIFO).
    Started { at: u64 },
    /// Bytes read at `at`.
    Data { at: u64, bytes: Vec<u8> },
    /// The run ended: `clean` when the command exited with status 0 (always for a FIFO).
    Ended {
        at: u64,
        clean: bool,
        status: String,
        ran: Duration,
        retry_in: Duration,
    },
    /// The command could not be started (or the FIFO opened).
    Failed {
        at: u64,
        message: String,
        retry_in: Duration,
    },
    /// Nothing from a feed: wakes the reload thread (to stop it).
    Wake,
    /// Nothing from a feed: the held streams may start now.
    Release,
}

/// Messages carry the index of the stream they are about.
pub type FeedSender = Sender<(usize, FeedMsg)>;

/// A running feed; stopped (the command's process group killed) by [`Feed::stop`] or drop.
#[derive(Debug)]
pub struct Feed {
    origin: Origin,
    stop: Arc<AtomicBool>,
    /// The running command's process group (0 when none runs).
    group: Arc<AtomicI32>,
    thread: Option<JoinHandle<()>>,
}

impl Feed {
    /// Starts the feed's thread; messages go to `tx` tagged with `index`.
    pub fn start(index: usize, origin: Origin, tx: FeedSender) -> std::io::Result<Feed> {
        let stop = Arc::new(AtomicBool::new(false));
        let group = Arc::new(AtomicI32::new(0));
        let (s, g, o) = (Arc::clone(&stop), Arc::clone(&group), origin.clone());
        let thread = std::thread::Builder::new()
            .name("nameflow-context-feed".into())
            .spawn(move || match o {
                Origin::Command(cmd) => run_command(index, &cmd, &tx, &s, &g),
                Origin::Fifo(path) => run_fifo(index, &path, &tx, &s),
            })?;
        Ok(Feed {
            origin,
            stop,
            group,
            thread: Some(thread),
        })
    }

    /// Asks the feed to stop and kills a command's process group, without waiting.
    pub fn signal_stop(&self) {
        self.stop.store(true, Ordering::Release);
        kill_group(&self.group);
    }

    /// Stops the feed: a command's process group is killed and the thread joined; a FIFO's
    /// thread is woken if it waits for a writer, and left to end on its own if it waits in
    /// a read (it sends nothing more).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        kill_group(&self.group);
        let Some(t) = self.thread.take() else {
            return;
        };
        t.thread().unpark();
        match &self.origin {
            Origin::Command(_) => {
                let _ = t.join();
            }
            Origin::Fifo(path) => {
                // Opening the write end without blocking releases a reader waiting in open.
                use std::os::unix::fs::OpenOptionsExt;
                let _ = std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(path);
            }
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.stop();
    }
}

fn kill_group(group: &AtomicI32) {
    let g = group.load(Ordering::Acquire);
    if g > 0 {
        // The whole group, so a shell's children (a pipeline) go too.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(g),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Sleeps for `d` unless stopped first (the stopper unparks the thread).
fn pause(d: Duration, stop: &AtomicBool) {
    let until = Instant::now() + d;
    while !stop.load(Ordering::Acquire) {
        let now = Instant::now();
        if now >= until {
            return;
        }
        std::thread::park_timeout(until - now);
    }
}

/// Reads `r` to its end, sending what arrives; false when the reload thread is gone.
fn pump(index: usize, r: &mut impl Read, tx: &FeedSender, stop: &AtomicBool) -> bool {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => {
                let msg = FeedMsg::Data {
                    at: now_ns(),
                    bytes: buf[..n].to_vec(),
                };
                if tx.send((index, msg)).is_err() {
                    return false;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
        if stop.load(Ordering::Acquire) {
            return true;
        }
    }
}

/// Reports a stream that could not start, waits out its backoff and doubles it; false when
/// the reload thread is gone (the stream's thread ends).
fn failed(
    index: usize,
    message: String,
    backoff: &mut Duration,
    tx: &FeedSender,
    stop: &AtomicBool,
) -> bool {
    let msg = FeedMsg::Failed {
        at: now_ns(),
        message,
        retry_in: *backoff,
    };
    if tx.send((index, msg)).is_err() {
        return false;
    }
    pause(*backoff, stop);
    *backoff = (*backoff * 2).min(BACKOFF_MAX);
    true
}

fn run_command(index: usize, cmd: &str, tx: &FeedSender, stop: &AtomicBool, group: &AtomicI32) {
    use std::os::unix::process::CommandExt;
    let mut backoff = BACKOFF_FIRST;
    while !stop.load(Ordering::Acquire) {
        let started = Instant::now();
        let spawned = Command::new("/bin/sh")
            .arg("-c")
            .arg(cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                if !failed(
                    index,
                    format!("cannot start it: {e}"),
                    &mut backoff,
                    tx,
                    stop,
                ) {
                    return;
                }
                continue;
            }
        };
        group.store(child.id() as i32, Ordering::Release);
        if stop.load(Ordering::Acquire) {
            kill_group(group);
        }
        let alive = tx.send((index, FeedMsg::Started { at: now_ns() })).is_ok();
        let alive = alive
            && match child.stdout.take() {
                Some(mut out) => pump(index, &mut out, tx, stop),
                None => true,
            };
        if !alive {
            kill_group(group);
        }
        let status = child.wait();
        group.store(0, Ordering::Release);
        if !alive {
            return;
        }
        let ran = started.elapsed();
        if ran >= BACKOFF_RESET {
            backoff = BACKOFF_FIRST;
        }
        let (clean, status) = match status {
            Ok(s) if s.success() => (true, "status 0".to_owned()),
            Ok(s) => (false, s.to_string()),
            Err(e) => (false, format!("unknown status ({e})")),
        };
        let msg = FeedMsg::Ended {
            at: now_ns(),
            clean,
            status,
            ran,
            retry_in: backoff,
        };
        if tx.send((index, msg)).is_err() {
            return;
        }
        pause(backoff, stop);
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

fn run_fifo(index: usize, path: &std::path::Path, tx: &FeedSender, stop: &AtomicBool) {
    let mut backoff = BACKOFF_FIRST;
    while !stop.load(Ordering::Acquire) {
        // Opening waits for a writer.
        let mut f = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) => {
                if !failed(
                    index,
                    format!("cannot open it: {e}"),
                    &mut backoff,
                    tx,
                    stop,
                ) {
                    return;
                }
                continue;
            }
        };
        if stop.load(Ordering::Acquire) {
            return;
        }
        backoff = BACKOFF_FIRST;
        let started = Instant::now();
        if tx.send((index, FeedMsg::Started { at: now_ns() })).is_err()
            || !pump(index, &mut f, tx, stop)
            || stop.load(Ordering::Acquire)
        {
            return;
        }
        let msg = FeedMsg::Ended {
            at: now_ns(),
            clean: true,
            status: "its writer closed it".into(),
            ran: started.elapsed(),
            retry_in: Duration::ZERO,
        };
        if tx.send((index, msg)).is_err() {
            return;
        }
    }
}
