//! Connection uids: a deterministic hash of the sensor seed, the flow key and the start time.
//!
//! Zeek draws uids from a seeded random generator, so its values cannot be reproduced; what
//! matters is that ours are stable across runs (offline and live runs of the same traffic give
//! the same uids) and that the engine can name a tunnel's outer connection before the outer
//! record exists, which a pure function of (seed, key, start) allows.

use super::key::FlowKey;
use crate::types::record::Uid;

/// SplitMix64 finaliser: cheap, and every input bit affects every output bit.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The uid of the connection with key `key` that started at `start_ts_ns`.
pub fn conn_uid(seed: u64, key: &FlowKey, start_ts_ns: u64) -> Uid {
    let a = mix(seed ^ key.sym_hash());
    let hi = mix(a ^ start_ts_ns);
    let lo = mix(hi ^ 0x5bd1_e995_u64.wrapping_mul(start_ts_ns | 1));
    // Zeek's uids carry 96 bits; so do ours.
    Uid::from_bits(hi, (lo >> 32) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::key::Vlans;

    fn key(port: u16) -> FlowKey {
        FlowKey {
            ip_proto: 6,
            lo_addr: "198.18.0.1".parse().unwrap(),
            lo_port: port,
            hi_addr: "198.18.0.2".parse().unwrap(),
            hi_port: 80,
            vlans: Vlans::NONE,
        }
    }

    #[test]
    fn uid_is_deterministic_and_depends_on_every_input() {
        let a = conn_uid(1, &key(1000), 5);
        assert_eq!(
            a,
            conn_uid(1, &key(1000), 5),
            "same inputs must give the same uid"
        );
        assert_ne!(a, conn_uid(2, &key(1000), 5), "seed must matter");
        assert_ne!(a, conn_uid(1, &key(1001), 5), "key must matter");
        assert_ne!(a, conn_uid(1, &key(1000), 6), "start time must matter");
        let tagged = FlowKey {
            vlans: Vlans::new(Some(10), None),
            ..key(1000)
        };
        assert_ne!(
            a,
            conn_uid(1, &tagged, 5),
            "VLAN ids in the key must matter"
        );
        assert!(a.text().as_str().starts_with('C'));
    }
}
