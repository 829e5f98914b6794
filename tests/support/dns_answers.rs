//! The DNS answers of a trace, read with a small DNS parser of the tests' own (independent of
//! `nameflow::names`) over nameflow's pcap reader and decoder: what a name check may count
//! as "a name a DNS answer gave that address".

use nameflow::capture::pcap::PcapReader;
use nameflow::capture::FrameSource;
use nameflow::decode::{DecodeConfig, Decoder, L4};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;

/// Reads a (possibly compressed) name; `None` on anything malformed. Pointers are followed
/// at most 32 times.
fn name_at(m: &[u8], mut pos: usize) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut end = None;
    for _ in 0..128 {
        let len = *m.get(pos)? as usize;
        if len == 0 {
            return Some((out.to_ascii_lowercase(), end.unwrap_or(pos + 1)));
        }
        if len & 0xc0 == 0xc0 {
            let target = ((len & 0x3f) << 8) | *m.get(pos + 1)? as usize;
            end.get_or_insert(pos + 2);
            pos = target;
            continue;
        }
        let label = m.get(pos + 1..pos + 1 + len)?;
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(&String::from_utf8_lossy(label));
        pos += 1 + len;
    }
    None
}

/// `(address, every name of the answer's chain)` for each A/AAAA answer of a DNS response.
fn answers(m: &[u8]) -> Vec<(IpAddr, HashSet<String>)> {
    let mut out = Vec::new();
    let Some(h) = m.get(..12) else { return out };
    if h[2] & 0x80 == 0 {
        return out;
    }
    let qd = u16::from_be_bytes([h[4], h[5]]);
    let an = u16::from_be_bytes([h[6], h[7]]);
    let mut pos = 12;
    let mut chain: HashSet<String> = HashSet::new();
    for _ in 0..qd {
        let Some((q, end)) = name_at(m, pos) else {
            return out;
        };
        chain.insert(q);
        pos = end + 4;
    }
    let mut addrs = Vec::new();
    for _ in 0..an {
        let Some((owner, end)) = name_at(m, pos) else {
            break;
        };
        let Some(f) = m.get(end..end + 10) else { break };
        let ty = u16::from_be_bytes([f[0], f[1]]);
        let len = u16::from_be_bytes([f[8], f[9]]) as usize;
        let Some(rd) = m.get(end + 10..end + 10 + len) else {
            break;
        };
        match (ty, len) {
            (1, 4) => addrs.push((IpAddr::from([rd[0], rd[1], rd[2], rd[3]]), owner)),
            (28, 16) => {
                let mut o = [0u8; 16];
                o.copy_from_slice(rd);
                addrs.push((IpAddr::from(o), owner));
            }
            (5, _) => {
                chain.insert(owner);
                if let Some((t, _)) = name_at(m, end + 10) {
                    chain.insert(t);
                }
            }
            _ => {}
        }
        pos = end + 10 + len;
    }
    for (a, owner) in addrs {
        let mut names = chain.clone();
        names.insert(owner);
        out.push((a, names));
    }
    out
}

/// Every DNS answer of the trace: address → [(time, names of its chain)].
pub fn dns_answers(trace: &Path) -> HashMap<IpAddr, Vec<(u64, HashSet<String>)>> {
    let mut reader = PcapReader::open(&[trace.to_path_buf()]).expect("trace opens");
    let mut decoder = Decoder::new(DecodeConfig {
        verify_checksums: false,
        ..DecodeConfig::default()
    });
    let mut map: HashMap<IpAddr, Vec<(u64, HashSet<String>)>> = HashMap::new();
    while let Ok(Some(f)) = reader.next_frame() {
        let ts = f.ts_ns;
        let _ = decoder.decode(f.link, ts, f.data, |p| {
            let msg = match p.l4 {
                L4::Udp { src_port: 53, .. } => p.payload,
                L4::Tcp { src_port: 53, .. } if p.payload.len() > 2 => &p.payload[2..],
                _ => return,
            };
            for (a, names) in answers(msg) {
                map.entry(a).or_default().push((ts, names));
            }
        });
    }
    map
}
