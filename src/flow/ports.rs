//! Zeek's `likely_server_ports` as its default scripts build it.
//!
//! Zeek uses this set to decide who the originator is when the first packet of a connection is
//! not a plain SYN (TCP) or goes from a well-known service port to a non-service port (UDP).
//! The set is the union of the ports that the protocol analyzers loaded by `zeek`'s default
//! scripts register; runs with `-b` load fewer analyzers and so may flip fewer connections.

/// TCP ports that Zeek's default scripts treat as likely server ports.
const TCP: &[u16] = &[
    21, 22, 23, 25, 53, 80, 81, 88, 110, 135, 139, 143, 389, 443, 445, 465, 502, 563, 585, 587,
    614, 631, 636, 989, 990, 992, 993, 994, 995, 1080, 1194, 1883, 2811, 3128, 3306, 3389, 5060,
    5061, 5222, 5223, 5269, 5432, 5672, 6379, 6666, 6667, 6668, 6669, 7000, 8000, 8080, 8888,
    20000, 27017,
];

/// UDP ports that Zeek's default scripts treat as likely server ports.
const UDP: &[u16] = &[
    53, 67, 69, 88, 123, 137, 161, 162, 443, 514, 1812, 1813, 2123, 2152, 3544, 3799, 4789, 5060,
    5072, 5353, 5355, 6081,
];

/// True when `port` is a likely server port for `ip_proto` (6 = TCP, 17 = UDP) in Zeek's
/// default scripts.
pub fn is_likely_server_port(ip_proto: u8, port: u16) -> bool {
    match ip_proto {
        6 => TCP.binary_search(&port).is_ok(),
        17 => UDP.binary_search(&port).is_ok(),
        _ => false,
    }
}

/// The `likely_server_ports` in force (`--likely-server-ports`): Zeek's default scripts' set,
/// or another one, for instance the smaller set of a `zeek -b` run that loads fewer protocol
/// scripts (each script adds its analyzer's ports), so nameflow guesses roles as that run did.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum ServerPorts {
    /// The ports of Zeek's default scripts ([`is_likely_server_port`]).
    #[default]
    ZeekDefault,
    /// These ports, each list sorted.
    Custom { tcp: Vec<u16>, udp: Vec<u16> },
}

impl ServerPorts {
    /// Parses `default`, `none`, or a comma-separated list of `PORT/tcp`, `PORT/udp` and
    /// `default` (which adds the default set).
    pub fn parse_list(list: &str) -> Result<ServerPorts, String> {
        let list = list.trim();
        if list == "default" {
            return Ok(ServerPorts::ZeekDefault);
        }
        let (mut tcp, mut udp) = (Vec::new(), Vec::new());
        for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            if item == "none" {
                continue;
            }
            if item == "default" {
                tcp.extend_from_slice(TCP);
                udp.extend_from_slice(UDP);
                continue;
            }
            let (num, proto) = item.split_once('/').ok_or_else(|| {
                format!("`{item}`: expected PORT/tcp or PORT/udp (or `default`, `none`)")
            })?;
            let port: u16 = num
                .parse()
                .map_err(|_| format!("`{item}`: `{num}` is not a port number (0-65535)"))?;
            match proto {
                "tcp" => tcp.push(port),
                "udp" => udp.push(port),
                _ => return Err(format!("`{item}`: the protocol must be tcp or udp")),
            }
        }
        for v in [&mut tcp, &mut udp] {
            v.sort_unstable();
            v.dedup();
        }
        Ok(ServerPorts::Custom { tcp, udp })
    }

    /// True when `port` is a likely server port for `ip_proto` in this set.
    pub fn contains(&self, ip_proto: u8, port: u16) -> bool {
        match self {
            ServerPorts::ZeekDefault => is_likely_server_port(ip_proto, port),
            ServerPorts::Custom { tcp, udp } => match ip_proto {
                6 => tcp.binary_search(&port).is_ok(),
                17 => udp.binary_search(&port).is_ok(),
                _ => false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_sets_parse_and_answer() {
        let p = ServerPorts::parse_list("80/tcp, 53/udp,53/tcp").expect("valid list");
        assert!(p.contains(6, 80) && p.contains(6, 53) && p.contains(17, 53));
        assert!(!p.contains(6, 443) && !p.contains(17, 80));
        let none = ServerPorts::parse_list("none").expect("none");
        assert!(!none.contains(6, 80));
        assert_eq!(
            ServerPorts::parse_list("default"),
            Ok(ServerPorts::ZeekDefault)
        );
        let more = ServerPorts::parse_list("default,27272/tcp").expect("default plus one");
        assert!(more.contains(6, 443) && more.contains(6, 27272));
        for bad in ["80", "80/sctp", "x/tcp", "70000/tcp"] {
            assert!(ServerPorts::parse_list(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lists_are_sorted_for_binary_search() {
        assert!(
            TCP.windows(2).all(|w| w[0] < w[1]),
            "TCP list must be sorted"
        );
        assert!(
            UDP.windows(2).all(|w| w[0] < w[1]),
            "UDP list must be sorted"
        );
        assert!(is_likely_server_port(6, 80));
        assert!(is_likely_server_port(17, 67));
        assert!(
            !is_likely_server_port(17, 68),
            "DHCP client port is not a server port"
        );
        assert!(!is_likely_server_port(6, 1433));
    }
}
