//! Which addresses count as local for `local_orig` / `local_resp`.
//!
//! Zeek with an empty `Site::local_nets` and `Site::private_address_space_is_local=T` (its
//! default) treats its private address space as local; `--local-nets` replaces that list.

use std::net::IpAddr;
use std::str::FromStr;

/// One CIDR block.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a CIDR did not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid network {text:?}: expected ADDRESS/PREFIX such as 10.0.0.0/8 or fd00::/8")]
pub struct CidrError {
    text: String,
}

impl FromStr for Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let err = || CidrError {
            text: s.to_string(),
        };
        let t = s.trim();
        let (a, p) = match t.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (t, None),
        };
        let a = a.trim_start_matches('[').trim_end_matches(']');
        let addr: IpAddr = a.parse().map_err(|_| err())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.parse::<u8>().map_err(|_| err())?,
            None => max,
        };
        if prefix > max {
            return Err(err());
        }
        Ok(Cidr { addr, prefix })
    }
}

impl Cidr {
    /// True when `ip` lies inside this block (IPv4 blocks never match IPv6 addresses).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix)
                };
                (u32::from(n) & mask) == (u32::from(a) & mask)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix)
                };
                (u128::from(n) & mask) == (u128::from(a) & mask)
            }
            _ => false,
        }
    }
}

/// A set of local networks.
#[derive(Clone, Debug, Default)]
pub struct LocalNets {
    nets: Vec<Cidr>,
}

/// Zeek 8's `Site::private_address_space` (IANA special-purpose blocks and their 6to4 forms).
const ZEEK_PRIVATE: &[&str] = &[
    "0.0.0.0/8",
    "2002::/24",
    "10.0.0.0/8",
    "2002:a00::/24",
    "100.64.0.0/10",
    "2002:6440::/26",
    "127.0.0.0/8",
    "2002:7f00::/24",
    "169.254.0.0/16",
    "2002:a9fe::/32",
    "172.16.0.0/12",
    "2002:ac10::/28",
    "192.0.0.0/24",
    "2002:c000::/40",
    "192.0.2.0/24",
    "2002:c000:200::/40",
    "192.168.0.0/16",
    "2002:c0a8::/32",
    "198.18.0.0/15",
    "2002:c612::/31",
    "198.51.100.0/24",
    "2002:c633:6400::/40",
    "203.0.113.0/24",
    "2002:cb00:7100::/40",
    "224.0.0.0/24",
    "2002:e000::/40",
    "239.0.0.0/8",
    "2002:ef00::/24",
    "240.0.0.0/4",
    "2002:f000::/20",
    "255.255.255.255/32",
    "2002:ffff:ffff::/48",
    "::/128",
    "::1/128",
    "64:ff9b:1::/48",
    "100::/64",
    "2001::/23",
    "2001:2::/48",
    "2001:db8::/32",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
];

impl LocalNets {
    /// Zeek's default: its private address space counts as local.
    pub fn zeek_default() -> LocalNets {
        LocalNets {
            nets: ZEEK_PRIVATE
                .iter()
                .map(|s| s.parse().expect("built-in network list is valid"))
                .collect(),
        }
    }

    /// Parses a comma-separated list such as `10.0.0.0/8,fd00::/8`.
    pub fn parse_list(list: &str) -> Result<LocalNets, CidrError> {
        let nets = list
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(str::parse)
            .collect::<Result<Vec<Cidr>, _>>()?;
        Ok(LocalNets { nets })
    }

    /// True when `ip` is local.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(ip))
    }

    /// True when no network is configured (Zeek then leaves local_orig/local_resp unset).
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeek_default_matches_reference_logs() {
        let l = LocalNets::zeek_default();
        let yes = [
            "224.0.0.251",
            "192.168.1.79",
            "fe80::217:f2ff:fed7:cf65",
            "100.64.1.1",
        ];
        let no = [
            "224.2.127.254",
            "ff02::fb",
            "141.142.220.202",
            "131.159.21.1",
        ];
        for a in yes {
            assert!(l.contains(a.parse().unwrap()), "{a} should be local");
        }
        for a in no {
            assert!(!l.contains(a.parse().unwrap()), "{a} should not be local");
        }
    }

    #[test]
    fn parse_list_rejects_garbage_with_the_text() {
        let e = LocalNets::parse_list("10.0.0.0/8,banana").unwrap_err();
        assert!(e.to_string().contains("banana"));
        assert!(LocalNets::parse_list("10.0.0.0/33").is_err());
        let l = LocalNets::parse_list("10.0.0.0/8, fd00::/8").unwrap();
        assert!(l.contains("fd00::1".parse().unwrap()));
    }
}
