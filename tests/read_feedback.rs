//! What `nameflow read` tells the user while and after it reads (issue 17): a progress line
//! on a terminal only (none into a pipe or with `--quiet`), and Zeek's hint about checksum
//! offloading when more than 5 % of the packets fail checksum validation.

use nameflow::synth::{TcpClose, TcpSpec, Trace, TsResolution};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_nameflow");
const T0: u64 = 1_700_000_000_000_000_000;

fn skip(reason: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("CI is set, so this test may not skip: {reason}");
    }
    eprintln!("skipping: {reason}");
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A clean synthetic trace: every checksum right.
fn clean_pcap(dir: &Path, n: u16) -> PathBuf {
    let mut t = Trace::new();
    for i in 0..n {
        let spec = TcpSpec {
            client: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)), 40_000 + i),
            server: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)), 80),
            close: TcpClose::Fin,
            ..TcpSpec::default()
        };
        t.tcp_session(&spec, T0 + u64::from(i) * 1_000_000);
    }
    let p = dir.join("clean.pcap");
    t.write_pcap(&p, TsResolution::Micro).unwrap();
    p
}

fn read(args: &[&str]) -> Output {
    let o = Command::new(BIN)
        .arg("read")
        .args(args)
        .output()
        .expect("run nameflow");
    assert!(o.status.success(), "{}", stderr(&o));
    o
}

#[test]
fn offloaded_checksums_get_the_hint_and_clean_ones_do_not() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    let bad = shared.join("pcaps/ndpi/WebattackRCE/WebattackRCE.pcap");
    if !bad.exists() {
        return skip(&format!("{} is not there", bad.display()));
    }
    let o = read(&["-o", "null:", bad.to_str().unwrap()]);
    let err = stderr(&o);
    let hints: Vec<&str> = err.lines().filter(|l| l.contains("offloading")).collect();
    assert_eq!(hints.len(), 1, "one hint line:\n{err}");
    let hint = hints[0];
    assert!(
        hint.contains("797 of 797 packets (100.0%)") && hint.contains("-C (--ignore-checksums)"),
        "{hint}"
    );
    // With -C nothing is validated, so there is nothing to hint at.
    let o = read(&["-C", "-o", "null:", bad.to_str().unwrap()]);
    assert!(!stderr(&o).contains("offloading"), "{}", stderr(&o));

    let dir = tempfile::tempdir().unwrap();
    let clean = clean_pcap(dir.path(), 50);
    let o = read(&["-o", "null:", clean.to_str().unwrap()]);
    assert!(!stderr(&o).contains("offloading"), "{}", stderr(&o));
}

/// Runs `nameflow read ARGS` under a pseudo-terminal (`script` from bsdutils) and returns what
/// the terminal got.
fn on_a_terminal(args: &[&str]) -> Option<String> {
    let mut line = format!("{BIN} read");
    for a in args {
        line.push(' ');
        line.push_str(a);
    }
    let o = match Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            skip(&format!(
                "no `script` (bsdutils) to make a pseudo-terminal: {e}"
            ));
            return None;
        }
    };
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{text}{}", stderr(&o));
    Some(text)
}

#[test]
fn progress_is_drawn_on_a_terminal_only() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = clean_pcap(dir.path(), 3000);
    let size = std::fs::metadata(&pcap).unwrap().len();
    let p = pcap.to_str().unwrap();
    let Some(tty) = on_a_terminal(&["-o", "null:", p]) else {
        return;
    };
    // The line with the file's size (known: a regular file), a rate and an ETA, then the
    // summary as always.
    let total = format!("/{} (", indicatif::HumanBytes(size));
    assert!(
        tty.contains("nameflow: ") && tty.contains(&total) && tty.contains("ETA"),
        "no progress line with {total}:\n{tty:?}"
    );
    assert!(
        tty.contains("packets") && tty.contains("connections written"),
        "{tty:?}"
    );

    // --quiet: the summary only.
    let quiet = on_a_terminal(&["--quiet", "-o", "null:", p]).unwrap();
    assert!(!quiet.contains("ETA"), "{quiet:?}");
    assert!(quiet.contains("connections written"), "{quiet:?}");

    // Into a pipe: the summary only, not one control character.
    let o = read(&["-o", "null:", p]);
    let err = stderr(&o);
    assert!(
        !err.contains("ETA") && !err.contains('\r') && !err.contains('\x1b'),
        "{err:?}"
    );
    assert!(err.contains("connections written"), "{err}");
}
