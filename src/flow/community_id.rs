//! Community ID v1 (placeholder until it lands; replaced wholesale).
//!
//! INTERFACE CONTRACT: `community_id(seed: u16, ip_proto: u8, orig: IpAddr, orig_port: u16,
//! resp: IpAddr, resp_port: u16, icmp: Option<(bool /*v6*/, u8 /*type*/, u8 /*code*/)>)
//! -> CommunityId`, where for ICMP the ports are ignored and the type/code rules of the spec
//! apply.

use crate::output::record::CommunityId;
use std::net::IpAddr;

/// The Community ID v1 of a connection.
pub fn community_id(
    seed: u16,
    ip_proto: u8,
    orig: IpAddr,
    orig_port: u16,
    resp: IpAddr,
    resp_port: u16,
    icmp: Option<(bool, u8, u8)>,
) -> CommunityId {
    let _ = (seed, ip_proto, orig, orig_port, resp, resp_port, icmp);
    CommunityId::default()
}
