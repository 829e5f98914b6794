//! Zeek's checksum-offloading hint on a live capture (issue 17): frames whose TCP checksums
//! are wrong, as a NIC with transmit offloading leaves them, give one warning that names
//! `-C`; the same frames with `-C` give none (frames with good checksums give none either:
//! `tests/full_disk.rs`). As root in namespaces; skips without, fails instead under `CI`.

#[allow(dead_code)]
#[path = "support/capture.rs"]
mod capture;
#[allow(dead_code)]
#[path = "support/netns.rs"]
mod netns;

use capture::{sample_frames, Capture};
use netns::{paced, send_frames, VethPair};

const BIN: &str = env!("CARGO_BIN_EXE_nameflow");

/// The frames of `sample_frames` with every TCP checksum off by one.
fn offloaded() -> Vec<Vec<u8>> {
    let mut frames = sample_frames(10);
    for f in &mut frames {
        // Ethernet, IPv4 (protocol at 23, header length in the low nibble of 14), TCP.
        if f.len() > 54 && f[12..14] == [0x08, 0x00] && f[23] == 6 {
            let at = 14 + usize::from(f[14] & 0x0f) * 4 + 16;
            f[at] ^= 0x01;
        }
    }
    frames
}

fn run(extra: &[&str]) -> String {
    let pair = VethPair::new(2, 1500).expect("veth pair");
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = pair.cap_ns.command(BIN);
    cmd.args(["capture", "-i", &pair.cap, "--no-names"])
        .args(extra)
        .arg("-o")
        .arg(dir.path());
    let cap = Capture::start(cmd).unwrap_or_else(|e| panic!("{e}"));
    let frames = offloaded();
    send_frames(
        &pair.snd_ns.name,
        &pair.snd,
        &frames,
        &paced(frames.len(), 5_000),
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (code, text) = cap.stop();
    assert_eq!(code, Some(0), "{text}");
    text
}

#[test]
fn offloaded_checksums_live_get_one_hint_unless_ignored() {
    if let Some(reason) = netns::skip_reason() {
        if std::env::var_os("CI").is_some() {
            panic!("CI is set, so this test may not skip: {reason}");
        }
        eprintln!("skipping: {reason}");
        return;
    }
    let text = run(&[]);
    let hints: Vec<&str> = text.lines().filter(|l| l.contains("offloading")).collect();
    assert_eq!(hints.len(), 1, "one hint:\n{text}");
    assert!(hints[0].contains("-C (--ignore-checksums)"), "{text}");
    let text = run(&["-C"]);
    assert!(!text.contains("offloading"), "{text}");
}
