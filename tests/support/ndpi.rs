//! The flows `ndpiReader.out` (beside each shared nDPI capture) reports with a
//! `Hostname/SNI`: what a name check may count as a connection's own SNI or Host.

#![allow(dead_code)] // Each test uses its own part of this module.

use std::net::IpAddr;

/// A flow nDPI reports: protocol, both endpoints, and its Hostname/SNI.
#[derive(Debug)]
pub struct NdpiFlow {
    pub proto: String,
    /// nDPI's protocol, master first (`HTTP.1kxun`, `TLS`, `QUIC.YouTube`).
    pub app: String,
    pub a: (IpAddr, u16),
    pub b: (IpAddr, u16),
    pub sni: String,
}

fn endpoint(s: &str) -> (IpAddr, u16) {
    let (h, p) = s.rsplit_once(':').expect("host:port");
    let h = h.trim_start_matches('[').trim_end_matches(']');
    (h.parse().expect("an address"), p.parse().expect("a port"))
}

/// The flows with a `Hostname/SNI` in an ndpiReader.out: lines like
/// `1  UDP 192.168.1.109:57833 <-> 216.58.212.101:443 [proto: ...]...[Hostname/SNI: x]...`.
pub fn ndpi_flows(text: &str) -> Vec<NdpiFlow> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(at) = line.find("[Hostname/SNI: ") else {
            continue;
        };
        let sni = line[at + 15..].split(']').next().unwrap_or("").to_string();
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(arrow) = words.iter().position(|w| *w == "<->" || *w == "->") else {
            continue;
        };
        if arrow < 2 || sni.is_empty() {
            continue;
        }
        let app = line
            .split("[proto: ")
            .nth(1)
            .and_then(|p| p.split(']').next())
            .map(|p| p.rsplit('/').next().unwrap_or(p).to_string())
            .unwrap_or_default();
        out.push(NdpiFlow {
            proto: words[arrow - 2].to_ascii_lowercase(),
            app,
            a: endpoint(words[arrow - 1]),
            b: endpoint(words[arrow + 1]),
            sni,
        });
    }
    out
}

impl NdpiFlow {
    /// The SNI/Host of a TLS, HTTP or QUIC flow (address literals aside: they name nothing).
    pub fn own_name(&self) -> Option<String> {
        let master = self.app.split('.').next().unwrap_or("");
        (matches!(master, "TLS" | "HTTP" | "QUIC") && self.sni.parse::<IpAddr>().is_err())
            .then(|| self.sni.to_ascii_lowercase())
    }
}
