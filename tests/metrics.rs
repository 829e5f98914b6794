//! `nameflow capture --metrics`: the live counters scraped as Prometheus text over loopback
//! (inside the capture's namespace), every drop counter included, and the frame count equal
//! to what was sent.
//!
//! Without root, or where namespaces or veth are missing, the test prints why and passes.

// Shared with tests/privilege.rs and tests/live.rs; this test uses only part of it.
#[allow(dead_code)]
#[path = "support/capture.rs"]
mod capture;
// Shared with tests/live.rs; this test uses only part of it.
#[allow(dead_code)]
#[path = "support/netns.rs"]
mod netns;

use capture::{sample_frames, Capture};
use netns::{paced, send_frames, VethPair};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_nameflow");

/// `GET /metrics` from a thread inside namespace `ns`.
fn scrape(ns: &str, addr: &str) -> Result<String, String> {
    let ns_path = format!("/var/run/netns/{ns}");
    let addr = addr.to_owned();
    std::thread::spawn(move || -> Result<String, String> {
        let f = std::fs::File::open(&ns_path).map_err(|e| format!("open {ns_path}: {e}"))?;
        // Only this thread moves into the namespace.
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("setns: {e}"))?;
        let mut s = std::net::TcpStream::connect(&addr).map_err(|e| format!("{addr}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| e.to_string())?;
        let mut body = String::new();
        s.read_to_string(&mut body).map_err(|e| e.to_string())?;
        Ok(body)
    })
    .join()
    .map_err(|_| "scraper panicked".to_string())?
}

/// The sum of every sample of `metric` (over its labels).
fn sum(text: &str, metric: &str) -> Option<f64> {
    let mut found = None;
    let body = text.split_once("\r\n\r\n").map_or(text, |(_, b)| b);
    for l in body.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = l.rsplit_once(' ') else {
            continue;
        };
        let bare = name.split('{').next().unwrap_or(name);
        if bare == metric {
            *found.get_or_insert(0.0) += value.parse::<f64>().ok()?;
        }
    }
    found
}

#[test]
fn metrics_are_scraped_on_loopback_with_every_drop_counter() {
    if let Some(reason) = netns::skip_reason() {
        eprintln!("skipping: {reason}");
        return;
    }
    let pair = VethPair::new(2, 1500).expect("veth pair");
    pair.cap_ns.ip(&["link", "set", "lo", "up"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = pair.cap_ns.command(BIN);
    cmd.args([
        "capture",
        "-i",
        &pair.cap,
        "--no-names",
        "--metrics",
        "127.0.0.1:0",
    ])
    .arg("-o")
    .arg(dir.path());
    let cap = Capture::start(cmd).unwrap_or_else(|e| panic!("{e}"));
    let text = cap.text();
    let addr = text
        .lines()
        .find_map(|l| l.split("metrics at http://").nth(1))
        .and_then(|r| r.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("no metrics address announced: {text}"))
        .to_owned();

    let first = scrape(&pair.cap_ns.name, &addr).unwrap();
    assert!(first.starts_with("HTTP/1."), "{first}");
    assert!(first.contains("nameflow_up 1"), "{first}");

    let frames = sample_frames(10);
    send_frames(
        &pair.snd_ns.name,
        &pair.snd,
        &frames,
        &paced(frames.len(), 5_000),
    )
    .unwrap();
    // Published every second: wait until the frames show up.
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let body = scrape(&pair.cap_ns.name, &addr).unwrap();
        if sum(&body, "nameflow_frames_total") == Some(frames.len() as f64) {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "frames never reached {} in the metrics:\n{body}",
            frames.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    for drop_counter in [
        "nameflow_dropped_total",
        "nameflow_forward_dropped_total",
        "nameflow_records_dropped_total",
        "nameflow_xsk_rx_dropped_total",
        "nameflow_xsk_rx_ring_full_total",
        "nameflow_xsk_rx_fill_ring_empty_total",
        "nameflow_xdp_redirect_failed_total",
        "nameflow_xdp_dropped_filter_total",
        "nameflow_sink_dropped_total",
        "nameflow_flows_evicted_total",
    ] {
        assert!(
            sum(&body, drop_counter).is_some(),
            "{drop_counter} missing:\n{body}"
        );
    }
    assert_eq!(sum(&body, "nameflow_dropped_total"), Some(0.0), "{body}");
    assert!(sum(&body, "nameflow_xdp_seen_total").unwrap() >= frames.len() as f64);
    assert!(
        body.contains("# TYPE nameflow_flows_active gauge"),
        "{body}"
    );
    let (code, text) = cap.stop();
    assert_eq!(code, Some(0), "{text}");
}
