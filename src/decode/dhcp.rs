//! The host name (option 12) of a DHCP message, with the address it names.

use std::net::{IpAddr, Ipv4Addr};

/// The BOOTP fixed part ends here; the magic cookie and the options follow.
const FIXED: usize = 236;
const COOKIE: [u8; 4] = [99, 130, 83, 99];

/// `(address, host name)` from a DHCP message: the host name of option 12 names the client's
/// address, which is `ciaddr` when set, else the requested address (option 50) of a client
/// message, else `yiaddr` of a server ACK.
pub fn host_name(payload: &[u8]) -> Option<(IpAddr, &[u8])> {
    let op = *payload.first()?;
    let fixed = payload.get(..FIXED)?;
    if payload.get(FIXED..FIXED + 4)? != COOKIE {
        return None;
    }
    let ip = |o: usize| Ipv4Addr::new(fixed[o], fixed[o + 1], fixed[o + 2], fixed[o + 3]);
    let (ciaddr, yiaddr) = (ip(12), ip(16));
    let mut name = None;
    let mut requested = None;
    let mut msg_type = 0u8;
    let mut pos = FIXED + 4;
    while let Some(&code) = payload.get(pos) {
        match code {
            0 => {
                pos += 1;
                continue;
            }
            255 => break,
            _ => {}
        }
        let len = usize::from(*payload.get(pos + 1)?);
        let val = payload.get(pos + 2..pos + 2 + len)?;
        match (code, len) {
            (12, 1..) => name = Some(val),
            (50, 4) => requested = Some(Ipv4Addr::new(val[0], val[1], val[2], val[3])),
            (53, 1) => msg_type = val[0],
            _ => {}
        }
        pos += 2 + len;
    }
    let name = name?;
    let addr = if !ciaddr.is_unspecified() {
        ciaddr
    } else if op == 1 {
        requested?
    } else if op == 2 && msg_type == 5 && !yiaddr.is_unspecified() {
        yiaddr
    } else {
        return None;
    };
    Some((IpAddr::V4(addr), name))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A DHCP message with the given options (each `(code, value)`).
    pub(crate) fn dhcp(op: u8, ciaddr: [u8; 4], yiaddr: [u8; 4], opts: &[(u8, &[u8])]) -> Vec<u8> {
        let mut m = vec![0u8; FIXED];
        m[0] = op;
        m[1] = 1;
        m[2] = 6;
        m[12..16].copy_from_slice(&ciaddr);
        m[16..20].copy_from_slice(&yiaddr);
        m.extend_from_slice(&COOKIE);
        for (c, v) in opts {
            m.push(*c);
            m.push(v.len() as u8);
            m.extend_from_slice(v);
        }
        m.push(255);
        m
    }

    #[test]
    fn request_names_its_requested_address() {
        let m = dhcp(
            1,
            [0; 4],
            [0; 4],
            &[(53, &[3]), (50, &[198, 18, 0, 9]), (12, b"laptop-7")],
        );
        assert_eq!(
            host_name(&m),
            Some(("198.18.0.9".parse().unwrap(), &b"laptop-7"[..]))
        );
        let m = dhcp(2, [0; 4], [198, 18, 0, 10], &[(53, &[5]), (12, b"printer")]);
        assert_eq!(
            host_name(&m),
            Some(("198.18.0.10".parse().unwrap(), &b"printer"[..]))
        );
        // A discover has no address yet.
        let m = dhcp(1, [0; 4], [0; 4], &[(53, &[1]), (12, b"x")]);
        assert_eq!(host_name(&m), None);
        for cut in 0..m.len() {
            let _ = host_name(&m[..cut]);
        }
    }
}
