//! ClientHellos that one packet does not hold: TLS over TCP across segments, and QUIC
//! Initials (IETF v1/v2/drafts, Google QUIC), whose CRYPTO frames may be spread over several
//! Initials and arrive in any order.
//!
//! A dispatcher-local [`HelloReader`] keeps the state: the bounded [`StreamTable`], one
//! scratch buffer for decrypting a datagram and one for joining TLS records, each allocated
//! on first use and reused. A ClientHello that fits its packet never touches the table.

use super::reasm::{Added, ReasmCounters, StreamKey, StreamTable, MAX_SEGMENTS, STREAM_CAP};
use crate::decode::quic::{self, Frame, Frames, InitialKeys, InitialPacket, Version};
use crate::decode::tls::{self, Hello};
use crate::decode::Packet;
use hashbrown::HashMap;

/// Client Initials of one connection whose CRYPTO frames are reassembled.
const MAX_INITIALS: u16 = 4;
/// Coalesced packets looked at in one datagram.
const MAX_COALESCED: usize = 4;
/// Clients pad datagrams carrying Initials to at least this (RFC 9000 §14.1; Google QUIC
/// CHLOs are padded alike), which rules out most other UDP at once.
const MIN_INITIAL_DATAGRAM: usize = 1200;
/// The largest UDP payload: the decryption scratch buffer holds any datagram.
const MAX_DATAGRAM: usize = 65_536;
/// Client SYNs remembered at once (where each connection's data starts), so a segment that
/// overtakes the ClientHello's first segment can still be placed; beyond it the memory is
/// cleared (counted).
const MAX_SYNS: usize = 4096;

/// What the reader counted.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct HelloCounters {
    /// Host names read from QUIC (IETF and Google).
    pub sni_quic: u64,
    /// Client Initial packets decrypted.
    pub quic_initials: u64,
    /// Initial packets that did not open with the client's keys (server Initials, damage).
    pub quic_undecryptable: u64,
    /// ClientHellos reassembled from several packets and read to their end (with a name or
    /// without one).
    pub reassembled: u64,
    /// Remembered SYNs forgotten unused because the SYN memory was full.
    pub syns_forgotten: u64,
}

/// Reads ClientHellos across packets for one dispatcher.
#[derive(Default)]
pub struct HelloReader {
    streams: StreamTable,
    /// Decryption scratch ([`MAX_DATAGRAM`] bytes once used).
    scratch: Vec<u8>,
    /// Joined TLS record fragments ([`STREAM_CAP`] bytes once used).
    join: Vec<u8>,
    /// Client 4-tuple → sequence number of its first data byte, from SYNs not yet followed by
    /// data.
    syns: HashMap<StreamKey, u32>,
    counters: HelloCounters,
}

/// The stream key of a client's TCP segment.
fn tcp_key(p: &Packet<'_>, ports: (u16, u16)) -> StreamKey {
    StreamKey {
        client: p.src,
        client_port: ports.0,
        server: p.dst,
        server_port: ports.1,
        ip_proto: 6,
    }
}

/// A name found, or what to do with the stream.
// The name is held inline on purpose: boxing it would allocate per ClientHello.
#[allow(clippy::large_enum_variant)]
enum Outcome {
    Name([u8; 255], usize),
    /// A whole ClientHello without a name.
    NoName,
    Finished,
    Wait,
}

fn outcome(h: Hello<'_>) -> Outcome {
    match h {
        Hello::Sni(n) => {
            let mut b = [0u8; 255];
            let k = n.len().min(b.len());
            b[..k].copy_from_slice(&n[..k]);
            Outcome::Name(b, k)
        }
        Hello::NoSni => Outcome::NoName,
        Hello::NotHello => Outcome::Finished,
        Hello::Incomplete => Outcome::Wait,
    }
}

impl HelloReader {
    pub fn counters(&self) -> HelloCounters {
        self.counters
    }

    pub fn reasm_counters(&self) -> ReasmCounters {
        self.streams.counters()
    }

    /// A client's SYN (no ACK) from `p.src` to `p.dst` with sequence number `seq`: remembers
    /// where the connection's data starts.
    pub fn syn(&mut self, p: &Packet<'_>, ports: (u16, u16), seq: u32) {
        if self.syns.capacity() == 0 {
            self.syns.reserve(MAX_SYNS);
        }
        if self.syns.len() >= MAX_SYNS {
            self.counters.syns_forgotten += self.syns.len() as u64;
            self.syns.clear();
        }
        self.syns.insert(tcp_key(p, ports), seq.wrapping_add(1));
    }

    /// A TCP segment from `p.src` to `p.dst`: calls `found` with the host name of a
    /// ClientHello that this segment completes (alone or with earlier ones). Returns false when
    /// the segment is no part of a ClientHello (so other parsers may read it).
    pub fn tcp(
        &mut self,
        p: &Packet<'_>,
        ports: (u16, u16),
        seq: u32,
        ts_ns: u64,
        mut found: impl FnMut(&[u8]),
    ) -> bool {
        let key = tcp_key(p, ports);
        let payload = p.payload;
        if !self.syns.is_empty() && self.streams.find(&key).is_none() {
            if let Some(&first) = self.syns.get(&key) {
                self.syns.remove(&key);
                let off = seq.wrapping_sub(first);
                if off != 0 && (off as usize) < STREAM_CAP {
                    // This segment overtook the connection's first data: keep it, in case the
                    // first turns out to start a ClientHello (it is read when that comes).
                    let slot = self.streams.start(key, first, ts_ns);
                    let _ = self
                        .streams
                        .add(slot, seq, payload, ts_ns, true, MAX_SEGMENTS);
                    return false;
                }
            }
        }
        let slot = match self.streams.find(&key) {
            Some(i) => i,
            None => {
                match tls::records_hello(payload, &mut []) {
                    Hello::Sni(name) => {
                        found(name);
                        return true;
                    }
                    Hello::NoSni => return true,
                    Hello::NotHello => return false,
                    Hello::Incomplete => {
                        // Only a segment that starts a ClientHello (record header, then
                        // handshake type 1) starts a stream.
                        if payload.len() < 6 || payload[0] != 22 || payload[5] != 1 {
                            return false;
                        }
                        self.streams.start(key, seq, ts_ns)
                    }
                }
            }
        };
        if self.join.is_empty() {
            self.join = vec![0; STREAM_CAP];
        }
        let got = match self
            .streams
            .add(slot, seq, payload, ts_ns, true, MAX_SEGMENTS)
        {
            Added::Ignored => return true,
            Added::Prefix(prefix) => outcome(tls::records_hello(prefix, &mut self.join)),
        };
        // A stream kept for a segment that overtook the first, whose first is no ClientHello:
        // the segment is for other parsers (an HTTP request's Host).
        let hello = !matches!(got, Outcome::Finished);
        self.settle(slot, got, false, &mut found);
        hello
    }

    /// Acts on what a stream's prefix showed.
    fn settle(&mut self, slot: usize, got: Outcome, quic: bool, found: &mut impl FnMut(&[u8])) {
        match got {
            Outcome::Name(b, n) => {
                self.counters.reassembled += 1;
                if quic {
                    self.counters.sni_quic += 1;
                }
                self.streams.finish(slot);
                found(&b[..n]);
            }
            Outcome::NoName => {
                self.counters.reassembled += 1;
                self.streams.finish(slot);
            }
            Outcome::Finished => self.streams.finish(slot),
            Outcome::Wait => {
                if self.streams.is_full(slot) {
                    self.streams.abandon(slot);
                }
            }
        }
    }

    /// A UDP datagram from `p.src` to `p.dst`: calls `found` with the host name of the QUIC
    /// ClientHello (or Google CHLO) it completes. Returns false when it is not QUIC.
    pub fn udp(
        &mut self,
        p: &Packet<'_>,
        ports: (u16, u16),
        ts_ns: u64,
        mut found: impl FnMut(&[u8]),
    ) -> bool {
        let b = p.payload;
        if b.len() < MIN_INITIAL_DATAGRAM || b[0] & 0x80 == 0 && b[0] & 0x09 != 0x09 {
            return false;
        }
        if let Some((_, chlo)) = quic::gquic_plain_chlo(b) {
            if let Some(name) = quic::chlo_tag(chlo, b"SNI\0") {
                self.counters.sni_quic += 1;
                found(name);
            }
            return true;
        }
        let key = StreamKey {
            client: p.src,
            client_port: ports.0,
            server: p.dst,
            server_port: ports.1,
            ip_proto: 17,
        };
        let mut rest = b;
        let mut any = false;
        for _ in 0..MAX_COALESCED {
            let Ok(pkt) = InitialPacket::new_checked(rest) else {
                break;
            };
            any = true;
            rest = &rest[pkt.len()..];
            let Some(keys) = InitialKeys::client(pkt.version(), pkt.dcid()) else {
                break;
            };
            if self.scratch.is_empty() {
                self.scratch = vec![0; MAX_DATAGRAM];
            }
            let mut scratch = std::mem::take(&mut self.scratch);
            match keys.open(&pkt, &mut scratch) {
                Ok((plain, _pn)) => {
                    self.counters.quic_initials += 1;
                    self.initial_frames(key, pkt.version(), plain, ts_ns, &mut found);
                }
                Err(_) => self.counters.quic_undecryptable += 1,
            }
            self.scratch = scratch;
        }
        any
    }

    /// The CRYPTO frames of one decrypted client Initial.
    fn initial_frames(
        &mut self,
        key: StreamKey,
        version: Version,
        plain: &[u8],
        ts_ns: u64,
        found: &mut impl FnMut(&[u8]),
    ) {
        let crypto = || {
            Frames::new(plain, version)
                .map_while(Result::ok)
                .filter_map(|f| match f {
                    Frame::Crypto { offset, data } => Some((offset, data)),
                    _ => None,
                })
        };
        let mut frames = crypto();
        let Some((off0, data0)) = frames.next() else {
            return;
        };
        let single = frames.next().is_none();
        let known = self.streams.find(&key);
        if !version.carries_tls() {
            // Q050: a CHLO in one frame (Google QUIC pads it into the first packet).
            if off0 == 0 {
                if let Some(name) = quic::chlo_tag(data0, b"SNI\0") {
                    self.counters.sni_quic += 1;
                    found(name);
                }
            }
            return;
        }
        // Fast path: the whole ClientHello in one frame at offset 0.
        if single && off0 == 0 && known.is_none() {
            match tls::handshake_hello(data0) {
                Hello::Sni(name) => {
                    self.counters.sni_quic += 1;
                    found(name);
                    return;
                }
                Hello::NoSni | Hello::NotHello => return,
                Hello::Incomplete => {}
            }
        }
        let slot = known.unwrap_or_else(|| self.streams.start(key, 0, ts_ns));
        let mut first = true;
        let mut prefix_len = None;
        for (offset, data) in crypto() {
            let Ok(pos) = u32::try_from(offset) else {
                continue;
            };
            if pos as usize >= STREAM_CAP {
                continue;
            }
            match self
                .streams
                .add(slot, pos, data, ts_ns, first, MAX_INITIALS)
            {
                Added::Ignored => return,
                Added::Prefix(p) => prefix_len = Some(p.len()),
            }
            first = false;
        }
        if prefix_len.is_none() {
            return;
        }
        let got = match self.streams.add(slot, 0, &[], ts_ns, false, MAX_INITIALS) {
            Added::Ignored => return,
            Added::Prefix(prefix) => outcome(tls::handshake_hello(prefix)),
        };
        self.settle(slot, got, true, found);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{DecodeConfig, Decoder};
    use crate::synth::Trace;
    use std::net::SocketAddr;

    /// Every name `HelloReader` finds in `t`, in order.
    fn names_of(t: &Trace) -> (Vec<String>, HelloReader) {
        let mut d = Decoder::new(DecodeConfig::default());
        let mut r = HelloReader::default();
        let mut v = Vec::new();
        for f in t.frames() {
            let _ = d.decode(t.link(), f.ts_ns, &f.data, |pkt| {
                let push = |n: &[u8]| v.push(String::from_utf8_lossy(n).into_owned());
                match pkt.l4 {
                    crate::decode::L4::Tcp {
                        src_port,
                        dst_port,
                        seq,
                        flags,
                        ..
                    } => {
                        if flags & 0x12 == 0x02 {
                            r.syn(pkt, (src_port, dst_port), seq);
                        } else if !pkt.payload.is_empty() {
                            r.tcp(pkt, (src_port, dst_port), seq, f.ts_ns, push);
                        }
                    }
                    crate::decode::L4::Udp { src_port, dst_port } => {
                        r.udp(pkt, (src_port, dst_port), f.ts_ns, push);
                    }
                    _ => {}
                }
            });
        }
        (v, r)
    }

    /// A ClientHello with `pad` bytes of padding extension before its server name.
    fn big_hello(name: &str, pad: usize) -> Vec<u8> {
        let mut ch = tls::tests::client_hello(name);
        // Insert a padding extension (type 21) at the start of the extensions.
        let ext_start = 5 + 4 + 2 + 32 + 1 + 4 + 2;
        let mut ext = vec![0, 21];
        ext.extend_from_slice(&(pad as u16).to_be_bytes());
        ext.resize(4 + pad, 0);
        ch.splice(ext_start + 2..ext_start + 2, ext);
        let fix = |ch: &mut Vec<u8>, at: usize, width: usize, add: usize| {
            let mut v = 0usize;
            for i in 0..width {
                v = (v << 8) | usize::from(ch[at + i]);
            }
            v += add;
            for i in 0..width {
                ch[at + i] = (v >> (8 * (width - 1 - i))) as u8;
            }
        };
        let add = 4 + pad;
        fix(&mut ch, ext_start, 2, add); // extensions length
        fix(&mut ch, 6, 3, add); // handshake length
        fix(&mut ch, 3, 2, add); // record length
        ch
    }

    #[test]
    fn a_client_hello_over_segments_in_any_order_after_the_first() {
        let ch = big_hello("split.example", 3000);
        assert_eq!(tls::client_hello_sni(&ch), Some(&b"split.example"[..]));
        let c: SocketAddr = "198.18.0.1:40000".parse().unwrap();
        let s: SocketAddr = "198.18.3.3:443".parse().unwrap();
        let mut t = Trace::new();
        let parts = [(0, 1000), (2000, ch.len()), (1000, 2000)];
        for (k, (a, b)) in parts.iter().enumerate() {
            t.tcp_segment(
                1_000_000_000 + k as u64,
                c,
                s,
                0x18,
                1000 + *a as u32,
                1,
                &ch[*a..*b],
            );
        }
        let (names, r) = names_of(&t);
        assert_eq!(names, ["split.example"]);
        assert_eq!(r.counters().reassembled, 1);
        assert_eq!(r.reasm_counters().started, 1);
    }

    #[test]
    fn a_segment_that_overtakes_the_first_is_kept_after_a_syn() {
        let ch = big_hello("late.example", 2000);
        let c: SocketAddr = "198.18.0.1:40001".parse().unwrap();
        let s: SocketAddr = "198.18.3.3:443".parse().unwrap();
        let mut t = Trace::new();
        t.tcp_segment(1, c, s, 0x02, 999, 0, b"");
        t.tcp_segment(2, c, s, 0x18, 1000 + 1200, 1, &ch[1200..]);
        t.tcp_segment(3, c, s, 0x18, 1000, 1, &ch[..1200]);
        // Without the SYN the overtaking segment cannot be placed.
        let c2: SocketAddr = "198.18.0.1:40002".parse().unwrap();
        t.tcp_segment(4, c2, s, 0x18, 5000 + 1200, 1, &ch[1200..]);
        t.tcp_segment(5, c2, s, 0x18, 5000, 1, &ch[..1200]);
        // A plain HTTP connection after a SYN still reaches the other parsers.
        let c3: SocketAddr = "198.18.0.1:40003".parse().unwrap();
        t.tcp_segment(6, c3, s, 0x02, 99, 0, b"");
        t.tcp_segment(7, c3, s, 0x18, 110, 1, b"more");
        let (names, r) = names_of(&t);
        assert_eq!(names, ["late.example"]);
        assert_eq!(r.counters().reassembled, 1);
        let mut r = r;
        let http = b"GET / HTTP/1.1\r\nHost:";
        let mut d = Decoder::new(DecodeConfig::default());
        let mut t2 = Trace::new();
        t2.tcp_segment(8, c3, s, 0x18, 100, 1, http);
        for f in t2.frames() {
            let _ = d.decode(t2.link(), f.ts_ns, &f.data, |pkt| {
                assert!(!r.tcp(pkt, (40003, 443), 100, 8, |_| panic!("no name")));
            });
        }
    }

    fn quic_datagram(v: Version, dcid: &[u8], pn: u32, frames: &[u8]) -> Vec<u8> {
        let keys = InitialKeys::client(v, dcid).unwrap();
        let mut payload = frames.to_vec();
        payload.resize(1200, 0);
        keys.seal(v, dcid, pn, &payload)
    }

    fn crypto(offset: usize, data: &[u8]) -> Vec<u8> {
        let mut f = vec![0x06];
        f.extend_from_slice(&(0x4000u16 | offset as u16).to_be_bytes());
        f.extend_from_slice(&(0x4000u16 | data.len() as u16).to_be_bytes());
        f.extend_from_slice(data);
        f
    }

    #[test]
    fn quic_initials_one_and_several_out_of_order() {
        let c: SocketAddr = "198.18.0.1:50000".parse().unwrap();
        let s: SocketAddr = "198.18.3.3:443".parse().unwrap();
        let dcid = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let mut t = Trace::new();
        // One Initial, whole ClientHello (no record header in QUIC).
        let ch = tls::tests::client_hello("one.example");
        t.udp(
            1,
            c,
            s,
            &quic_datagram(Version::V1, &dcid, 0, &crypto(0, &ch[5..])),
        );
        // v2, ClientHello over two Initials sent second half first, and within the first
        // Initial two frames out of order.
        let ch = big_hello("two.example", 1500);
        let hs = &ch[5..];
        let c2: SocketAddr = "198.18.0.1:50001".parse().unwrap();
        t.udp(
            2,
            c2,
            s,
            &quic_datagram(Version::V2, &dcid, 1, &crypto(900, &hs[900..])),
        );
        let mut f = crypto(400, &hs[400..900]);
        f.extend_from_slice(&crypto(0, &hs[..400]));
        t.udp(3, c2, s, &quic_datagram(Version::V2, &dcid, 0, &f));
        // The server's Initial does not open with the client's keys.
        let mut srv = quic_datagram(Version::V1, &dcid, 0, &crypto(0, b"server"));
        srv[30] ^= 1;
        t.udp(4, s, c, &srv);
        let (names, r) = names_of(&t);
        assert_eq!(names, ["one.example", "two.example"]);
        let k = r.counters();
        assert_eq!(
            (k.sni_quic, k.quic_initials, k.quic_undecryptable),
            (2, 3, 1)
        );
        assert_eq!(k.reassembled, 1);
    }
}
