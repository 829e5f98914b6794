//! Community ID v1: a flow hash that other tools (Zeek, Suricata, Elastic) compute identically,
//! so one connection can be found across their logs.
//!
//! INTERFACE CONTRACT: `community_id(seed: u16, ip_proto: u8, orig: IpAddr, orig_port: u16,
//! resp: IpAddr, resp_port: u16, icmp: Option<(bool /*v6*/, u8 /*type*/, u8 /*code*/)>)
//! -> CommunityId`, where for ICMP the ports are ignored and the type/code rules of the spec
//! apply.
//!
//! The hashed input is, in network byte order: the seed (2 bytes), the smaller endpoint's
//! address, the larger endpoint's address, the IP protocol (1 byte), one zero byte of padding,
//! and for port-carrying protocols the two ports in the same endpoint order. The digest is
//! SHA-1, written as `1:` followed by its standard base64 (always 30 characters).
//!
//! Endpoints are ordered by address first, then port, so both directions hash the same. ICMP has
//! no ports: the message type stands in for the source port and, for request/reply messages,
//! the counterpart type for the destination port (echo request 8 pairs with echo reply 0), so
//! a request and its reply share an id. One-way messages (unreachable, time exceeded, ...) use
//! the code as destination port and are never reordered, which keeps the sender first.

use crate::types::record::CommunityId;
use sha1::{Digest, Sha1};
use std::net::IpAddr;

const PROTO_ICMP: u8 = 1;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_ICMPV6: u8 = 58;
const PROTO_SCTP: u8 = 132;

/// The Community ID v1 of a connection.
///
/// `icmp` is `Some((v6, type, code))` for ICMP and ICMPv6 connections (the type and code of the
/// originator's first message); the ports are then ignored. For protocols other than TCP, UDP,
/// SCTP and the ICMPs the ports are ignored too and not hashed, as the spec requires.
pub fn community_id(
    seed: u16,
    ip_proto: u8,
    orig: IpAddr,
    orig_port: u16,
    resp: IpAddr,
    resp_port: u16,
    icmp: Option<(bool, u8, u8)>,
) -> CommunityId {
    // The ICMP rule applies whenever the caller gives type/code, or the protocol says ICMP even
    // if the caller forgot them (then we fall back to the ports, which by Zeek's convention
    // already hold type and counterpart/code).
    let icmp_parts = match (icmp, ip_proto) {
        (Some((v6, t, c)), _) => Some((v6, t, c)),
        (None, PROTO_ICMP) => Some((false, orig_port as u8, resp_port as u8)),
        (None, PROTO_ICMPV6) => Some((true, orig_port as u8, resp_port as u8)),
        _ => None,
    };
    let (src_port, dst_port, one_way, has_ports) = match icmp_parts {
        Some((v6, icmp_type, code)) => {
            let (counter, one_way) = counterpart(v6, icmp_type, code);
            (u16::from(icmp_type), counter, one_way, true)
        }
        None => {
            let has_ports = matches!(ip_proto, PROTO_TCP | PROTO_UDP | PROTO_SCTP);
            (orig_port, resp_port, false, has_ports)
        }
    };
    let (src_port, dst_port) = if has_ports {
        (src_port, dst_port)
    } else {
        (0, 0)
    };

    // Keep the originator first when it is already the smaller endpoint, or when the ICMP
    // message is one-way (its "ports" are type and code, which must not be swapped).
    let keep = one_way || (orig, src_port) < (resp, dst_port);
    let (a, a_port, b, b_port) = if keep {
        (orig, src_port, resp, dst_port)
    } else {
        (resp, dst_port, orig, src_port)
    };

    let mut h = Sha1::new();
    h.update(seed.to_be_bytes());
    update_addr(&mut h, a);
    update_addr(&mut h, b);
    h.update([ip_proto, 0]);
    if has_ports {
        h.update(a_port.to_be_bytes());
        h.update(b_port.to_be_bytes());
    }
    CommunityId::from_digest(h.finalize().into())
}

fn update_addr(h: &mut Sha1, addr: IpAddr) {
    match addr {
        IpAddr::V4(a) => h.update(a.octets()),
        IpAddr::V6(a) => h.update(a.octets()),
    }
}

/// The ICMP counterpart rule: the same table the flow key uses (Zeek's `ICMP4_counterpart` /
/// `ICMP6_counterpart`, which the spec's reference implementations follow). The spec's ICMP
/// test vectors below pin it, so a change to the flow key's table cannot change ids unnoticed.
fn counterpart(v6: bool, icmp_type: u8, code: u8) -> (u16, bool) {
    super::key::icmp_counterpart(v6, icmp_type, code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid(
        seed: u16,
        proto: u8,
        src: &str,
        sport: u16,
        dst: &str,
        dport: u16,
        icmp: Option<(bool, u8, u8)>,
    ) -> String {
        community_id(
            seed,
            proto,
            src.parse().expect("test address parses"),
            sport,
            dst.parse().expect("test address parses"),
            dport,
            icmp,
        )
        .text()
        .as_str()
        .to_string()
    }

    /// Both directions of a flow must give `want`.
    fn both_ways(seed: u16, proto: u8, a: &str, ap: u16, b: &str, bp: u16, want: &str) {
        assert_eq!(
            cid(seed, proto, a, ap, b, bp, None),
            want,
            "{a}:{ap} -> {b}:{bp}"
        );
        assert_eq!(
            cid(seed, proto, b, bp, a, ap, None),
            want,
            "{b}:{bp} -> {a}:{ap}"
        );
    }

    const V6_A: &str = "fe80:0001:0203:0405:0607:0809:0A0B:0C0D";
    const V6_B: &str = "fe80:1011:1213:1415:1617:1819:1A1B:1C1D";

    // The tables in the spec repository's baseline/README.md, default seed.
    #[test]
    fn spec_baseline_default_seed() {
        both_ways(
            0,
            6,
            "1.2.3.4",
            1122,
            "5.6.7.8",
            3344,
            "1:wCb3OG7yAFWelaUydu0D+125CLM=",
        );
        both_ways(
            0,
            17,
            "1.2.3.4",
            1122,
            "5.6.7.8",
            3344,
            "1:0Mu9InQx6z4ZiCZM/7HXi2WMhOg=",
        );
        both_ways(
            0,
            132,
            "1.2.3.4",
            1122,
            "5.6.7.8",
            3344,
            "1:EKt4MsxuyaE6mL+hmrEkQ9csDD8=",
        );
        both_ways(
            0,
            46,
            "1.2.3.4",
            0,
            "5.6.7.8",
            0,
            "1:ikv3kmf89luf73WPz1jOs49S768=",
        );
        both_ways(0, 46, V6_A, 0, V6_B, 0, "1:wQ/2mwrnXP4lmJcHdGL5ePjR+e0=");
        // Ports of a port-less protocol are ignored, whatever the caller passes.
        both_ways(
            0,
            46,
            "1.2.3.4",
            7,
            "5.6.7.8",
            9,
            "1:ikv3kmf89luf73WPz1jOs49S768=",
        );

        let icmp = |v6, t, c| Some((v6, t, c));
        let echo = "1:crodRHL2FEsHjbv3UkRrfbs4bZ0=";
        assert_eq!(
            cid(0, 1, "1.2.3.4", 0, "5.6.7.8", 0, icmp(false, 8, 0)),
            echo
        );
        assert_eq!(
            cid(0, 1, "5.6.7.8", 0, "1.2.3.4", 0, icmp(false, 0, 0)),
            echo
        );
        let ttl = "1:f/YiSyWqczrTgfUCZlBUnvHRcPk=";
        assert_eq!(
            cid(0, 1, "1.2.3.4", 0, "5.6.7.8", 0, icmp(false, 11, 0)),
            ttl
        );
        let echo6 = "1:0bf7hyMJUwt3fMED7z8LIfRpBeo=";
        assert_eq!(cid(0, 58, V6_A, 0, V6_B, 0, icmp(true, 128, 0)), echo6);
        assert_eq!(cid(0, 58, V6_B, 0, V6_A, 0, icmp(true, 129, 0)), echo6);
        let mobile_prefix = "1:fYC8+pz24E+EhANP1EZhpX0Dw10=";
        assert_eq!(
            cid(0, 58, V6_A, 0, V6_B, 0, icmp(true, 146, 0)),
            mobile_prefix
        );
    }

    #[test]
    fn spec_baseline_seed_one() {
        both_ways(
            1,
            6,
            "1.2.3.4",
            1122,
            "5.6.7.8",
            3344,
            "1:HhA1B+6CoLbiKPEs5nhNYN4XWfk=",
        );
        both_ways(
            1,
            17,
            "1.2.3.4",
            1122,
            "5.6.7.8",
            3344,
            "1:OShq+iKDAMVouh/4bMxB9Sz4amw=",
        );
        both_ways(
            1,
            132,
            "1.2.3.4",
            1122,
            "5.6.7.8",
            3344,
            "1:uitchpn5MMGAQKBJh7bIr/bAr7s=",
        );
        both_ways(1, 46, V6_A, 0, V6_B, 0, "1:j6EyyfBzL4vWKHFXgUqb5Az3OxM=");
        let icmp = |v6, t, c| Some((v6, t, c));
        let echo = "1:9pr4ZGTICiuZoIh90RRYE2RyXpU=";
        assert_eq!(
            cid(1, 1, "1.2.3.4", 0, "5.6.7.8", 0, icmp(false, 8, 0)),
            echo
        );
        assert_eq!(
            cid(1, 1, "5.6.7.8", 0, "1.2.3.4", 0, icmp(false, 0, 0)),
            echo
        );
        let ttl = "1:1DD7cWGC/Yg91YGsQeni8du3pIA=";
        assert_eq!(
            cid(1, 1, "1.2.3.4", 0, "5.6.7.8", 0, icmp(false, 11, 0)),
            ttl
        );
        let mobile_prefix = "1:Cv4IKJe56BNkF0MBW2YxQ3Nwc3s=";
        assert_eq!(
            cid(1, 58, V6_A, 0, V6_B, 0, icmp(true, 146, 0)),
            mobile_prefix
        );
    }

    // baseline/baseline_deflt.json of the spec repository: flows from real captures.
    #[test]
    fn spec_baseline_json_flows() {
        let icmp = |v6, t, c| Some((v6, t, c));
        let nd = "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=";
        let (a, b) = ("fe80::200:86ff:fe05:80da", "fe80::260:97ff:fe07:69ea");
        assert_eq!(cid(0, 58, a, 0, b, 0, icmp(true, 135, 0)), nd);
        assert_eq!(cid(0, 58, b, 0, a, 0, icmp(true, 136, 0)), nd);
        let nd_other_way = "1:zavyT/cezQr1fmImYCwYnMXbgck=";
        assert_eq!(cid(0, 58, b, 0, a, 0, icmp(true, 135, 0)), nd_other_way);
        let (s, d) = ("3ffe:501:1800:2345::2", "3ffe:507:0:1:200:86ff:fe05:80da");
        assert_eq!(
            cid(0, 58, s, 0, d, 0, icmp(true, 3, 0)),
            "1:2ObVBgIn28oZvibYZhZMBgh7WdQ="
        );
        let s = "3ffe:501:410:0:2c0:dfff:fe47:33e";
        assert_eq!(
            cid(0, 58, s, 0, d, 0, icmp(true, 1, 4)),
            "1:hLZd0XGWojozrvxqE0dWB1iM6R0="
        );
        assert_eq!(
            cid(
                0,
                58,
                "fe80::200:86ff:fe05:80da",
                0,
                "ff02::2",
                0,
                icmp(true, 133, 0)
            ),
            "1:hO+sN4H+MG5MY/8hIrXPqc4ZQz0="
        );
        assert_eq!(
            cid(
                0,
                58,
                "fe80::260:97ff:fe07:69ea",
                0,
                "ff02::1",
                0,
                icmp(true, 134, 0)
            ),
            "1:pkvHqCL88/tg1k4cPigmZXUtL00="
        );
        let ping = "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=";
        assert_eq!(
            cid(0, 1, "192.168.0.89", 0, "192.168.0.1", 0, icmp(false, 8, 0)),
            ping
        );
        assert_eq!(
            cid(0, 1, "192.168.0.1", 0, "192.168.0.89", 0, icmp(false, 0, 0)),
            ping
        );
        assert_eq!(
            cid(0, 1, "10.0.0.1", 0, "10.0.0.2", 0, icmp(false, 11, 0)),
            "1:YHxtAirCG//0OzkcVAukqKQN9xM="
        );
        both_ways(
            0,
            6,
            "2001:470:e5bf:dead:4957:2174:e82c:4887",
            63943,
            "2607:f8b0:400c:c03::1a",
            25,
            "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=",
        );
        both_ways(
            0,
            132,
            "192.168.170.8",
            7,
            "192.168.170.56",
            7,
            "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs=",
        );
        both_ways(
            0,
            6,
            "128.232.110.120",
            34855,
            "66.35.250.204",
            80,
            "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
        );
        both_ways(
            0,
            17,
            "192.168.1.52",
            54585,
            "8.8.8.8",
            53,
            "1:d/FP5EW3wiY1vCndhwleRRKHowQ=",
        );
        both_ways(
            0,
            46,
            "10.1.12.1",
            0,
            "10.1.12.2",
            0,
            "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw=",
        );
    }

    // ../shared/pcaps/suricata-verify/community-id-ipv{4,6}/test.yaml (Suricata, seed 7).
    #[test]
    fn suricata_verify_seed_seven() {
        both_ways(
            7,
            6,
            "172.26.0.39",
            35958,
            "172.217.14.206",
            443,
            "1:IwiTNfuO7aCaamMijl+7/X9uLx0=",
        );
        let client = "2600:1f13:00f8:d400:03a6:303c:e011:18eb";
        both_ways(
            7,
            6,
            client,
            60202,
            "2607:f8b0:400a:0800:0000:0000:0000:200e",
            443,
            "1:ptJhMvufAbB5nLDNW77cB800wFM=",
        );
        both_ways(
            7,
            6,
            client,
            33892,
            "2001:4860:4860:0000:0000:0000:0000:8888",
            443,
            "1:PGf+a0eBbs1OhuPtJmsF0Sm51v4=",
        );
    }

    // ../shared/conformance/zeek-partial/community-id/conn.log.cut.* (Zeek, seed 0).
    #[test]
    fn zeek_conn_log_http_get() {
        both_ways(
            0,
            6,
            "141.142.228.5",
            59856,
            "192.150.187.43",
            80,
            "1:yvyB8h+3dnggTZW0UEITWCst97w=",
        );
    }

    #[test]
    fn id_is_thirty_characters() {
        let id = cid(0, 6, "::1", 1, "::2", 2, None);
        assert_eq!(id.len(), 30, "unexpected id {id}");
        assert!(id.starts_with("1:"), "unexpected id {id}");
    }

    #[test]
    fn icmp_without_type_code_falls_back_to_zeek_ports() {
        // Zeek's conn id for a ping holds type 8 and counterpart 0 in the ports.
        let from_ports = cid(0, 1, "192.168.0.89", 8, "192.168.0.1", 0, None);
        assert_eq!(from_ports, "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=");
    }
}
