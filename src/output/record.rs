//! The connection record, in Zeek 8's `conn.log` column order.
//!
//! Every type here is `Copy` and fixed-size so a record can cross a bounded SPSC queue without
//! allocating. Our own columns (`community_id`, then the names, then the context when
//! inventories are configured) come after Zeek's and never reuse a Zeek name.

use super::schema::{Field, FieldSink, LogRecord, Schema, ZeekScalar, ZeekType};
use super::zeek::micros_differ;
use crate::context::{ConnContext, ContextConfig, EndContext, STANDARD_COLUMNS};
use crate::flow::key::Vlans;
use crate::names::{Name, NameSource};
use std::net::IpAddr;
use std::sync::OnceLock;

/// A Zeek-style unique connection identifier: `C` followed by base62 digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Uid {
    len: u8,
    buf: [u8; 24],
}

impl Uid {
    /// Builds a uid from 96 bits of hash output, as `C` + base62 digits (like Zeek's).
    pub fn from_bits(hi: u64, lo: u32) -> Uid {
        const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut uid = Uid::default();
        uid.buf[0] = b'C';
        uid.len = 1;
        for mut part in [hi, u64::from(lo)] {
            let start = uid.len as usize;
            loop {
                uid.buf[uid.len as usize] = DIGITS[(part % 62) as usize];
                uid.len += 1;
                part /= 62;
                if part == 0 {
                    break;
                }
            }
            uid.buf[start..uid.len as usize].reverse();
        }
        uid
    }

    /// The uid as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and letters are ever written into `buf`.
        std::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("")
    }

    /// True for the default (never assigned) uid.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl std::fmt::Debug for Uid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Uid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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
/// (repeats are log-scaled), so real histories stay far below this.
pub const HISTORY_CAP: usize = 64;

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

/// A Community ID v1 string (`1:` + base64 of a SHA-1 digest: always 30 characters).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct CommunityId {
    len: u8,
    buf: [u8; 32],
}

impl CommunityId {
    /// Wraps an already formatted id; text longer than 32 bytes is cut.
    pub fn from_str_lossy(s: &str) -> CommunityId {
        let mut id = CommunityId::default();
        let n = s.len().min(id.buf.len());
        id.buf[..n].copy_from_slice(&s.as_bytes()[..n]);
        id.len = n as u8;
        id
    }

    /// The id as text (empty when not computed).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("")
    }
}

impl std::fmt::Debug for CommunityId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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

/// The names of both ends of a connection (filled in by the worker when the record is
/// produced; `flow` leaves them unknown).
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug)]
pub struct ConnNames {
    /// `orig_name` and `orig_name_src`.
    pub orig: HostName,
    /// `resp_name` and `resp_name_src`.
    pub resp: HostName,
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
    /// `community_id` (ours, after Zeek's columns): Community ID v1, seed 0.
    pub community_id: CommunityId,
    /// `orig_name`, `orig_name_src`, `resp_name`, `resp_name_src` (ours): the name each end
    /// had when the connection started and its source (`A`, `AAAA`, `CNAME`, `PTR`, `MDNS`,
    /// `LLMNR`, `SNI`, `HTTP`, `DHCP`); see `docs/names.md`.
    pub names: ConnNames,
    /// `orig_pod` ... `resp_vpc` and the extra `orig_<prefix>*`/`resp_<prefix>*` columns
    /// (ours, only when inventories are configured): what each end was when the connection
    /// started; see `docs/context.md`. Filled in by the worker like the names.
    pub context: ConnContext,
}

/// The `conn.log` columns: Zeek 8's, in its order, then ours.
pub static CONN: Schema = Schema::new(
    "conn",
    &[
        Field::new("ts", ZeekType::Time),
        Field::new("uid", ZeekType::String),
        Field::new("id.orig_h", ZeekType::Addr),
        Field::new("id.orig_p", ZeekType::Port),
        Field::new("id.resp_h", ZeekType::Addr),
        Field::new("id.resp_p", ZeekType::Port),
        Field::new("proto", ZeekType::Enum),
        Field::new("service", ZeekType::String),
        Field::new("duration", ZeekType::Interval),
        Field::new("orig_bytes", ZeekType::Count),
        Field::new("resp_bytes", ZeekType::Count),
        Field::new("conn_state", ZeekType::String),
        Field::new("local_orig", ZeekType::Bool),
        Field::new("local_resp", ZeekType::Bool),
        Field::new("missed_bytes", ZeekType::Count),
        Field::new("history", ZeekType::String),
        Field::new("orig_pkts", ZeekType::Count),
        Field::new("orig_ip_bytes", ZeekType::Count),
        Field::new("resp_pkts", ZeekType::Count),
        Field::new("resp_ip_bytes", ZeekType::Count),
        Field::new("tunnel_parents", ZeekType::Set(ZeekScalar::String)),
        Field::new("ip_proto", ZeekType::Count),
        Field::new("community_id", ZeekType::String),
        Field::new("orig_name", ZeekType::String),
        Field::new("orig_name_src", ZeekType::String),
        Field::new("resp_name", ZeekType::String),
        Field::new("resp_name_src", ZeekType::String),
    ],
);

/// The two columns Zeek's `frameworks/conn_key/vlan_fivetuple` adds to `conn_id_ctx`, which
/// conn.log writes right after `id.resp_p` (Zeek declares them `int`).
const VLAN_FIELDS: [Field; 2] = [
    Field::new("id.ctx.vlan", ZeekType::Int),
    Field::new("id.ctx.inner_vlan", ZeekType::Int),
];

/// Index of the first field after `id.resp_p` in [`CONN`].
const AFTER_RESP_P: usize = 6;

/// conn.log's columns with the VLAN key: [`CONN`]'s with [`VLAN_FIELDS`] after `id.resp_p`.
static CONN_VLAN: OnceLock<Schema> = OnceLock::new();

/// Whether conn.log has the VLAN columns in this process (set once, before the writer starts).
static VLAN_COLUMNS: OnceLock<bool> = OnceLock::new();

/// The conn.log columns before any context column.
fn base_schema() -> &'static Schema {
    if vlan_columns() {
        CONN_VLAN.get_or_init(|| {
            let fields: Vec<Field> = CONN.fields[..AFTER_RESP_P]
                .iter()
                .chain(VLAN_FIELDS.iter())
                .chain(CONN.fields[AFTER_RESP_P..].iter())
                .copied()
                .collect();
            // Leaked once per process: schemas are `'static` like the built-in ones.
            Schema::new("conn", Box::leak(fields.into_boxed_slice()))
        })
    } else {
        &CONN
    }
}

/// Whether conn.log has the VLAN columns. The first call fixes the choice: a log's columns
/// cannot change while it is written, so once a schema or record has been built without them
/// they cannot be added.
fn vlan_columns() -> bool {
    *VLAN_COLUMNS.get_or_init(|| false)
}

/// Gives conn.log the `id.ctx.vlan` and `id.ctx.inner_vlan` columns (`on`, with
/// `--conn-key vlan`) or not, for the rest of the process. Call before the writer starts and
/// before [`enable_context_columns`]; calling again with the same choice does nothing, and
/// asking for the other choice once the columns are fixed is an error.
pub fn enable_vlan_columns(on: bool) -> Result<(), String> {
    if *VLAN_COLUMNS.get_or_init(|| on) == on {
        Ok(())
    } else {
        Err(format!(
            "conn.log's columns were already fixed {} the VLAN columns in this process; choose \
             the connection key before anything writes conn.log",
            if on { "without" } else { "with" }
        ))
    }
}

/// Writes a name and its source, or two unset columns.
fn write_host<S: FieldSink>(h: &HostName, out: &mut S) {
    match h.source {
        Some(src) if !h.name.is_empty() => {
            out.string(h.name.as_bytes());
            out.string(src.as_str().as_bytes());
        }
        _ => {
            out.unset();
            out.unset();
        }
    }
}

/// conn.log's columns when inventories are configured: [`CONN`]'s, then the context
/// columns, and how many extra columns each end has. Set once per process (a log's columns
/// cannot change while it is written).
static CONN_WITH_CONTEXT: OnceLock<(Schema, usize)> = OnceLock::new();

/// Adds the context columns of `cfg` to conn.log for the rest of the process. Call before the
/// writer starts; calling again with the same columns does nothing, with others is an error.
pub fn enable_context_columns(cfg: &ContextConfig) -> Result<(), String> {
    let names = cfg.column_names();
    let mut fresh = false;
    let (schema, _) = CONN_WITH_CONTEXT.get_or_init(|| {
        fresh = true;
        let fields: Vec<Field> = base_schema()
            .fields
            .iter()
            .copied()
            .chain(names.iter().map(|n| {
                // Leaked once per process: schemas are `'static` like the built-in ones.
                let name: &'static str = Box::leak(n.clone().into_boxed_str());
                Field::new(name, ZeekType::String)
            }))
            .collect();
        (
            Schema::new("conn", Box::leak(fields.into_boxed_slice())),
            cfg.extra.len(),
        )
    });
    let same = schema.fields[base_schema().fields.len()..]
        .iter()
        .map(|f| f.name)
        .eq(names.iter().map(String::as_str));
    if fresh || same {
        Ok(())
    } else {
        Err(
            "conn.log already has other context columns in this process; the columns are \
             fixed once set"
                .into(),
        )
    }
}

/// Writes one end's columns `range`, each value or unset.
fn write_context_columns<S: FieldSink>(
    end: &EndContext,
    range: std::ops::Range<usize>,
    out: &mut S,
) {
    let cols = end.columns();
    for v in &cols[range] {
        match v {
            Some(v) => out.string(v),
            None => out.unset(),
        }
    }
}

impl LogRecord for ConnRecord {
    fn schema() -> &'static Schema {
        match CONN_WITH_CONTEXT.get() {
            Some((s, _)) => s,
            None => base_schema(),
        }
    }

    fn write_fields<S: FieldSink>(&self, out: &mut S) {
        out.time(self.ts_ns);
        out.string(self.uid.as_str().as_bytes());
        out.addr(self.orig_h);
        out.port(self.orig_p);
        out.addr(self.resp_h);
        out.port(self.resp_p);
        if vlan_columns() {
            for id in [self.vlans.outer, self.vlans.inner] {
                match id {
                    Some(v) => out.int(i64::from(v)),
                    None => out.unset(),
                }
            }
        }
        out.enumeration(self.proto.as_str());
        if self.service.is_empty() {
            out.unset();
        } else {
            // Zeek 8 logs `service` as one string with the names joined by commas. Four
            // names of at most 8 bytes fit this stack buffer, so nothing allocates.
            let mut buf = [0u8; 64];
            let mut n = 0;
            for s in self.service.iter() {
                let name = s.as_str().as_bytes();
                let sep = usize::from(n > 0);
                if n + sep + name.len() > buf.len() {
                    break;
                }
                if sep == 1 {
                    buf[n] = b',';
                }
                buf[n + sep..n + sep + name.len()].copy_from_slice(name);
                n += sep + name.len();
            }
            out.string(&buf[..n]);
        }
        // Zeek leaves `duration` and the byte counts unset when the duration is zero (in its
        // microsecond view of time).
        let end = self.ts_ns.saturating_add(self.duration_ns);
        if self.duration_ns != 0 && micros_differ(self.ts_ns, end) {
            out.interval_between(self.ts_ns, end);
            out.count(self.orig_bytes);
            out.count(self.resp_bytes);
        } else {
            out.unset();
            out.unset();
            out.unset();
        }
        out.string(self.conn_state.as_str().as_bytes());
        match self.local_orig {
            Some(v) => out.bool(v),
            None => out.unset(),
        }
        match self.local_resp {
            Some(v) => out.bool(v),
            None => out.unset(),
        }
        out.count(self.missed_bytes);
        if self.history.is_empty() {
            out.unset();
        } else {
            out.string(self.history.as_str().as_bytes());
        }
        out.count(self.orig_pkts);
        out.count(self.orig_ip_bytes);
        out.count(self.resp_pkts);
        out.count(self.resp_ip_bytes);
        if self.tunnel_parents.iter().all(Option::is_none) {
            out.unset();
        } else {
            out.strings(
                self.tunnel_parents
                    .iter()
                    .flatten()
                    .map(|u| u.as_str().as_bytes()),
            );
        }
        out.count(u64::from(self.ip_proto));
        let cid = self.community_id.as_str();
        if cid.is_empty() {
            out.unset();
        } else {
            out.string(cid.as_bytes());
        }
        write_host(&self.names.orig, out);
        write_host(&self.names.resp, out);
        if let Some((_, extra)) = CONN_WITH_CONTEXT.get() {
            let std = STANDARD_COLUMNS.len();
            write_context_columns(&self.context.orig, 0..std, out);
            write_context_columns(&self.context.resp, 0..std, out);
            write_context_columns(&self.context.orig, std..std + extra, out);
            write_context_columns(&self.context.resp, std..std + extra, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_starts_with_c_and_is_base62() {
        let uid = Uid::from_bits(u64::MAX, u32::MAX);
        assert!(uid.as_str().starts_with('C'));
        assert!(uid.as_str()[1..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(Uid::from_bits(0, 0).as_str(), "C00");
    }

    #[test]
    fn service_list_keeps_order_and_dedups() {
        let mut s = ServiceList::default();
        s.push(Service::Imap);
        s.push(Service::Ssl);
        s.push(Service::Imap);
        let names: Vec<_> = s.iter().map(Service::as_str).collect();
        assert_eq!(names, ["imap", "ssl"]);
    }
}
