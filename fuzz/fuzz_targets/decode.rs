//! The frame decoder over every link type it supports, with tunnels and fragment reassembly,
//! and the name-evidence parser over every packet it yields (DNS by port and by content, TLS
//! SNI, HTTP Host, DHCP).
//!
//! Input: byte 0 picks the link type (modulo the supported list) and bit 7 turns checksum
//! validation off; the rest is a sequence of frames, each prefixed by a 16-bit little-endian
//! length, decoded by one `Decoder` so that fragments of one datagram can meet across frames.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nameflow::decode::{DecodeConfig, Decoder, LinkType};
use nameflow::names::EvidenceParser;

/// Every link type `LinkType::is_supported` accepts, plus one it does not.
const LINKS: [u32; 16] = [
    0, 1, 9, 10, 12, 14, 50, 101, 105, 108, 113, 127, 228, 229, 276, 147,
];

fuzz_target!(|data: &[u8]| {
    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    let link = LinkType(LINKS[usize::from(first & 0x7f) % LINKS.len()]);
    // Small reassembly bounds so the fuzzer reaches the eviction paths quickly.
    let mut decoder = Decoder::new(DecodeConfig {
        verify_checksums: first & 0x80 == 0,
        max_frag_datagrams: 4,
        max_frag_bytes: 1 << 16,
        frag_timeout_ns: 1_000_000_000,
        max_tunnel_depth: 2,
        vlan_key: false,
    });
    let mut evidence = EvidenceParser::new();
    let mut ts_ns = 1_000_000_000u64;
    let mut frames = 0;
    while !rest.is_empty() && frames < 64 {
        let (frame, next) = if rest.len() >= 2 {
            let n = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
            let body = &rest[2..];
            body.split_at(n.min(body.len()))
        } else {
            (rest, &rest[rest.len()..])
        };
        let _ = decoder.decode(link, ts_ns, frame, |p| {
            std::hint::black_box((p.src, p.dst, p.l4, p.payload.len()));
            evidence.extract(p, ts_ns, ts_ns, |e| {
                std::hint::black_box(e);
            });
        });
        ts_ns += 100_000_000;
        frames += 1;
        rest = next;
    }
    std::hint::black_box(decoder.counters());
});
