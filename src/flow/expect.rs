//! Expected connections: a control connection announces a data connection that a later,
//! separate flow will carry (FTP's `PORT`/`EPRT` commands and `227`/`229` passive replies).
//! Zeek schedules its FTP-DATA analyzer for such a flow; we mark its `service` `ftp-data`.
//!
//! The announcement is parsed where the control packet is dispatched and is broadcast to every
//! worker, because the data connection's owner is unknown until its client port is seen.
//! Each shard keeps a small bounded table of pending expectations.

use super::summary::PacketSummary;
use crate::decode::{Packet, L4};
use crate::types::record::Service;
use std::net::{IpAddr, Ipv4Addr};

/// How long an announced data connection stays expected (Zeek's FTP data channel timeout).
pub const EXPECT_TIMEOUT_NS: u64 = 300_000_000_000;

/// Pending expectations one shard keeps; the oldest is replaced beyond this.
pub const MAX_EXPECTATIONS: usize = 256;

/// A connection some control connection said will come.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Expectation {
    /// The data connection's originator, when the announcement fixes it.
    pub orig: Option<IpAddr>,
    pub resp: IpAddr,
    pub resp_port: u16,
    pub service: Service,
    /// Packet time after which the expectation is void.
    pub until_ns: u64,
}

impl Expectation {
    /// True when a connection `orig → resp:resp_port` starting at `ts_ns` is the expected one.
    pub fn matches(&self, orig: IpAddr, resp: IpAddr, resp_port: u16, ts_ns: u64) -> bool {
        ts_ns <= self.until_ns
            && self.resp == resp
            && self.resp_port == resp_port
            && self.orig.is_none_or(|o| o == orig)
    }
}

/// A bounded set of pending expectations (a ring: a new one replaces the oldest when full).
#[derive(Debug)]
pub struct Expectations {
    items: Vec<Expectation>,
    next: usize,
}

impl Default for Expectations {
    fn default() -> Self {
        Expectations {
            items: Vec::with_capacity(MAX_EXPECTATIONS),
            next: 0,
        }
    }
}

impl Expectations {
    /// Remembers `e`.
    pub fn add(&mut self, e: Expectation) {
        if self.items.len() < MAX_EXPECTATIONS {
            self.items.push(e);
        } else {
            self.items[self.next] = e;
            self.next = (self.next + 1) % MAX_EXPECTATIONS;
        }
    }

    /// The service expected for a new connection, consuming the expectation.
    pub fn take(
        &mut self,
        orig: IpAddr,
        resp: IpAddr,
        resp_port: u16,
        ts_ns: u64,
    ) -> Option<Service> {
        if self.items.is_empty() {
            return None;
        }
        let i = self
            .items
            .iter()
            .position(|e| e.matches(orig, resp, resp_port, ts_ns))?;
        let s = self.items[i].service;
        // Voiding keeps the ring's order intact and costs nothing.
        self.items[i].until_ns = 0;
        Some(s)
    }
}

/// Parses an FTP control packet for a data-channel announcement. `payload` is the start of
/// the TCP payload; only packets to or from port 21 are looked at.
pub fn ftp_announcement(p: &Packet<'_>, ts_ns: u64) -> Option<Expectation> {
    let L4::Tcp {
        src_port, dst_port, ..
    } = p.l4
    else {
        return None;
    };
    ftp_parts(p.src, p.dst, src_port, dst_port, p.payload, ts_ns)
}

/// The same rule on a packet summary (used where only the summary is at hand).
pub fn ftp_announcement_summary(p: &PacketSummary) -> Option<Expectation> {
    let L4::Tcp {
        src_port, dst_port, ..
    } = p.l4
    else {
        return None;
    };
    ftp_parts(p.src, p.dst, src_port, dst_port, p.payload(), p.ts_ns)
}

fn ftp_parts(
    src: IpAddr,
    dst: IpAddr,
    src_port: u16,
    dst_port: u16,
    payload: &[u8],
    ts_ns: u64,
) -> Option<Expectation> {
    if payload.len() < 4 || (src_port != 21 && dst_port != 21) {
        return None;
    }
    let until_ns = ts_ns.saturating_add(EXPECT_TIMEOUT_NS);
    let mk = |orig, resp, resp_port| {
        Some(Expectation {
            orig,
            resp,
            resp_port,
            service: Service::FtpData,
            until_ns,
        })
    };
    if src_port == 21 {
        // Server replies: the client (dst) will connect to the announced address.
        if payload.starts_with(b"227") {
            let (h, port) = parse_h1_p2(after_paren_or_code(payload))?;
            return mk(Some(dst), IpAddr::V4(h), port);
        }
        if payload.starts_with(b"229") {
            let port = parse_epsv(payload)?;
            return mk(Some(dst), src, port);
        }
        return None;
    }
    // Client commands: the server (dst) will connect back to the announced address.
    let upper = |n: usize| payload.get(..n).map(|s| s.to_ascii_uppercase());
    if upper(5).as_deref() == Some(b"PORT ") {
        let (h, port) = parse_h1_p2(&payload[5..])?;
        return mk(Some(dst), IpAddr::V4(h), port);
    }
    if upper(5).as_deref() == Some(b"EPRT ") {
        let (addr, port) = parse_eprt(&payload[5..])?;
        return mk(Some(dst), addr, port);
    }
    None
}

/// For `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)`: the text after `(` if there is one,
/// else after the code (some servers omit the parentheses).
fn after_paren_or_code(payload: &[u8]) -> &[u8] {
    match payload.iter().position(|&b| b == b'(') {
        Some(i) => &payload[i + 1..],
        None => {
            let rest = &payload[3..];
            let start = rest
                .iter()
                .position(u8::is_ascii_digit)
                .unwrap_or(rest.len());
            &rest[start..]
        }
    }
}

/// Reads `h1,h2,h3,h4,p1,p2`.
fn parse_h1_p2(s: &[u8]) -> Option<(Ipv4Addr, u16)> {
    let s = s.iter().position(u8::is_ascii_digit).map(|i| &s[i..])?;
    let mut nums = [0u16; 6];
    let mut i = 0;
    for (n, slot) in nums.iter_mut().enumerate() {
        let start = i;
        let mut v: u16 = 0;
        while i < s.len() && s[i].is_ascii_digit() && i - start < 3 {
            v = v * 10 + u16::from(s[i] - b'0');
            i += 1;
        }
        if i == start || v > 255 {
            return None;
        }
        *slot = v;
        if n < 5 {
            if s.get(i) != Some(&b',') {
                return None;
            }
            i += 1;
        }
    }
    let ip = Ipv4Addr::new(nums[0] as u8, nums[1] as u8, nums[2] as u8, nums[3] as u8);
    Some((ip, (nums[4] << 8) | nums[5]))
}

/// Reads the port of `229 Entering Extended Passive Mode (|||port|)`.
fn parse_epsv(payload: &[u8]) -> Option<u16> {
    let open = payload.iter().position(|&b| b == b'(')?;
    let rest = &payload[open + 1..];
    let d = *rest.first()?;
    let mut parts = rest.split(|&b| b == d);
    parts.next()?; // empty before the first delimiter
    parts.next()?; // protocol (empty)
    parts.next()?; // address (empty)
    parse_u16(parts.next()?)
}

/// Reads `|proto|addr|port|` of an EPRT command.
fn parse_eprt(s: &[u8]) -> Option<(IpAddr, u16)> {
    let d = *s.first()?;
    let mut parts = s[1..].split(|&b| b == d);
    let _proto = parts.next()?;
    let addr = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let port = parse_u16(parts.next()?)?;
    Some((addr, port))
}

fn parse_u16(s: &[u8]) -> Option<u16> {
    let s = std::str::from_utf8(s).ok()?;
    s.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn passive_reply_expects_client_to_server_port() {
        let e = ftp_parts(
            v4("192.168.56.101"),
            v4("192.168.56.1"),
            21,
            59762,
            b"227 Entering Passive Mode (192,168,56,101,145,34).\r\n",
            10,
        )
        .unwrap();
        assert_eq!(e.orig, Some(v4("192.168.56.1")));
        assert_eq!(e.resp, v4("192.168.56.101"));
        assert_eq!(e.resp_port, 145 * 256 + 34);
        assert!(e.matches(v4("192.168.56.1"), v4("192.168.56.101"), 37154, 11));
        assert!(!e.matches(v4("192.168.56.2"), v4("192.168.56.101"), 37154, 11));
    }

    #[test]
    fn port_and_eprt_commands_expect_server_to_client() {
        let e = ftp_parts(
            v4("10.0.0.1"),
            v4("10.0.0.2"),
            40000,
            21,
            b"PORT 10,0,0,1,4,1\r\n",
            0,
        )
        .unwrap();
        assert_eq!(
            (e.orig, e.resp, e.resp_port),
            (Some(v4("10.0.0.2")), v4("10.0.0.1"), 1025)
        );
        let e = ftp_parts(
            v4("fd00::1"),
            v4("fd00::2"),
            40000,
            21,
            b"EPRT |2|fd00::1|6446|\r\n",
            0,
        )
        .unwrap();
        assert_eq!((e.resp, e.resp_port), (v4("fd00::1"), 6446));
        let e = ftp_parts(
            v4("fd00::2"),
            v4("fd00::1"),
            21,
            40000,
            b"229 Entering Extended Passive Mode (|||6446|)\r\n",
            0,
        )
        .unwrap();
        assert_eq!((e.resp, e.resp_port), (v4("fd00::2"), 6446));
    }

    #[test]
    fn garbage_and_other_ports_give_nothing() {
        let a = v4("10.0.0.1");
        assert!(ftp_parts(a, a, 21, 1, b"227 (1,2,3)", 0).is_none());
        assert!(ftp_parts(a, a, 21, 1, b"227 (999,2,3,4,5,6)", 0).is_none());
        assert!(ftp_parts(a, a, 2121, 1, b"227 (1,2,3,4,5,6)", 0).is_none());
        assert!(ftp_parts(a, a, 1, 21, b"PORT", 0).is_none());
    }

    #[test]
    fn expectations_are_bounded_and_consumed_once() {
        let mut x = Expectations::default();
        for p in 0..(MAX_EXPECTATIONS as u16 + 10) {
            x.add(Expectation {
                orig: None,
                resp: v4("10.0.0.9"),
                resp_port: p,
                service: Service::FtpData,
                until_ns: 100,
            });
        }
        assert!(x.items.len() <= MAX_EXPECTATIONS);
        assert_eq!(
            x.take(v4("1.1.1.1"), v4("10.0.0.9"), 260, 5),
            Some(Service::FtpData)
        );
        assert_eq!(x.take(v4("1.1.1.1"), v4("10.0.0.9"), 260, 5), None);
        assert_eq!(
            x.take(v4("1.1.1.1"), v4("10.0.0.9"), 3, 5),
            None,
            "replaced by newer ones"
        );
        assert_eq!(
            x.take(v4("1.1.1.1"), v4("10.0.0.9"), 200, 500),
            None,
            "expired"
        );
    }
}
