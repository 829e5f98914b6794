//! The connection record and its field types, in Zeek 8's `conn.log` column order.
//!
//! Every type here is `Copy` and fixed-size so a record can cross a bounded SPSC queue without
//! allocating. Our own columns (`community_id`, then the names, then the context when
//! inventories are configured) come after Zeek's and never reuse a Zeek name. How a record is
//! written (its schema and columns) is `output::record`'s business.

use super::context::{ConnContext, COLUMNS, END_ARENA};
use super::key::Vlans;
use super::name::{Name, NameSource, NAME_CAP};
use std::net::IpAddr;

/// A Zeek-style unique connection identifier: `C` followed by base62 digits of 96 bits. The
/// bits are what a record carries; the text is made when a log line is written
/// ([`Uid::text`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Uid {
    hi: u64,
    lo: u32,
    set: bool,
}

/// A uid as text, on the stack: `C` and at most 11 + 6 base62 digits.
#[derive(Clone, Copy)]
pub struct UidText {
    len: u8,
    buf: [u8; 24],
}

impl UidText {
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and letters are ever written into `buf`.
        std::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("")
    }
}

impl Uid {
    /// A uid from 96 bits of hash output.
    pub fn from_bits(hi: u64, lo: u32) -> Uid {
        Uid { hi, lo, set: true }
    }

    /// The uid as Zeek writes it: `C` + base62 digits of each part (empty when unset).
    pub fn text(&self) -> UidText {
        const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut t = UidText {
            len: 0,
            buf: [0; 24],
        };
        if !self.set {
            return t;
        }
        t.buf[0] = b'C';
        t.len = 1;
        for mut part in [self.hi, u64::from(self.lo)] {
            let start = t.len as usize;
            loop {
                t.buf[t.len as usize] = DIGITS[(part % 62) as usize];
                t.len += 1;
                part /= 62;
                if part == 0 {
                    break;
                }
            }
            t.buf[start..t.len as usize].reverse();
        }
        t
    }

    /// True for the default (never assigned) uid.
    pub fn is_empty(&self) -> bool {
        !self.set
    }
}

impl std::fmt::Debug for Uid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text().as_str())
    }
}

impl std::fmt::Display for Uid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text().as_str())
    }
}

/// Transport protocol as Zeek's `transport_proto` enum prints it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Transport {
    Tcp,
    Udp,
    Icmp,
    Unknown,
}

impl Transport {
    /// Zeek's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
            Transport::Icmp => "icmp",
            Transport::Unknown => "unknown_transport",
        }
    }
}

/// An application protocol recognised from payload (Zeek's analyzer names, lower case).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Service {
    Dns,
    Http,
    Ssl,
    Ssh,
    Ftp,
    FtpData,
    Smtp,
    Pop3,
    Imap,
    Dhcp,
    Ntp,
    Irc,
    Modbus,
    DceRpc,
    Krb,
    KrbTcp,
    Smb,
    Vxlan,
    Geneve,
    Teredo,
    Ayiya,
    Gtpv1,
    Snmp,
    Syslog,
    Sip,
    Rdp,
    /// RDP's UDP transport (MS-RDPEUDP), Zeek's `RDPEUDP` analyzer.
    Rdpeudp,
    Mysql,
    Ldap,
    Quic,
    Ntlm,
    Gssapi,
}

impl Service {
    /// The name Zeek writes in the `service` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Dns => "dns",
            Service::Http => "http",
            Service::Ssl => "ssl",
            Service::Ssh => "ssh",
            Service::Ftp => "ftp",
            Service::FtpData => "ftp-data",
            Service::Smtp => "smtp",
            Service::Pop3 => "pop3",
            Service::Imap => "imap",
            Service::Dhcp => "dhcp",
            Service::Ntp => "ntp",
            Service::Irc => "irc",
            Service::Modbus => "modbus",
            Service::DceRpc => "dce_rpc",
            Service::Krb => "krb",
            Service::KrbTcp => "krb_tcp",
            Service::Smb => "smb",
            Service::Vxlan => "vxlan",
            Service::Geneve => "geneve",
            Service::Teredo => "teredo",
            Service::Ayiya => "ayiya",
            Service::Gtpv1 => "gtpv1",
            Service::Snmp => "snmp",
            Service::Syslog => "syslog",
            Service::Sip => "sip",
            Service::Rdp => "rdp",
            Service::Rdpeudp => "rdpeudp",
            Service::Mysql => "mysql",
            Service::Ldap => "ldap",
            Service::Quic => "quic",
            Service::Ntlm => "ntlm",
            Service::Gssapi => "gssapi",
        }
    }
}

/// The services confirmed on a connection, in the order they were confirmed (Zeek prints
/// `imap,ssl` for STARTTLS). Holds at most four; later ones are ignored.
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug)]
pub struct ServiceList {
    len: u8,
    items: [Option<Service>; 4],
}

impl ServiceList {
    /// Adds a service unless it is already present or the list is full.
    pub fn push(&mut self, s: Service) {
        if self.contains(s) || self.len as usize >= self.items.len() {
            return;
        }
        self.items[self.len as usize] = Some(s);
        self.len += 1;
    }

    /// True when `s` was confirmed.
    pub fn contains(&self, s: Service) -> bool {
        self.iter().any(|x| x == s)
    }

    /// The services in confirmation order.
    pub fn iter(&self) -> impl Iterator<Item = Service> + '_ {
        self.items[..self.len as usize].iter().flatten().copied()
    }

    /// True when no service was confirmed (Zeek writes `-`).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Zeek's `conn_state` values.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ConnState {
    S0,
    S1,
    SF,
    REJ,
    S2,
    S3,
    RSTO,
    RSTR,
    RSTOS0,
    RSTRH,
    SH,
    SHR,
    OTH,
}

impl ConnState {
    /// Zeek's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnState::S0 => "S0",
            ConnState::S1 => "S1",
            ConnState::SF => "SF",
            ConnState::REJ => "REJ",
            ConnState::S2 => "S2",
            ConnState::S3 => "S3",
            ConnState::RSTO => "RSTO",
            ConnState::RSTR => "RSTR",
            ConnState::RSTOS0 => "RSTOS0",
            ConnState::RSTRH => "RSTRH",
            ConnState::SH => "SH",
            ConnState::SHR => "SHR",
            ConnState::OTH => "OTH",
        }
    }
}

/// Maximum length of a history string. Zeek records each letter at most a handful of times
/// (repeats are log-scaled), so real histories stay far below this (the longest in the shared
/// Zeek references is 12 letters).
pub const HISTORY_CAP: usize = 40;

/// Zeek's `history` string, stored inline.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct History {
    len: u8,
    buf: [u8; HISTORY_CAP],
}

impl Default for History {
    fn default() -> Self {
        History {
            len: 0,
            buf: [0; HISTORY_CAP],
        }
    }
}

impl History {
    /// Appends one letter; a full buffer ignores further letters.
    pub fn push(&mut self, c: u8) {
        if (self.len as usize) < HISTORY_CAP {
            self.buf[self.len as usize] = c;
            self.len += 1;
        }
    }

    /// The history as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("")
    }

    /// True when no letter was recorded (Zeek writes `-`).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Community ID v1: the SHA-1 digest a record carries; the text (`1:` + base64 of the
/// digest, always 30 characters) is made when a log line is written ([`CommunityId::text`]).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct CommunityId {
    digest: [u8; 20],
    set: bool,
}

/// A Community ID as text, on the stack.
#[derive(Clone, Copy)]
pub struct CommunityIdText {
    len: u8,
    buf: [u8; 30],
}

impl CommunityIdText {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("")
    }
}

impl CommunityId {
    /// The id of a digest.
    pub fn from_digest(digest: [u8; 20]) -> CommunityId {
        CommunityId { digest, set: true }
    }

    /// `1:` + base64 of the digest; empty when not computed.
    pub fn text(&self) -> CommunityIdText {
        use base64::engine::general_purpose::STANDARD;
        use base64::Engine;
        let mut t = CommunityIdText {
            len: 0,
            buf: [0; 30],
        };
        if self.set {
            t.buf[..2].copy_from_slice(b"1:");
            let n = STANDARD
                .encode_slice(self.digest, &mut t.buf[2..])
                .unwrap_or_default();
            t.len = (2 + n) as u8;
        }
        t
    }
}

impl std::fmt::Debug for CommunityId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text().as_str())
    }
}

/// The name an address had when a connection started, and what proved it. Unknown when
/// `source` is `None` (JSON leaves both columns out, TSV writes `-`).
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug)]
pub struct HostName {
    /// Lower-case, inline (up to 255 bytes).
    pub name: Name,
    pub source: Option<NameSource>,
}

/// The most names an end's name set holds (`--names-max` may lower it).
pub const NAMES_MAX: usize = 8;

/// Every distinct name an address had when a connection started (`orig_names`,
/// `resp_names`), in order. The bytes sit in one buffer that is reused from record to record
/// (it grows to its largest size once, then never allocates again), so a set costs what its
/// names hold rather than a fixed slot per name.
#[derive(Clone, PartialEq, Eq, Default, Debug)]
pub struct NameList {
    bytes: Vec<u8>,
    ends: [u16; NAMES_MAX],
    n: u8,
}

impl NameList {
    /// Appends a name unless it is empty, already present or the list is full; true when added.
    pub fn push(&mut self, name: &[u8]) -> bool {
        if name.is_empty() || self.len() >= NAMES_MAX || self.contains(name) {
            return false;
        }
        let name = &name[..name.len().min(NAME_CAP)];
        self.bytes.extend_from_slice(name);
        self.ends[self.len()] = self.bytes.len() as u16;
        self.n += 1;
        true
    }

    /// The `i`-th name.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        if i >= self.len() {
            return None;
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        Some(&self.bytes[start..self.ends[i] as usize])
    }

    /// The names in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// Where `name` is in the list.
    pub fn position(&self, name: &[u8]) -> Option<usize> {
        self.iter().position(|n| n == name)
    }

    pub fn contains(&self, name: &[u8]) -> bool {
        self.position(name).is_some()
    }

    pub fn len(&self) -> usize {
        self.n as usize
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Forgets every name (keeps the buffer).
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.n = 0;
    }
}

/// The names of both ends of a connection (filled in by the worker when the record is
/// produced; `flow` leaves them unknown).
#[derive(Clone, PartialEq, Eq, Default, Debug)]
pub struct ConnNames {
    /// `orig_name` and `orig_name_src`.
    pub orig: HostName,
    /// `resp_name` and `resp_name_src`.
    pub resp: HostName,
    /// `orig_names`: every name the originator's address had at the start; holds `orig`'s
    /// name whenever that is known.
    pub orig_all: NameList,
    /// `resp_names`, likewise.
    pub resp_all: NameList,
}

impl ConnNames {
    /// Forgets every name (keeps the buffers).
    pub fn clear(&mut self) {
        for h in [&mut self.orig, &mut self.resp] {
            h.source = None;
            h.name.clear();
        }
        self.orig_all.clear();
        self.resp_all.clear();
    }
}

/// Up to two encapsulating connections (Zeek's `tunnel_parents`).
pub const MAX_TUNNEL_PARENTS: usize = 2;

/// One `conn.log` record. Field order and meaning follow Zeek 8's `Conn::Info`
/// (`scripts/base/protocols/conn/main.zeek`).
#[derive(Clone, Copy, Debug)]
pub struct ConnRecord {
    /// `ts`: time of the first packet, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// `uid`: unique id of the connection.
    pub uid: Uid,
    /// `id.orig_h`: the originator's address.
    pub orig_h: IpAddr,
    /// `id.orig_p`: originator port; for ICMP the message type.
    pub orig_p: u16,
    /// `id.resp_h`: the responder's address.
    pub resp_h: IpAddr,
    /// `id.resp_p`: responder port; for ICMP the counterpart type, or the code.
    pub resp_p: u16,
    /// `id.ctx.vlan` and `id.ctx.inner_vlan` (only with `--conn-key vlan`, as Zeek's
    /// `frameworks/conn_key/vlan_fivetuple` adds them): the 802.1Q ids in the connection's
    /// key. Always [`Vlans::NONE`] with the default key.
    pub vlans: Vlans,
    /// `proto`: transport protocol.
    pub proto: Transport,
    /// `service`: application protocols confirmed from payload.
    pub service: ServiceList,
    /// `duration`: last packet time minus first. Zeek leaves `duration`, `orig_bytes` and
    /// `resp_bytes` unset when the duration is zero; the encoders do the same.
    pub duration_ns: u64,
    /// `orig_bytes`: payload bytes the originator sent (from TCP sequence numbers).
    pub orig_bytes: u64,
    /// `resp_bytes`: payload bytes the responder sent.
    pub resp_bytes: u64,
    /// `conn_state`.
    pub conn_state: ConnState,
    /// `local_orig`: originator is in the local networks (unset when no local networks).
    pub local_orig: Option<bool>,
    /// `local_resp`: responder is in the local networks.
    pub local_resp: Option<bool>,
    /// `missed_bytes`: bytes lost to content gaps.
    pub missed_bytes: u64,
    /// `history`.
    pub history: History,
    /// `orig_pkts`.
    pub orig_pkts: u64,
    /// `orig_ip_bytes`: IP-level bytes (headers included) sent by the originator.
    pub orig_ip_bytes: u64,
    /// `resp_pkts`.
    pub resp_pkts: u64,
    /// `resp_ip_bytes`.
    pub resp_ip_bytes: u64,
    /// `tunnel_parents`: uids of the encapsulating connections.
    pub tunnel_parents: [Option<Uid>; MAX_TUNNEL_PARENTS],
    /// `ip_proto`: the IP protocol number.
    pub ip_proto: u8,
    /// `community_id` (ours, after Zeek's columns): Community ID v1 with `--community-id-seed` (default 0).
    pub community_id: CommunityId,
    // The names and context columns are not here: they travel beside the record, as a
    // [`ConnExtra`] encoded to the bytes it holds, only when names or inventories are on.
}

/// What a record carries beyond its own columns when names or inventories are on: the
/// worker fills one in (it is its scratch space, never queued as it is) and sends it
/// [`encode`](ConnExtra::encode)d — a few bytes per name and context value, not the
/// fixed-size slots — on a queue beside the records; the writer decodes it into a scratch
/// value of its own.
#[derive(Clone, PartialEq, Eq, Default, Debug)]
pub struct ConnExtra {
    /// `orig_name`, `orig_name_src`, `resp_name`, `resp_name_src` (ours): the name each end
    /// had when the connection started and its source (`A`, `AAAA`, `CNAME`, `PTR`, `MDNS`,
    /// `LLMNR`, `SNI`, `HTTP`, `DHCP`); see `docs/names.md`.
    pub names: ConnNames,
    /// `orig_pod` ... `resp_vpc` and the extra `orig_<prefix>*`/`resp_<prefix>*` columns
    /// (ours, only when inventories are configured): what each end was when the connection
    /// started; see `docs/context.md`.
    pub context: ConnContext,
}

/// The longest encoded [`ConnExtra`]: per end a name set (source, count, index of the name
/// in the set, then per name its length and bytes) and a context (flag, column lengths,
/// values).
pub const EXTRA_MAX: usize = 2 * (3 + NAMES_MAX * (1 + NAME_CAP)) + 2 * (1 + COLUMNS + END_ARENA);

impl ConnExtra {
    /// Writes what this holds into `out`; returns the length (at least 4 bytes).
    pub fn encode(&self, out: &mut [u8; EXTRA_MAX]) -> usize {
        let mut n = 0;
        // Per end: 0 when unnamed, else the source + 1, the number of names in the set, the
        // index of the end's name in it, and each name as a length and its bytes; the end's
        // name is written once, as a member of its set.
        for (h, all) in [
            (&self.names.orig, &self.names.orig_all),
            (&self.names.resp, &self.names.resp_all),
        ] {
            let Some(src) = h.source.filter(|_| !h.name.is_empty()) else {
                out[n] = 0;
                n += 1;
                continue;
            };
            let own = h.name.as_bytes();
            // A set that lacks the name (only callers that fill the name alone) is written with
            // the name first and as many of the set's names as fit after it.
            let (lead, at) = match all.position(own) {
                Some(i) => (false, i),
                None => (true, 0),
            };
            let count = if lead {
                1 + all.len().min(NAMES_MAX - 1)
            } else {
                all.len()
            };
            out[n] = src as u8 + 1;
            out[n + 1] = count as u8;
            out[n + 2] = at as u8;
            n += 3;
            let mut put = |b: &[u8], n: &mut usize| {
                out[*n] = b.len() as u8;
                out[*n + 1..*n + 1 + b.len()].copy_from_slice(b);
                *n += 1 + b.len();
            };
            if lead {
                put(own, &mut n);
            }
            for b in all.iter().take(count - usize::from(lead)) {
                put(b, &mut n);
            }
        }
        for e in [&self.context.orig, &self.context.resp] {
            if e.is_empty() {
                out[n] = 0;
                n += 1;
                continue;
            }
            let (lens, bytes) = e.raw();
            out[n] = 1;
            out[n + 1..n + 1 + COLUMNS].copy_from_slice(lens);
            n += 1 + COLUMNS;
            out[n..n + bytes.len()].copy_from_slice(bytes);
            n += bytes.len();
        }
        n
    }

    /// Reads what [`ConnExtra::encode`] wrote. False (and `self` cleared) when the bytes are not
    /// such an encoding.
    pub fn decode(&mut self, b: &[u8]) -> bool {
        self.clear();
        let ok = self.decode_into(b).is_some();
        if !ok {
            self.clear();
        }
        ok
    }

    fn decode_into(&mut self, b: &[u8]) -> Option<()> {
        let mut n = 0;
        for (h, all) in [
            (&mut self.names.orig, &mut self.names.orig_all),
            (&mut self.names.resp, &mut self.names.resp_all),
        ] {
            let tag = *b.get(n)?;
            n += 1;
            if tag == 0 {
                continue;
            }
            let source = NameSource::from_u8(tag - 1)?;
            let count = *b.get(n)? as usize;
            let at = *b.get(n + 1)? as usize;
            n += 2;
            if count == 0 || count > NAMES_MAX || at >= count {
                return None;
            }
            for _ in 0..count {
                let len = *b.get(n)? as usize;
                if !all.push(b.get(n + 1..n + 1 + len)?) {
                    // Empty or repeated names are not an encoding.
                    return None;
                }
                n += 1 + len;
            }
            h.source = Some(source);
            h.name = Name::new(all.get(at)?);
        }
        for e in [&mut self.context.orig, &mut self.context.resp] {
            let tag = *b.get(n)?;
            n += 1;
            if tag == 0 {
                continue;
            }
            let lens: [u8; COLUMNS] = b.get(n..n + COLUMNS)?.try_into().ok()?;
            n += COLUMNS;
            let total: usize = lens.iter().map(|&l| l as usize).sum();
            if total > END_ARENA {
                return None;
            }
            e.set_raw(&lens, b.get(n..n + total)?);
            n += total;
        }
        (n == b.len()).then_some(())
    }

    /// Forgets every name and value (keeps the buffers).
    pub fn clear(&mut self) {
        self.names.clear();
        self.context.orig.clear();
        self.context.resp.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_round_trips_at_its_own_size() {
        let mut x = ConnExtra::default();
        let mut buf = [0u8; EXTRA_MAX];
        // Nothing known: four bytes.
        assert_eq!(x.encode(&mut buf), 4);
        x.names.resp = HostName {
            name: Name::new(b"www.example.com"),
            source: Some(NameSource::Cname),
        };
        x.context.orig.push(0, b"web-7d4f");
        x.context.orig.push(3, b"default/web");
        let n = x.encode(&mut buf);
        // The name alone: source, count 1, index 0, then its length and bytes.
        assert_eq!(n, 1 + 3 + 1 + 15 + 1 + COLUMNS + 8 + 11 + 1);
        let mut y = ConnExtra::default();
        y.names.orig.source = Some(NameSource::Ptr);
        assert!(y.decode(&buf[..n]));
        // Compared by what they hold (cleared buffers keep their old bytes).
        let mut again = [0u8; EXTRA_MAX];
        let m = y.encode(&mut again);
        assert_eq!(&again[..m], &buf[..n]);
        assert_eq!(y.names.resp.name.as_bytes(), b"www.example.com");
        assert_eq!(y.context.orig.get(3), Some(&b"default/web"[..]));
        assert_eq!(
            y.names.resp_all.iter().collect::<Vec<_>>(),
            [&b"www.example.com"[..]]
        );
        // A set: the end's name is written once, as a member of its set, and comes back with
        // the set in its order.
        x.names.resp_all.clear();
        for s in [&b"a.example"[..], b"www.example.com", b"b.example"] {
            assert!(x.names.resp_all.push(s));
        }
        assert!(
            !x.names.resp_all.push(b"a.example"),
            "a set holds a name once"
        );
        let n = x.encode(&mut buf);
        assert_eq!(
            n,
            1 + 3 + (1 + 9) + (1 + 15) + (1 + 9) + 1 + COLUMNS + 8 + 11 + 1
        );
        assert!(y.decode(&buf[..n]));
        assert_eq!(y.names.resp.name.as_bytes(), b"www.example.com");
        assert_eq!(y.names.resp.source, Some(NameSource::Cname));
        assert_eq!(
            y.names.resp_all.iter().collect::<Vec<_>>(),
            [&b"a.example"[..], b"www.example.com", b"b.example"]
        );
        assert!(y.names.orig_all.is_empty() && y.names.orig.source.is_none());
        // Longest case fits: full sets of the longest names.
        let long = [b'a'; NAME_CAP];
        x.names.orig = HostName {
            name: Name::new(&long),
            source: Some(NameSource::Sni),
        };
        x.names.resp = x.names.orig;
        x.names.resp_all.clear();
        for k in 0..NAMES_MAX {
            let mut v = long;
            v[0] = b'0' + k as u8;
            x.names.orig_all.push(&v);
            x.names.resp_all.push(&v);
        }
        assert_eq!(x.names.orig_all.len(), NAMES_MAX);
        x.context.orig.clear();
        for c in 0..COLUMNS {
            x.context.orig.push(c, &[b'v'; 200]);
            x.context.resp.push(c, &[b'w'; 200]);
        }
        let n = x.encode(&mut buf);
        assert!(n <= EXTRA_MAX);
        // A set without the end's name: the name leads, the set is cut to fit.
        assert!(y.decode(&buf[..n]));
        assert_eq!(y.names.resp_all.get(0), Some(&long[..]));
        assert_eq!(y.names.resp_all.len(), NAMES_MAX);
        x.names.orig_all.clear();
        x.names.orig_all.push(&long);
        for k in 1..NAMES_MAX {
            let mut v = long;
            v[0] = b'0' + k as u8;
            x.names.orig_all.push(&v);
        }
        let n = x.encode(&mut buf);
        assert!(n <= EXTRA_MAX);
        assert!(
            n >= 2 * (3 + NAMES_MAX * (1 + NAME_CAP)),
            "both full sets written"
        );
        assert!(y.decode(&buf[..n]));
        let m = y.encode(&mut again);
        assert_eq!(&again[..m], &buf[..n]);
        // Damaged bytes: refused and cleared, never a panic.
        assert!(!y.decode(&buf[..n - 1]));
        assert_eq!(y.encode(&mut again), 4);
        assert!(!y.decode(&[9, 200]));
    }
}

#[cfg(test)]
mod size {
    /// What crosses from a worker to the writer for every connection: at most 256 bytes
    /// without names or context (they travel beside it, at their own size).
    #[test]
    fn a_record_is_at_most_256_bytes() {
        let n = std::mem::size_of::<super::ConnRecord>();
        assert!(n <= 256, "ConnRecord is {n} bytes");
    }
}

/// Records for unit tests of every layer.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    /// The first row of the Zeek reference `ssh-basic/conn.log`, as a record, with a chosen
    /// `ts` (the reference masks it).
    pub fn ssh_basic_row() -> ConnRecord {
        let mut service = ServiceList::default();
        service.push(Service::Ssh);
        let mut history = History::default();
        for &c in b"ShAdDaFf" {
            history.push(c);
        }
        ConnRecord {
            ts_ns: 1_324_071_333_493_287_000,
            uid: Uid::from_bits(0x1234_5678_9abc_def0, 42),
            orig_h: "192.168.1.79".parse().unwrap(),
            orig_p: 51880,
            resp_h: "131.159.21.1".parse().unwrap(),
            resp_p: 22,
            vlans: crate::types::key::Vlans::NONE,
            proto: Transport::Tcp,
            service,
            duration_ns: 6_159_326_000,
            orig_bytes: 2669,
            resp_bytes: 2501,
            conn_state: ConnState::SF,
            local_orig: Some(true),
            local_resp: Some(false),
            missed_bytes: 0,
            history,
            orig_pkts: 25,
            orig_ip_bytes: 3981,
            resp_pkts: 20,
            resp_ip_bytes: 3549,
            tunnel_parents: [None, None],
            ip_proto: 6,
            community_id: CommunityId::default(),
        }
    }
}
