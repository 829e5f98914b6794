//! Proves the decoder's steady state allocates nothing: after one warm-up pass over frames that
//! exercise reassembly and tunnels, a second pass over the same frames makes no allocation.
//! The counting allocator (`support/alloc_count.rs`) is this test binary's only.

use nameflow::decode::{DecodeConfig, Decoder, LinkType};

#[path = "support/alloc_count.rs"]
mod alloc_count;
use alloc_count::{allocations_during, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

fn csum(data: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for w in data.chunks(2) {
        let hi = u32::from(w[0]) << 8;
        s += hi | u32::from(*w.get(1).unwrap_or(&0));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// An IPv4 packet from 198.18.0.1 to 198.18.0.2 with the given protocol and fragment word.
fn ipv4(proto: u8, id: u16, frag: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2]);
    let c = csum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// A UDP header with no checksum (zero is allowed over IPv4).
fn udp(sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(data);
    u
}

fn eth(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    f.extend_from_slice(payload);
    f
}

#[test]
fn steady_state_decoding_does_not_allocate() {
    let mut frames: Vec<Vec<u8>> = Vec::new();
    frames.push(eth(&ipv4(17, 1, 0, &udp(1000, 53, b"plain"))));
    // VXLAN carrying an inner UDP packet.
    let mut vx = vec![0x08, 0, 0, 0, 0, 0, 1, 0];
    vx.extend_from_slice(&eth(&ipv4(17, 2, 0, &udp(7, 9, b"inner"))));
    frames.push(eth(&ipv4(17, 3, 0, &udp(5555, 4789, &vx))));
    // A datagram in three fragments, offered out of order.
    let dgram = udp(1, 2, &[7u8; 2000]);
    let parts: Vec<(usize, usize)> = vec![(1600, dgram.len()), (0, 800), (800, 1600)];
    for (a, b) in parts {
        let more = if b < dgram.len() { 0x2000 } else { 0 };
        frames.push(eth(&ipv4(17, 4, more | (a / 8) as u16, &dgram[a..b])));
    }

    let mut dec = Decoder::new(DecodeConfig::default());
    let mut visited = 0u64;
    for f in &frames {
        let _ = dec.decode(LinkType::ETHERNET, 0, f, |_| visited += 1);
    }
    assert_eq!(
        visited, 4,
        "warm-up should see plain, outer, inner and the reassembled packet"
    );

    let allocs = allocations_during(|| {
        for round in 0..100u64 {
            for f in &frames {
                let _ = dec.decode(LinkType::ETHERNET, round, f, |p| {
                    visited += u64::from(p.payload_len > 0);
                });
            }
        }
    });
    assert_eq!(allocs, 0, "decoding allocated in the steady state");
    assert_eq!(dec.counters().reassembled, 101);
}
