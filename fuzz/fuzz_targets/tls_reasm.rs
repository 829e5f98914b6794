//! A TLS client stream cut into TCP segments delivered in any order after the first (or, after
//! a SYN, with the first last): the reassembling reader must name exactly what the whole
//! stream read at once names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nameflow::decode::{Packet, L4};
use nameflow::names::hello::HelloReader;
use nameflow::names::reasm::{MAX_SEGMENTS, STREAM_CAP};
use nameflow::decode::tls::{records_hello, Hello};

fn tcp<'a>(payload: &'a [u8], seq: u32) -> (Packet<'a>, u32) {
    (
        Packet {
            src: "198.18.0.1".parse().unwrap(),
            dst: "198.18.0.2".parse().unwrap(),
            ip_proto: 6,
            ip_len: payload.len() as u32 + 40,
            l4: L4::Tcp {
                src_port: 40000,
                dst_port: 443,
                seq,
                ack: 1,
                flags: 0x18,
                window: 512,
            },
            payload_len: payload.len() as u32,
            payload,
            checksum_ok: true,
            encap: &[],
            carries: None,
            vlan: None,
            inner_vlan: None,
            l2_src: None,
            l2_dst: None,
        },
        seq,
    )
}

fuzz_target!(|data: &[u8]| {
    // Byte 0: pieces; byte 1..9: order of the pieces after the first; byte 9: base sequence.
    if data.len() < 10 {
        return;
    }
    let n = usize::from((data[0] & 0x7f) % MAX_SEGMENTS as u8).max(1);
    let order = &data[1..9];
    let base = u32::from_le_bytes([data[9], data[9], 0xff, 0xff]);
    let stream = &data[10..];
    if stream.len() > STREAM_CAP {
        return;
    }
    let size = stream.len().div_ceil(n).max(1);
    let pieces: Vec<(usize, &[u8])> = stream
        .chunks(size)
        .enumerate()
        .map(|(i, c)| (i * size, c))
        .collect();
    let mut rest: Vec<(usize, &[u8])> = pieces.iter().skip(1).copied().collect();
    for (i, o) in order.iter().enumerate() {
        if rest.len() > 1 {
            let j = usize::from(*o) % rest.len();
            let len = rest.len();
            rest.swap(i % len, j);
        }
    }
    let mut reader = HelloReader::default();
    let mut got = Vec::new();
    // With byte 0's high bit: a SYN first, and the first piece last (overtaken by the rest).
    let overtaken = data[0] & 0x80 != 0;
    let mut sequence: Vec<(usize, &[u8])> = Vec::new();
    if overtaken {
        let (syn, _) = tcp(&[], base.wrapping_sub(1));
        reader.syn(&syn, (40000, 443), base.wrapping_sub(1));
        sequence.extend(rest.iter().copied());
        sequence.extend(pieces.iter().take(1).copied());
    } else {
        sequence.extend(pieces.iter().take(1).copied());
        sequence.extend(rest.iter().copied());
    }
    for (off, piece) in &sequence {
        let (p, seq) = tcp(piece, base.wrapping_add(*off as u32));
        reader.tcp(&p, (40000, 443), seq, 1, |name| got.push(name.to_vec()));
    }
    let mut join = vec![0u8; STREAM_CAP];
    let whole = match records_hello(stream, &mut join) {
        Hello::Sni(name) => vec![name.to_vec()],
        _ => vec![],
    };
    // A first segment too short to show a ClientHello's start starts no reassembly, unless a
    // SYN said where the stream starts and later pieces came first.
    if (overtaken && pieces.len() > 1) || pieces.first().is_some_and(|(_, p)| p.len() >= 6) {
        assert_eq!(got, whole, "pieces {n}");
    }
});
