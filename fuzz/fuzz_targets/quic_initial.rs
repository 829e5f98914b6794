//! QUIC Initials: the long-header view, key derivation and decryption of any datagram, the
//! frames of any plaintext (IETF and Google numbering), Google's plaintext CHLO, and the
//! whole evidence path (CRYPTO frames reassembled over two Initials into a ClientHello),
//! reached past authentication by sealing the input as the payload of real Initials.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nameflow::decode::quic::{
    chlo_tag, gquic_plain_chlo, Frame, Frames, InitialKeys, InitialPacket, Version,
};
use nameflow::decode::{Packet, L4};
use nameflow::names::hello::HelloReader;
use nameflow::decode::tls::handshake_hello;

const DCID: [u8; 8] = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];

fn udp<'a>(payload: &'a [u8]) -> Packet<'a> {
    Packet {
        src: "198.18.0.1".parse().unwrap(),
        dst: "198.18.0.2".parse().unwrap(),
        ip_proto: 17,
        ip_len: payload.len() as u32 + 28,
        l4: L4::Udp {
            src_port: 50000,
            dst_port: 443,
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
    }
}

fuzz_target!(|data: &[u8]| {
    let mut scratch = vec![0u8; 65_536];
    if let Ok(pkt) = InitialPacket::new_checked(data) {
        assert!(pkt.len() <= data.len());
        if let Some(keys) = InitialKeys::client(pkt.version(), pkt.dcid()) {
            if let Ok((plain, _)) = keys.open(&pkt, &mut scratch) {
                Frames::new(plain, pkt.version()).for_each(drop);
            }
        }
    }
    for v in [Version::V1, Version::Q050] {
        for f in Frames::new(data, v) {
            if let Ok(Frame::Crypto { data: d, .. }) = f {
                let _ = handshake_hello(d);
                let _ = chlo_tag(d, b"SNI\0");
            }
        }
    }
    if let Some((_, chlo)) = gquic_plain_chlo(data) {
        if let Some(sni) = chlo_tag(chlo, b"SNI\0") {
            let start = sni.as_ptr() as usize - data.as_ptr() as usize;
            assert!(start + sni.len() <= data.len());
        }
    }
    // The input as the frames of two client Initials (split at the first byte's share).
    let mut reader = HelloReader::default();
    let cut = data
        .first()
        .map_or(0, |&b| usize::from(b) * data.len() / 256);
    let (a, b) = data.split_at(cut);
    for (pn, v, part) in [
        (1, Version::V1, b),
        (0, Version::V2, a),
        (2, Version::V1, a),
    ] {
        let keys = InitialKeys::client(v, &DCID).unwrap();
        let mut payload = part.to_vec();
        payload.resize(payload.len().max(1200), 0);
        let dgram = keys.seal(v, &DCID, pn, &payload);
        reader.udp(&udp(&dgram), (50000, 443), 1, |name| {
            assert!(!name.is_empty() && name.len() <= data.len());
        });
    }
});
