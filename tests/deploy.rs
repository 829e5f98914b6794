//! deploy/: the install script into a scratch root (files, modes, config checked), its dry
//! run, the units verified by `systemd-analyze verify`, and the NIC script on a veth in a
//! namespace this test creates.
//!
//! systemd is not PID 1 on the project's build machines, so the service is never really
//! started here: the install runs with `--root` (which installs everything but starts
//! nothing), and the unit's start command with the unit's capabilities is exercised by
//! `tests/privilege.rs` (`the_units_capabilities_suffice_and_are_dropped`).

// Shared with tests/live.rs; this test uses only part of it.
#[allow(dead_code)]
#[path = "support/netns.rs"]
mod netns;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_nameflow");

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn install(args: &[&str]) -> std::process::Output {
    Command::new("bash")
        .arg(deploy("install.sh"))
        .args(["--binary", BIN])
        .args(args)
        .output()
        .expect("run deploy/install.sh")
}

#[test]
fn install_into_a_root_puts_everything_in_place() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let out = install(&["--root", r.to_str().unwrap()]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "install failed: {text}");
    assert!(
        text.contains("nameflow.toml: ok"),
        "the config is checked: {text}"
    );
    for (path, want) in [
        ("usr/local/bin/nameflow", 0o755),
        ("usr/local/sbin/nameflow-nic-setup", 0o755),
        ("etc/systemd/system/nameflow.service", 0o644),
        ("etc/systemd/system/nameflow-nic.service", 0o644),
        ("etc/nameflow/nameflow.toml", 0o640),
        ("etc/nameflow/nic.env", 0o640),
        ("etc/nameflow", 0o750),
        ("var/log/nameflow", 0o750),
        ("var/lib/nameflow", 0o750),
        ("usr/share/doc/nameflow/operations.md", 0o644),
    ] {
        assert_eq!(mode(&r.join(path)), want, "{path}");
    }
    // A second install keeps the operator's config and puts the sample beside it.
    std::fs::write(
        r.join("etc/nameflow/nameflow.toml"),
        "[flow]\nmax_flows = 10\n",
    )
    .unwrap();
    let out = install(&["--root", r.to_str().unwrap()]);
    assert!(out.status.success());
    assert_eq!(
        std::fs::read_to_string(r.join("etc/nameflow/nameflow.toml")).unwrap(),
        "[flow]\nmax_flows = 10\n"
    );
    assert!(r.join("etc/nameflow/nameflow.toml.new").is_file());
    // A config that does not pass stops the install.
    std::fs::write(
        r.join("etc/nameflow/nameflow.toml"),
        "[flow]\nmax_flow = 10\n",
    )
    .unwrap();
    let out = install(&["--root", r.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("flow.max_flow"),
        "{err}"
    );
}

#[test]
fn install_dry_run_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let out = install(&["--root", root.path().to_str().unwrap(), "--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("+ install -m 0755"), "{text}");
    assert!(text.contains("config check"), "{text}");
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
}

#[test]
fn units_pass_systemd_analyze_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipping: systemd-analyze is not installed");
        return;
    }
    // verify checks that executables exist: point the units at what this build has.
    let dir = tempfile::tempdir().unwrap();
    for (unit, from, to) in [
        (
            "nameflow.service",
            "/usr/local/bin/nameflow",
            BIN.to_owned(),
        ),
        (
            "nameflow-nic.service",
            "/usr/local/sbin/nameflow-nic-setup",
            deploy("nic-setup.sh").display().to_string(),
        ),
    ] {
        let text = std::fs::read_to_string(deploy(unit)).unwrap();
        assert!(text.contains(from), "{unit} starts {from}");
        std::fs::write(dir.path().join(unit), text.replace(from, &to)).unwrap();
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.path().join("nameflow.service"))
        .arg(dir.path().join("nameflow-nic.service"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // Dependencies on targets this host does not have are not the units' fault.
    let problems: Vec<&str> = err
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains(".target"))
        .collect();
    assert!(problems.is_empty(), "systemd-analyze verify: {err}");
    let unit = std::fs::read_to_string(deploy("nameflow.service")).unwrap();
    for line in [
        "Type=notify",
        "Restart=on-failure",
        "ProtectSystem=strict",
        "LimitMEMLOCK=infinity",
        "ReadWritePaths=/var/log/nameflow /var/lib/nameflow",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} missing");
    }
}

#[test]
fn the_sample_config_passes_check() {
    let out = Command::new(BIN)
        .args(["config", "check"])
        .arg(deploy("nameflow.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And the printed default file too.
    let out = Command::new(BIN)
        .args(["config", "default"])
        .output()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("default.toml");
    std::fs::write(&p, &out.stdout).unwrap();
    let out = Command::new(BIN)
        .args(["config", "check"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A bad key is caught with its name.
    std::fs::write(&p, "[capture]\nring_szie = 4096\n").unwrap();
    let out = Command::new(BIN)
        .args(["config", "check"])
        .arg(&p)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("capture.ring_szie"),
        "{err}"
    );
}

#[test]
fn nic_setup_configures_a_veth() {
    if let Some(reason) = netns::skip_reason() {
        eprintln!("skipping: {reason}");
        return;
    }
    let pair = netns::VethPair::new(4, 1500).expect("veth pair");
    let script = deploy("nic-setup.sh");
    let dry = pair
        .cap_ns
        .command("bash")
        .arg(&script)
        .args([&pair.cap, "--cpus", "0,1", "--busy-poll", "50", "--dry-run"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&dry.stdout);
    assert!(
        dry.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(
        text.contains(&format!("+ ethtool -L {} rx 2 tx 2", pair.cap)),
        "{text}"
    );
    assert!(text.contains("net.core.busy_poll=50"), "{text}");
    let ch = |ns: &netns::Netns| {
        String::from_utf8_lossy(
            &ns.command("ethtool")
                .args(["-l", &pair.cap])
                .output()
                .unwrap()
                .stdout,
        )
        .into_owned()
    };
    assert!(
        ch(&pair.cap_ns).contains("RX:\t\t4"),
        "the dry run changed nothing"
    );
    let real = pair
        .cap_ns
        .command("bash")
        .arg(&script)
        .args([&pair.cap, "--cpus", "0,1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&real.stderr);
    assert!(real.status.success(), "{err}");
    assert!(
        err.contains("no RSS"),
        "veth's missing RSS is a warning: {err}"
    );
    let current = ch(&pair.cap_ns);
    let after = current.split("Current hardware settings:").nth(1).unwrap();
    assert!(after.contains("RX:\t\t2"), "{current}");
    let k = pair
        .cap_ns
        .command("ethtool")
        .args(["-k", &pair.cap])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&k.stdout).contains("rx-vlan-offload: off"),
        "VLAN stripping is turned off"
    );
}
