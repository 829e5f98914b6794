//! Proves name evidence allocates nothing in the steady state, ClientHello reassembly included:
//! after a warm-up pass, later passes over fresh connections (TCP ClientHellos in three segments,
//! QUIC ClientHellos over two Initials, more streams than the table holds) make no allocation.
//! The counting allocator (`support/alloc_count.rs`) is this test binary's only.

use nameflow::decode::quic::{InitialKeys, Version};
use nameflow::decode::{DecodeConfig, Decoder};
use nameflow::names::EvidenceParser;
use nameflow::synth::Trace;
use std::net::SocketAddr;

#[path = "support/alloc_count.rs"]
mod alloc_count;
use alloc_count::{allocations_during, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A ClientHello whose server name follows `pad` bytes of padding extension.
fn client_hello(name: &str, pad: usize) -> Vec<u8> {
    let n = name.as_bytes();
    let mut exts = vec![0, 21];
    exts.extend_from_slice(&(pad as u16).to_be_bytes());
    exts.resize(4 + pad, 0);
    exts.extend_from_slice(&[0, 0]);
    exts.extend_from_slice(&((n.len() + 5) as u16).to_be_bytes());
    exts.extend_from_slice(&((n.len() + 3) as u16).to_be_bytes());
    exts.push(0);
    exts.extend_from_slice(&(n.len() as u16).to_be_bytes());
    exts.extend_from_slice(n);
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7u8; 32]);
    body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let mut hs = vec![1];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![22, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

fn crypto(offset: usize, data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x06];
    f.extend_from_slice(&(0x4000u16 | offset as u16).to_be_bytes());
    f.extend_from_slice(&(0x4000u16 | data.len() as u16).to_be_bytes());
    f.extend_from_slice(data);
    f.resize(f.len().max(1200), 0);
    f
}

/// `conns` connections from client port `port0` on: each a TCP ClientHello in three segments
/// out of order and a QUIC v1 ClientHello over two Initials (second half first).
fn trace(port0: u16, conns: u16) -> Trace {
    let mut t = Trace::new();
    let s: SocketAddr = "198.18.3.3:443".parse().unwrap();
    let dcid = [9u8; 8];
    let keys = InitialKeys::client(Version::V1, &dcid).unwrap();
    for k in 0..conns {
        let c = SocketAddr::new("198.18.0.1".parse().unwrap(), port0 + k);
        let ch = client_hello("split.example", 2500);
        // Every other connection opens with a SYN, and its second segment overtakes its first.
        let order = if k % 2 == 0 {
            t.tcp_segment(0, c, s, 0x02, 0, 0, b"");
            [(1000, 2000), (0, 1000), (2000, ch.len())]
        } else {
            [(0, 1000), (2000, ch.len()), (1000, 2000)]
        };
        for (a, b) in order {
            t.tcp_segment(1, c, s, 0x18, 1 + a as u32, 1, &ch[a..b]);
        }
        let hs = &ch[5..];
        let second = keys.seal(Version::V1, &dcid, 1, &crypto(1100, &hs[1100..]));
        let first = keys.seal(Version::V1, &dcid, 0, &crypto(0, &hs[..1100]));
        t.udp(2, c, s, &second);
        t.udp(3, c, s, &first);
    }
    t
}

#[test]
fn steady_state_evidence_with_reassembly_does_not_allocate() {
    let warm = trace(1000, 300);
    let rounds: Vec<Trace> = (0..3).map(|r| trace(10_000 + r * 1000, 300)).collect();
    let mut dec = Decoder::new(DecodeConfig::default());
    let mut ev = EvidenceParser::new();
    let mut names = 0u64;
    let run = |t: &Trace, dec: &mut Decoder, ev: &mut EvidenceParser, names: &mut u64| {
        for f in t.frames() {
            let _ = dec.decode(t.link(), f.ts_ns, &f.data, |p| {
                ev.extract(p, f.ts_ns, f.ts_ns, |_| *names += 1);
            });
        }
    };
    run(&warm, &mut dec, &mut ev, &mut names);
    assert_eq!(names, 600, "every warm-up ClientHello is named");
    let allocs = allocations_during(|| {
        for t in &rounds {
            run(t, &mut dec, &mut ev, &mut names);
        }
    });
    assert_eq!(allocs, 0, "evidence parsing allocated in the steady state");
    assert_eq!(names, 2400);
    let c = ev.counters();
    assert_eq!((c.sni_quic, c.hello_reassembled), (1200, 2400));
}
