//! Decodes every capture under `../shared` (the reference data beside the project) and checks
//! that the decoder never panics, that Zeek's own traces yield packets, and that the traces made
//! for a particular encapsulation show it. Prints the counters of each file.

use nameflow::capture::pcap::PcapReader;
use nameflow::capture::FrameSource;
use nameflow::decode::{DecodeConfig, DecodeCounters, Decoder, TunnelKind};
use std::path::{Path, PathBuf};

fn shared_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared")
}

fn captures(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            captures(&p, out);
        } else {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(".pcap") || name.ends_with(".pcapng") || name.ends_with(".pcap.gz") {
                out.push(p);
            }
        }
    }
}

/// What decoding one file showed, beyond the counters.
#[derive(Default, Debug)]
struct Seen {
    carries: Vec<TunnelKind>,
    encap_kinds: Vec<TunnelKind>,
    inner_vlan: bool,
}

/// Whether Zeek validated checksums for this trace: `-C` in its `RUN.txt` says it did not
/// (those traces were captured with offloaded, unfilled checksums).
fn zeek_verifies_checksums(path: &Path) -> bool {
    let run = path.with_file_name("RUN.txt");
    match std::fs::read_to_string(run) {
        Ok(text) => !text.contains(" -C "),
        Err(_) => true,
    }
}

fn decode_file(path: &Path) -> (DecodeCounters, Seen) {
    let mut dec = Decoder::new(DecodeConfig {
        verify_checksums: zeek_verifies_checksums(path),
        ..DecodeConfig::default()
    });
    let mut seen = Seen::default();
    let mut reader = match PcapReader::open(&[path.to_path_buf()]) {
        Ok(r) => r,
        Err(e) => {
            println!("{}: cannot open: {e}", path.display());
            return (*dec.counters(), seen);
        }
    };
    loop {
        match reader.next_frame() {
            Ok(Some(f)) => {
                let _ = dec.decode(f.link, f.ts_ns, f.data, |p| {
                    if let Some(k) = p.carries {
                        if !seen.carries.contains(&k) {
                            seen.carries.push(k);
                        }
                    }
                    for e in p.encap {
                        if !seen.encap_kinds.contains(&e.kind) {
                            seen.encap_kinds.push(e.kind);
                        }
                    }
                    seen.inner_vlan |= p.inner_vlan.is_some();
                });
            }
            Ok(None) => break,
            Err(e) => {
                // Damaged captures (the fuzzed one) end early; what came before still counts.
                println!("{}: {e}", path.display());
                break;
            }
        }
    }
    (*dec.counters(), seen)
}

#[test]
fn every_shared_capture_decodes_without_panic() {
    let dir = shared_dir();
    if !dir.is_dir() {
        println!("skipped: {} is absent (the shared reference data is not checked out beside the project)", dir.display());
        return;
    }
    let mut files = Vec::new();
    captures(&dir, &mut files);
    assert!(
        !files.is_empty(),
        "no captures found under {}",
        dir.display()
    );
    let mut total_frames = 0;
    for path in &files {
        let (c, seen) = decode_file(path);
        let rel = path
            .strip_prefix(&dir)
            .unwrap_or(path)
            .display()
            .to_string();
        println!(
            "{rel}: {c:?} carries={:?} encap={:?}",
            seen.carries, seen.encap_kinds
        );
        total_frames += c.frames;
        if c.frames == 0 {
            // The pcap reader may not be in place yet; nothing else to check for this file.
            continue;
        }
        if rel.starts_with("conformance/") {
            assert!(
                c.packets > 0,
                "{rel}: Zeek found connections here, the decoder found no packet"
            );
        }
        let set = rel.split('/').nth(1).unwrap_or("");
        match set {
            "vxlan-icmp" => assert!(
                seen.carries.contains(&TunnelKind::Vxlan)
                    && seen.encap_kinds.contains(&TunnelKind::Vxlan),
                "{rel}: VXLAN outer and inner packets expected"
            ),
            "gre-icmp-dns" => assert!(
                seen.encap_kinds.contains(&TunnelKind::Gre),
                "{rel}: packets inside GRE expected"
            ),
            "vlan-q-in-q" => assert!(seen.inner_vlan, "{rel}: an inner VLAN id expected"),
            "ipv6-fragmented-dns" => {
                assert!(c.reassembled > 0, "{rel}: a reassembled datagram expected")
            }
            "fddi-llc-1333-conns" | "cisco-fabric-path-s0" => assert!(
                c.packets * 2 >= c.frames,
                "{rel}: most frames should decode to packets: {c:?}"
            ),
            // PPP negotiation frames (LCP, IPCP) are not IP; the ICMPv6 ones must decode.
            "pppoe-icmpv6" => assert!(c.packets > 0, "{rel}: PPPoE packets expected"),
            _ => {}
        }
    }
    println!("{} files, {total_frames} frames", files.len());
}
