//! `cargo xtask bench --tx-iface A --rx-iface B` (issue 17): the sweep between two existing
//! interfaces, here a veth pair this test makes in its own namespace-free setup and passes as
//! A and B. The bench must run (a short sweep, debug binaries), report B's driver, XDP mode,
//! zero-copy state and queue count, leave both interfaces as they were (still there, up) and
//! no XDP program attached; and refuse an interface that already has a program.
//!
//! Needs root (veth, XDP, BPF) and clang (the bench compiles its BPF program); without them it
//! prints why and passes, except with `CI` set, where it fails.

use std::path::Path;
use std::process::Command;

fn skip(reason: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("CI is set, so this test may not skip: {reason}");
    }
    eprintln!("skipping: {reason}");
}

fn ip(args: &[&str]) -> Result<String, String> {
    let o = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "ip {args:?}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// A veth pair in this namespace, deleted on drop (also when the test fails).
struct Pair(String, String);

impl Pair {
    fn new() -> Result<Pair, String> {
        let tag = std::process::id() % 100_000;
        let (a, b) = (format!("nfbi{tag}a"), format!("nfbi{tag}b"));
        ip(&["link", "add", &a, "type", "veth", "peer", "name", &b])?;
        let pair = Pair(a, b);
        for d in [&pair.0, &pair.1] {
            // Only the bench's frames on the link: no IPv6 autoconfiguration traffic.
            let _ = Command::new("sysctl")
                .args(["-qw", &format!("net.ipv6.conf.{d}.disable_ipv6=1")])
                .status();
            ip(&["link", "set", d, "up"])?;
        }
        Ok(pair)
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.0]);
    }
}

fn xtask_bench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO"))
        .args(["xtask", "bench", "--debug-build"])
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo xtask bench")
}

#[test]
fn bench_runs_between_two_existing_interfaces_and_leaves_them_as_they_were() {
    let uid = Command::new("id").arg("-u").output().map(|o| o.stdout);
    if uid.as_deref().ok() != Some(b"0\n".as_slice()) {
        return skip("the bench needs root (XDP, BPF_PROG_RUN)");
    }
    if Command::new("clang").arg("--version").output().is_err() {
        return skip("the bench compiles its BPF program with clang, which is not installed");
    }
    let pair = match Pair::new() {
        Ok(p) => p,
        Err(e) => return skip(&format!("cannot make a veth pair: {e}")),
    };
    let (a, b) = (pair.0.as_str(), pair.1.as_str());
    let out = tempfile::tempdir().unwrap();
    let o = xtask_bench(&[
        "--templates",
        "udp64",
        "--receivers",
        "xdp_drop,nameflow",
        "--step-secs",
        "0.3",
        "--search-steps",
        "1",
        "--tx-iface",
        a,
        "--rx-iface",
        b,
        "--out",
        out.path().to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "the bench failed:\n{err}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("report.json")).unwrap()).unwrap();
    let m = &report["machine"];
    assert_eq!(m["driver"], "veth", "{m}");
    assert_eq!(m["queues"], 1, "{m}");
    let mode = m["xdp_mode"].as_str().unwrap();
    assert!(
        mode.contains(&format!("native on {b}")) && mode.contains("AF_XDP copy mode"),
        "{mode}"
    );
    let md = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    assert!(
        md.contains(&format!("interfaces {a} (generator) and {b}")),
        "{md}"
    );
    for dev in [a, b] {
        assert!(
            Path::new("/sys/class/net").join(dev).exists(),
            "{dev} removed"
        );
        let show = ip(&["-d", "link", "show", "dev", dev]).unwrap();
        assert!(show.contains(",UP"), "{dev} no longer up: {show}");
        assert!(
            !show.contains("prog/xdp"),
            "a program left on {dev}: {show}"
        );
    }

    // An interface with a program the bench did not attach is refused, and left alone.
    let src = out.path().join("foreign.bpf.c");
    std::fs::write(
        &src,
        "#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n\
         SEC(\"xdp\") int foreign(struct xdp_md *ctx) { return XDP_PASS; }\n\
         char LICENSE[] SEC(\"license\") = \"GPL\";\n",
    )
    .unwrap();
    let obj = out.path().join("foreign.bpf.o");
    let built = Command::new("clang")
        .args([
            "-O2",
            "-g",
            "-target",
            "bpf",
            "-I/usr/include/x86_64-linux-gnu",
            "-c",
        ])
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .status()
        .is_ok_and(|s| s.success());
    assert!(built, "compile the foreign XDP program");
    ip(&[
        "link",
        "set",
        "dev",
        b,
        "xdpgeneric",
        "obj",
        obj.to_str().unwrap(),
        "sec",
        "xdp",
    ])
    .unwrap();
    let o = xtask_bench(&["--tx-iface", a, "--rx-iface", b]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("already has an XDP program"),
        "{err}"
    );
    let show = ip(&["-d", "link", "show", "dev", b]).unwrap();
    assert!(
        show.contains("prog/xdp"),
        "the foreign program stays: {show}"
    );
    ip(&["link", "set", "dev", b, "xdpgeneric", "off"]).unwrap();
    // Mistakes are named.
    let o = xtask_bench(&["--tx-iface", a, "--rx-iface", "nfbi-none"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("no interface nfbi-none"),
        "{err}"
    );
    let o = xtask_bench(&["--tx-iface", a, "--rx-iface", a]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("both"), "{err}");
}
