//! Least privilege, as root in namespaces this test creates: once `nameflow capture` has
//! attached its program, no thread of the process holds a capability (read from
//! `/proc/<pid>/task/*/status`), traffic is still captured and logged, shutdown still
//! detaches the program, and log files are created 0640. The capabilities the systemd unit
//! grants (`deploy/nameflow.service`) are checked to be enough, as an unprivileged user.
//!
//! Without root, or where namespaces or veth are missing, each test prints why and passes.

#[path = "support/capture.rs"]
mod capture;
// Shared with tests/live.rs; this test uses only part of it.
#[allow(dead_code)]
#[path = "support/netns.rs"]
mod netns;

use capture::{sample_frames, Capture};
use nameflow::capture::privilege::ThreadCreds;
use netns::{paced, send_frames, VethPair};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

const BIN: &str = env!("CARGO_BIN_EXE_nameflow");

/// Live tests share two cores and the kernel's view of XDP: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

macro_rules! require_live {
    () => {
        if let Some(reason) = netns::skip_reason() {
            eprintln!("skipping: {reason}");
            return;
        }
    };
}

/// Every thread of `pid`, with its credentials.
fn threads_of(pid: u32) -> Vec<(String, ThreadCreds)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/task")).expect("the process runs") {
        let e = e.unwrap();
        let tid = e.file_name().to_string_lossy().into_owned();
        let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        out.push((
            format!("{tid} ({})", comm.trim()),
            ThreadCreds::parse(&status),
        ));
    }
    out
}

/// The capabilities the unit grants, as setpriv wants them (`+bpf,+net_admin,...`).
fn unit_capabilities() -> String {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nameflow.service"),
    )
    .expect("deploy/nameflow.service exists");
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("AmbientCapabilities="))
        .expect("the unit grants ambient capabilities");
    line.split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_ascii_lowercase()))
        .collect::<Vec<_>>()
        .join(",")
}

fn capture_cmd(pair: &VethPair, dir: &Path, wrapper: &[&str], extra: &[&str]) -> Command {
    let mut cmd = pair.cap_ns.command(wrapper.first().copied().unwrap_or(BIN));
    if !wrapper.is_empty() {
        cmd.args(&wrapper[1..]).arg(BIN);
    }
    cmd.args([
        "capture",
        "-i",
        &pair.cap,
        "--format",
        "tsv",
        "--stats-interval",
        "0.5",
        "--no-names",
    ])
    .arg("-o")
    .arg(dir)
    .args(extra);
    cmd
}

/// Runs one capture, checks every thread is unprivileged while it runs, sends traffic,
/// stops it, and checks what it logged.
fn run_and_check(wrapper: &[&str], extra: &[&str], want_uid: u32, bounding_cleared: bool) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let pair = VethPair::new(2, 1500).expect("veth pair");
    let dir = tempfile::tempdir().unwrap();
    // The capture may run as another user: it must be able to create its logs here.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let cap = Capture::start(capture_cmd(&pair, dir.path(), wrapper, extra))
        .unwrap_or_else(|e| panic!("{e}"));
    // `ip netns exec` (and setpriv) exec nameflow in place, so the child's pid is nameflow's.
    let threads = threads_of(cap.pid());
    assert!(
        threads.len() >= 3,
        "workers, writer and main thread expected: {threads:?}"
    );
    for (t, c) in &threads {
        assert!(
            c.is_unprivileged(),
            "thread {t} still holds capabilities: {c:?}\n{}",
            cap.text()
        );
        assert!(c.no_new_privs, "thread {t} may regain privileges: {c:?}");
        assert_eq!(c.uids, [want_uid; 4], "thread {t} runs as the wrong user");
        if bounding_cleared {
            assert_eq!(c.cap_bnd, 0, "thread {t} keeps a bounding set: {c:?}");
        }
    }
    assert!(
        cap.text().contains("dropped every capability"),
        "{}",
        cap.text()
    );

    let frames = sample_frames(20);
    send_frames(
        &pair.snd_ns.name,
        &pair.snd,
        &frames,
        &paced(frames.len(), 5_000),
    )
    .expect("send frames");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (code, text) = cap.stop();
    assert_eq!(
        code,
        Some(0),
        "capture failed after dropping privileges: {text}"
    );
    assert_eq!(
        pair.xdp_prog_id().unwrap(),
        0,
        "the program must be detached at exit without privileges"
    );
    let conn = dir.path().join("conn.log");
    let log = std::fs::read_to_string(&conn).expect("conn.log written");
    let rows = log.lines().filter(|l| !l.starts_with('#')).count();
    assert!(
        rows >= 40,
        "20 TCP sessions and 20 DNS exchanges logged, got {rows}:\n{text}"
    );
    for name in ["conn.log", "stats.log"] {
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640, "{name} mode {:o}", mode & 0o777);
    }
}

#[test]
fn root_capture_drops_every_capability_in_every_thread() {
    require_live!();
    run_and_check(&[], &[], 0, true);
}

#[test]
fn user_switch_applies_to_every_thread() {
    require_live!();
    run_and_check(&[], &["--user", "65534:65534"], 65534, true);
}

#[test]
fn the_units_capabilities_suffice_and_are_dropped() {
    require_live!();
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipping: setpriv (util-linux) is missing");
        return;
    }
    // As the unit runs it: an unprivileged user with only the unit's ambient capabilities
    // (which also leaves nameflow without CAP_SETPCAP, so the bounding set stays).
    let caps = unit_capabilities();
    let inh = format!("--inh-caps=-all,{caps}");
    let amb = format!("--ambient-caps=-all,{caps}");
    run_and_check(
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            &inh,
            &amb,
            "--",
        ],
        &[],
        65534,
        false,
    );
}
