//! Least privilege for live capture: once the XDP program is attached and every AF_XDP socket
//! is bound, nameflow needs no capability at all. Reading the sockets and the program's maps
//! goes through file descriptors it already holds, and the bpf_link detaches when its
//! descriptor closes. [`drop_privileges`] therefore empties every capability set (effective,
//! permitted, inheritable, ambient, and the bounding set where allowed), sets
//! `PR_SET_NO_NEW_PRIVS` so no later `exec` can regain any, and optionally switches to an
//! unprivileged user.
//!
//! Capabilities and credentials belong to each thread in Linux, not to the process, and by
//! the time the program is attached the workers, the writer and the sinks' helpers already
//! run. A `capset` on one thread leaves the others privileged, so the change is broadcast the
//! way glibc broadcasts `setuid`: every other thread is sent a real-time signal whose handler
//! makes the same raw system calls on itself, and the calling thread waits until each has done
//! so. Then `/proc/self/task/*/status` is read back: the drop succeeded only if no thread holds
//! a capability (a thread started during the broadcast is signalled in the next round).
//!
//! Needed before the drop (measured on kernel 6.18, see `docs/operations.md`): CAP_BPF and
//! CAP_PERFMON to load the program, CAP_NET_ADMIN to attach it, CAP_NET_RAW for the AF_XDP
//! sockets, CAP_IPC_LOCK for UMEM beyond `RLIMIT_MEMLOCK`.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Why privileges could not be dropped; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("--user {0}: no such user on this system; create it (deploy/install.sh creates `nameflow`) or give a numeric UID[:GID]")]
    NoSuchUser(String),
    #[error("--user {0}: switching user needs root (CAP_SETUID and CAP_SETGID); run as root or drop --user and let the service manager choose the user")]
    NotRoot(String),
    #[error("cannot install the signal handler used to drop capabilities in every thread: {0}")]
    Handler(std::io::Error),
    #[error("{step} failed in thread {tid}: {source}; nameflow stops rather than run with more privilege than it needs (use --keep-privileges to run anyway)")]
    Step {
        step: &'static str,
        tid: i32,
        source: std::io::Error,
    },
    #[error("thread {tid} did not drop its capabilities within {waited:?} (it may block signals); nameflow stops rather than run with more privilege than it needs")]
    Timeout { tid: i32, waited: Duration },
}

/// A resolved `--user`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl User {
    /// Looks up `spec`: a user name (its primary group is used), or `UID` / `UID:GID`.
    pub fn resolve(spec: &str) -> Result<User, PrivilegeError> {
        let spec = spec.trim();
        if let Some((u, g)) = spec.split_once(':') {
            if let (Ok(uid), Ok(gid)) = (u.parse(), g.parse()) {
                return Ok(User {
                    name: spec.to_owned(),
                    uid,
                    gid,
                });
            }
        }
        if let Ok(uid) = spec.parse::<u32>() {
            return Ok(User {
                name: spec.to_owned(),
                uid,
                gid: uid,
            });
        }
        let none = || PrivilegeError::NoSuchUser(spec.to_owned());
        let c = CString::new(spec).map_err(|_| none())?;
        // SAFETY: an all-zero passwd is a valid value of the struct (null pointers, zero ids);
        // getpwnam_r only writes into it.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call: `c` is NUL-terminated, `pw` and `out`
        // are live locals, and `buf` has the length passed; the strings `pw` points to live in
        // `buf`, which is not read after this block.
        let rc =
            unsafe { libc::getpwnam_r(c.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) };
        if rc != 0 || out.is_null() {
            return Err(none());
        }
        Ok(User {
            name: spec.to_owned(),
            uid: pw.pw_uid,
            gid: pw.pw_gid,
        })
    }
}

/// What [`drop_privileges`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped {
    /// Threads whose capabilities were dropped (the caller included).
    pub threads: usize,
    /// The user switched to.
    pub user: Option<User>,
}

/// The signal that carries the drop to every thread: a real-time signal well above the ones
/// glibc and common libraries reserve.
fn drop_signal() -> libc::c_int {
    libc::SIGRTMIN() + 7
}

/// `u32::MAX`: no user switch. Read by the handler, so plain atomics (no locks, no allocation).
static TARGET_UID: AtomicU32 = AtomicU32::new(u32::MAX);
static TARGET_GID: AtomicU32 = AtomicU32::new(u32::MAX);
/// Threads that ran the handler.
static DONE: AtomicUsize = AtomicUsize::new(0);
/// The first failure seen in a handler: step number and errno, 0 when none.
static FAILED_STEP: AtomicI32 = AtomicI32::new(0);
static FAILED_ERRNO: AtomicI32 = AtomicI32::new(0);
static FAILED_TID: AtomicI32 = AtomicI32::new(0);

const STEPS: [&str; 6] = [
    "",
    "clearing the ambient capabilities",
    "setgroups",
    "setresgid",
    "setresuid",
    "capset",
];
const STEP_NNP: &str = "prctl(PR_SET_NO_NEW_PRIVS)";

/// The highest capability number any kernel may know; dropping unknown ones fails with EINVAL,
/// which is ignored.
const CAP_LAST: libc::c_ulong = 63;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Drops everything on the calling thread with raw system calls only, so it may run inside a
/// signal handler. Returns 0, or (step << 16 | errno).
fn drop_this_thread() -> i32 {
    // The bounding set needs CAP_SETPCAP, which a service started with only the capture
    // capabilities lacks; NO_NEW_PRIVS below closes the same door, so failures are ignored.
    for cap in 0..=CAP_LAST {
        // SAFETY: prctl with integer arguments only; no memory is passed.
        unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
    }
    // SAFETY: prctl with integer arguments only.
    if unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    } != 0
    {
        return (1 << 16) | errno();
    }
    let uid = TARGET_UID.load(Ordering::Acquire);
    let gid = TARGET_GID.load(Ordering::Acquire);
    if uid != u32::MAX {
        // Raw system calls, not the libc wrappers: glibc's wrappers would broadcast to every
        // thread themselves (from inside a signal handler), and each thread does its own here.
        // SAFETY: setgroups with size 0 reads no memory.
        if unsafe { libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) } != 0 {
            return (2 << 16) | errno();
        }
        // SAFETY: integer arguments only.
        if unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) } != 0 {
            return (3 << 16) | errno();
        }
        // SAFETY: integer arguments only.
        if unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) } != 0 {
            return (4 << 16) | errno();
        }
    }
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: `header` and `data` are live, correctly laid out for version 3 (two data
    // structs), and only read by the kernel.
    if unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    } != 0
    {
        return (5 << 16) | errno();
    }
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return (6 << 16) | errno();
    }
    0
}

extern "C" fn on_drop_signal(_sig: libc::c_int) {
    let saved = errno();
    let rc = drop_this_thread();
    if rc != 0 {
        // SAFETY: gettid takes no arguments.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) } as i32;
        if FAILED_STEP
            .compare_exchange(0, rc >> 16, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            FAILED_ERRNO.store(rc & 0xffff, Ordering::Release);
            FAILED_TID.store(tid, Ordering::Release);
        }
    }
    DONE.fetch_add(1, Ordering::AcqRel);
    // SAFETY: restores the interrupted code's errno; __errno_location returns this thread's
    // errno slot, always valid.
    unsafe { *libc::__errno_location() = saved };
}

fn step_error(step: i32, errno: i32, tid: i32) -> PrivilegeError {
    PrivilegeError::Step {
        step: STEPS
            .get(step as usize)
            .copied()
            .filter(|s| !s.is_empty())
            .unwrap_or(STEP_NNP),
        tid,
        source: std::io::Error::from_raw_os_error(errno),
    }
}

fn gettid() -> i32 {
    // SAFETY: gettid takes no arguments.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// Every thread of this process.
fn threads() -> Vec<i32> {
    std::fs::read_dir("/proc/self/task")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A thread's capability sets and uids as `/proc` shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadCreds {
    pub cap_eff: u64,
    pub cap_prm: u64,
    pub cap_inh: u64,
    pub cap_amb: u64,
    pub cap_bnd: u64,
    /// Real, effective, saved, filesystem uid.
    pub uids: [u32; 4],
    pub no_new_privs: bool,
}

impl ThreadCreds {
    /// Parses a `/proc/<pid>[/task/<tid>]/status` text.
    pub fn parse(status: &str) -> ThreadCreds {
        let mut c = ThreadCreds::default();
        for line in status.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let v = v.trim();
            let hex = || u64::from_str_radix(v, 16).unwrap_or(u64::MAX);
            match k {
                "CapEff" => c.cap_eff = hex(),
                "CapPrm" => c.cap_prm = hex(),
                "CapInh" => c.cap_inh = hex(),
                "CapAmb" => c.cap_amb = hex(),
                "CapBnd" => c.cap_bnd = hex(),
                "NoNewPrivs" => c.no_new_privs = v == "1",
                "Uid" => {
                    for (slot, x) in c.uids.iter_mut().zip(v.split_whitespace()) {
                        *slot = x.parse().unwrap_or(u32::MAX);
                    }
                }
                _ => {}
            }
        }
        c
    }

    /// Reads one thread of this process.
    pub fn of_thread(tid: i32) -> Option<ThreadCreds> {
        std::fs::read_to_string(format!("/proc/self/task/{tid}/status"))
            .ok()
            .map(|s| ThreadCreds::parse(&s))
    }

    /// True when the thread can no longer use or regain a capability.
    pub fn is_unprivileged(&self) -> bool {
        self.cap_eff == 0 && self.cap_prm == 0 && self.cap_inh == 0 && self.cap_amb == 0
    }
}

/// Drops every capability of every thread of this process, optionally switching to `user`
/// first (within the same per-thread step), and verifies the result from `/proc`.
///
/// Call it once the privileged set-up is over. The signal handler it installs stays installed,
/// so a straggling signal never falls on the default action (which would end the process).
pub fn drop_privileges(user: Option<&User>) -> Result<Dropped, PrivilegeError> {
    if let Some(u) = user {
        // SAFETY: geteuid takes no arguments and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err(PrivilegeError::NotRoot(u.name.clone()));
        }
        TARGET_GID.store(u.gid, Ordering::Release);
        TARGET_UID.store(u.uid, Ordering::Release);
    } else {
        TARGET_UID.store(u32::MAX, Ordering::Release);
    }
    install_handler()?;
    let me = gettid();
    let pid = std::process::id() as libc::c_int;
    let started = Instant::now();
    let limit = Duration::from_secs(5);
    let mut signalled: Vec<i32> = Vec::new();
    let mut count = 0usize;
    DONE.store(0, Ordering::Release);
    // Rounds: signal every thread not yet seen unprivileged, wait for the handlers, read back.
    loop {
        let mut pending = Vec::new();
        for tid in threads() {
            if tid == me {
                continue;
            }
            let ok = ThreadCreds::of_thread(tid)
                .is_some_and(|c| c.is_unprivileged() && expected_uid(&c, user));
            if !ok {
                pending.push(tid);
            }
        }
        if pending.is_empty() {
            break;
        }
        for &tid in &pending {
            // SAFETY: tgkill with integer arguments; a thread that has exited in the meantime
            // gives ESRCH, which only means there is nothing left to drop.
            let rc = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, drop_signal()) };
            if rc == 0 {
                count += 1;
                if !signalled.contains(&tid) {
                    signalled.push(tid);
                }
            }
        }
        while DONE.load(Ordering::Acquire) < count {
            if started.elapsed() > limit {
                let stuck = pending
                    .iter()
                    .copied()
                    .find(|&t| ThreadCreds::of_thread(t).is_some_and(|c| !c.is_unprivileged()))
                    .unwrap_or(pending[0]);
                return Err(PrivilegeError::Timeout {
                    tid: stuck,
                    waited: limit,
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let step = FAILED_STEP.load(Ordering::Acquire);
        if step != 0 {
            return Err(step_error(
                step,
                FAILED_ERRNO.load(Ordering::Acquire),
                FAILED_TID.load(Ordering::Acquire),
            ));
        }
        if started.elapsed() > limit {
            return Err(PrivilegeError::Timeout {
                tid: pending[0],
                waited: limit,
            });
        }
    }
    // The caller last: it needed its capabilities to send the signals to threads of another
    // user (after a switch, tgkill to a root-owned thread would be refused).
    let rc = drop_this_thread();
    if rc != 0 {
        return Err(step_error(rc >> 16, rc & 0xffff, me));
    }
    Ok(Dropped {
        threads: signalled.len() + 1,
        user: user.cloned(),
    })
}

fn expected_uid(c: &ThreadCreds, user: Option<&User>) -> bool {
    user.is_none_or(|u| c.uids.iter().all(|&x| x == u.uid))
}

fn install_handler() -> Result<(), PrivilegeError> {
    let sig = drop_signal();
    // SAFETY: an all-zero sigaction is a valid value (empty mask, no flags); the fields are
    // set below before use.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_drop_signal as *const () as libc::sighandler_t;
    action.sa_flags = libc::SA_RESTART;
    // SAFETY: `action.sa_mask` is a live sigset_t.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: `action` is initialised and outlives the call; the old action is not wanted.
    // The handler is async-signal-safe: raw system calls and atomics only.
    let rc = unsafe { libc::sigaction(sig, &action, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(PrivilegeError::Handler(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// The calling thread's credentials (for the status line and tests).
pub fn current() -> Option<ThreadCreds> {
    ThreadCreds::of_thread(gettid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_status() {
        let c = ThreadCreds::parse(
            "Name:\tx\nUid:\t0\t0\t0\t0\nCapInh:\t0000000000000000\nCapPrm:\t000001fffeffffff\n\
             CapEff:\t000001fffeffffff\nCapBnd:\t000001fffeffffff\nCapAmb:\t0000000000000000\n\
             NoNewPrivs:\t0\n",
        );
        assert_eq!(c.cap_eff, 0x1fffeffffff);
        assert_eq!(c.cap_inh, 0);
        assert_eq!(c.uids, [0; 4]);
        assert!(!c.no_new_privs);
        assert!(!c.is_unprivileged());
        let c =
            ThreadCreds::parse("CapInh:\t0\nCapPrm:\t0\nCapEff:\t0\nCapAmb:\t0\nNoNewPrivs:\t1\n");
        assert!(c.is_unprivileged() && c.no_new_privs);
    }

    #[test]
    fn resolves_numeric_and_named_users() {
        assert_eq!(
            User::resolve("65534:65533").unwrap(),
            User {
                name: "65534:65533".into(),
                uid: 65534,
                gid: 65533
            }
        );
        assert_eq!(User::resolve("1234").unwrap().gid, 1234);
        // Every Debian system has root in its passwd file.
        let root = User::resolve("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        let e = User::resolve("no-such-user-nameflow")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no-such-user-nameflow"), "{e}");
    }

    #[test]
    fn step_errors_name_the_step() {
        let e = step_error(5, libc::EPERM, 42).to_string();
        assert!(e.contains("capset") && e.contains("42"), "{e}");
        let e = step_error(6, libc::EINVAL, 1).to_string();
        assert!(e.contains("NO_NEW_PRIVS"), "{e}");
    }
}
