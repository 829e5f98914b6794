//! Flow keys: the canonical, direction-independent 5-tuple and its symmetric hash.
//!
//! Both directions of a connection produce the same [`FlowKey`], so the owner worker chosen
//! from [`FlowKey::sym_hash`] is the same for every packet of the connection. For ICMP the
//! "ports" are Zeek's: the message type and its counterpart type (echo request 8 pairs with
//! echo reply 0), or the code for one-way messages.
//!
//! With Zeek 8's VLAN-aware key (`--conn-key vlan`, Zeek's
//! `frameworks/conn_key/vlan_fivetuple`) the key also holds the frame's outer and inner
//! 802.1Q ids ([`Vlans`]), so one 5-tuple on two VLANs is two connections. The ids belong to
//! the connection, not to a direction, so both directions still meet on one key. With the
//! default key the ids are always [`Vlans::NONE`], and keys, hashes and uids are exactly what
//! they were before the VLAN key existed.

use crate::decode::{Packet, L4};
use crate::flow::summary::PacketSummary;
pub use crate::types::key::Vlans;
use std::hash::Hash;
use std::net::IpAddr;

/// A direction-independent connection key. `lo`/`hi` are the two endpoints sorted, so the key
/// says nothing about who originated; the flow table keeps that.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct FlowKey {
    pub ip_proto: u8,
    pub lo_addr: IpAddr,
    pub lo_port: u16,
    pub hi_addr: IpAddr,
    pub hi_port: u16,
    /// The VLAN ids under `--conn-key vlan`; always [`Vlans::NONE`] with the default key.
    pub vlans: Vlans,
}

/// The endpoints of one packet in its own direction (source first).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Endpoints {
    pub ip_proto: u8,
    pub src: IpAddr,
    pub src_port: u16,
    pub dst: IpAddr,
    pub dst_port: u16,
    /// The VLAN ids that go into the key: the frame's under `--conn-key vlan`, else none.
    /// They are the same in both directions, so they do not take part in the ordering.
    pub vlans: Vlans,
}

impl Endpoints {
    /// The endpoints of a decoded packet, with Zeek's ICMP type/counterpart convention. The
    /// VLAN ids are left out; the dispatcher adds them with [`Endpoints::with_vlans`] when
    /// the key includes them.
    pub fn of_packet(p: &Packet<'_>) -> Endpoints {
        Endpoints::of_parts(p.ip_proto, p.src, p.dst, p.l4)
    }

    /// The endpoints of a packet summary (same rule as [`Endpoints::of_packet`]), with the
    /// VLAN ids the summary carries (none unless the key includes them).
    pub fn of_summary(p: &PacketSummary) -> Endpoints {
        Endpoints::of_parts(p.ip_proto, p.src, p.dst, p.l4).with_vlans(p.vlans)
    }

    /// The same endpoints keyed with `vlans`.
    pub fn with_vlans(self, vlans: Vlans) -> Endpoints {
        Endpoints { vlans, ..self }
    }

    /// The endpoints from the raw parts (no VLAN ids).
    pub fn of_parts(ip_proto: u8, src: IpAddr, dst: IpAddr, l4: L4) -> Endpoints {
        let (src_port, dst_port) = match l4 {
            L4::Tcp {
                src_port, dst_port, ..
            }
            | L4::Udp { src_port, dst_port } => (src_port, dst_port),
            L4::Icmp {
                v6,
                icmp_type,
                code,
            } => {
                let (counter, _one_way) = icmp_counterpart(v6, icmp_type, code);
                (u16::from(icmp_type), counter)
            }
            L4::Other => (0, 0),
        };
        Endpoints {
            ip_proto,
            src,
            src_port,
            dst,
            dst_port,
            vlans: Vlans::NONE,
        }
    }

    /// The canonical key, and whether this packet goes from `hi` to `lo`.
    pub fn key(&self) -> (FlowKey, bool) {
        let a = (self.src, self.src_port);
        let b = (self.dst, self.dst_port);
        if a <= b {
            (
                FlowKey {
                    ip_proto: self.ip_proto,
                    lo_addr: a.0,
                    lo_port: a.1,
                    hi_addr: b.0,
                    hi_port: b.1,
                    vlans: self.vlans,
                },
                false,
            )
        } else {
            (
                FlowKey {
                    ip_proto: self.ip_proto,
                    lo_addr: b.0,
                    lo_port: b.1,
                    hi_addr: a.0,
                    hi_port: a.1,
                    vlans: self.vlans,
                },
                true,
            )
        }
    }
}

impl FlowKey {
    /// A hash that is the same for both directions (the key is canonical) and stable across
    /// runs and processes, so live and offline runs pick the same owner.
    pub fn sym_hash(&self) -> u64 {
        // Five 64-bit words (each address as two, the protocol and both ports as one), each
        // folded in with one multiply: a fraction of the cost of hashing 40 bytes one at a
        // time, and it runs once per packet with more than one worker.
        fn words(a: &IpAddr) -> (u64, u64) {
            match a {
                // A marker word keeps an IPv4 address apart from the IPv6 one with the same
                // low bits.
                IpAddr::V4(v) => (1 << 63, u64::from(u32::from(*v))),
                IpAddr::V6(v) => {
                    let b = v.to_bits();
                    ((b >> 64) as u64, b as u64)
                }
            }
        }
        let (a0, a1) = words(&self.lo_addr);
        let (b0, b1) = words(&self.hi_addr);
        let ports = (u64::from(self.ip_proto) << 32)
            | (u64::from(self.lo_port) << 16)
            | u64::from(self.hi_port);
        let mut x = 0xcbf2_9ce4_8422_2325u64;
        for w in [a0, a1, b0, b1, ports] {
            x = (x ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(31);
        }
        // VLAN ids are folded in only when present, so untagged keys (every key with the
        // default key) hash, own and name their connections exactly as without them. Each id
        // takes 17 bits: a presence bit above the 16-bit value keeps "no tag" apart from any
        // id, and "outer only" apart from "inner only".
        if !self.vlans.is_none() {
            let id = |v: Option<u16>| v.map_or(0, |v| (1u64 << 16) | u64::from(v));
            let w = (1 << 62) | (id(self.vlans.outer) << 17) | id(self.vlans.inner);
            x = (x ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(31);
        }
        // A final avalanche so that `% n_workers` uses well-mixed low bits.
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^ (x >> 33)
    }

    /// The worker that owns this key among `n` workers.
    pub fn owner(&self, n: usize) -> usize {
        if n <= 1 {
            0
        } else {
            (self.sym_hash() % n as u64) as usize
        }
    }
}

/// Zeek's ICMP counterpart rule: request/reply types pair up so that both directions land in
/// one connection; for one-way messages the second "port" is the code. Returns the value Zeek
/// puts in the responder port and whether the message is one-way.
pub fn icmp_counterpart(v6: bool, icmp_type: u8, code: u8) -> (u16, bool) {
    let pair = if v6 {
        match icmp_type {
            128 => Some(129), // echo request / reply
            129 => Some(128),
            130 => Some(131), // multicast listener query / report
            131 => Some(130),
            133 => Some(134), // router solicitation / advertisement
            134 => Some(133),
            135 => Some(136), // neighbor solicitation / advertisement
            136 => Some(135),
            139 => Some(140), // node information query / response
            140 => Some(139),
            144 => Some(145), // home agent address discovery
            145 => Some(144),
            _ => None,
        }
    } else {
        match icmp_type {
            8 => Some(0), // echo request / reply
            0 => Some(8),
            9 => Some(10), // router advertisement / solicitation
            10 => Some(9),
            13 => Some(14), // timestamp request / reply
            14 => Some(13),
            15 => Some(16), // information request / reply
            16 => Some(15),
            17 => Some(18), // address mask request / reply
            18 => Some(17),
            _ => None,
        }
    };
    match pair {
        Some(t) => (t, false),
        None => (u16::from(code), true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(src: &str, sp: u16, dst: &str, dp: u16) -> Endpoints {
        Endpoints {
            ip_proto: 6,
            src: src.parse().unwrap(),
            src_port: sp,
            dst: dst.parse().unwrap(),
            dst_port: dp,
            vlans: Vlans::NONE,
        }
    }

    fn tagged(outer: Option<u16>, inner: Option<u16>) -> Vlans {
        Vlans::new(outer, inner)
    }

    #[test]
    fn one_five_tuple_on_two_vlans_is_two_keys_and_each_is_one_for_both_directions() {
        let fwd = ep("198.18.0.1", 40000, "198.18.0.2", 80);
        let rev = ep("198.18.0.2", 80, "198.18.0.1", 40000);
        let keys: Vec<FlowKey> = [
            Vlans::NONE,
            tagged(Some(10), Some(20)),
            tagged(Some(42), None),
            tagged(None, Some(42)),
        ]
        .iter()
        .map(|&v| {
            let (kf, ff) = fwd.with_vlans(v).key();
            let (kr, fr) = rev.with_vlans(v).key();
            assert_eq!(kf, kr, "{v:?}: both directions must give one key");
            assert_ne!(ff, fr);
            assert_eq!(kf.sym_hash(), kr.sym_hash());
            kf
        })
        .collect();
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b, "different VLANs must give different keys");
                assert_ne!(a.sym_hash(), b.sym_hash());
            }
        }
    }

    #[test]
    fn untagged_keys_hash_as_before_and_id_zero_is_no_tag() {
        let (k, _) = ep("198.18.0.1", 40000, "198.18.0.2", 80).key();
        // The value the hash had before VLAN ids existed: default-key uids and owners must not
        // move.
        assert_eq!(k.sym_hash(), 0xddda_39a0_8854_13e8, "{:#x}", k.sym_hash());
        assert_eq!(tagged(Some(0), Some(0)), Vlans::NONE);
        assert_eq!(tagged(Some(0), Some(7)), tagged(None, Some(7)));
    }

    #[test]
    fn both_directions_give_one_key_and_one_owner() {
        let a = ep("198.18.0.1", 40000, "198.18.0.2", 80);
        let b = ep("198.18.0.2", 80, "198.18.0.1", 40000);
        let (ka, fa) = a.key();
        let (kb, fb) = b.key();
        assert_eq!(ka, kb);
        assert_ne!(fa, fb);
        assert_eq!(ka.sym_hash(), kb.sym_hash());
        for n in 1..8 {
            assert_eq!(ka.owner(n), kb.owner(n));
        }
    }

    #[test]
    fn icmp_echo_pairs_and_unreachable_uses_code() {
        assert_eq!(icmp_counterpart(false, 8, 0), (0, false));
        assert_eq!(icmp_counterpart(false, 3, 3), (3, true));
        assert_eq!(icmp_counterpart(true, 128, 0), (129, false));
        assert_eq!(icmp_counterpart(true, 143, 0), (0, true));
    }
}
