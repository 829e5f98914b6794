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

/// True when `port` is a likely server port for `ip_proto` (6 = TCP, 17 = UDP).
pub fn is_likely_server_port(ip_proto: u8, port: u16) -> bool {
    match ip_proto {
        6 => TCP.binary_search(&port).is_ok(),
        17 => UDP.binary_search(&port).is_ok(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
