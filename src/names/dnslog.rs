//! dns.log: DNS messages read at dispatch into compact [`DnsMsg`] values, and matched into
//! Zeek's query/reply sessions by the worker that owns the connection ([`DnsTracker`]), so that
//! a dns.log record carries its connection's conn.log uid.
//!
//! The matching follows Zeek 8's `base/protocols/dns/main.zeek`:
//!
//! - Only connections whose responder port is DNS's (53/udp, 53/tcp, 137/udp, 5353/udp,
//!   5355/udp) are analysed, and only messages with opcode query, notify or dynamic update.
//! - A message to a multicast address (224.0.0.0/4, ff00::/8) is its own record, logged at once.
//! - Otherwise a query waits (the first in `pending_query`, later ones in a FIFO per
//!   transaction id) until a reply with its id arrives; a reply without a waiting query waits
//!   for a query the same way. A query/reply pair is logged when the second one is read.
//!   Whatever still waits is logged when the connection ends (its conn.log record is emitted).
//! - The request fills `query` (lower-cased; NetBIOS names decoded; the last question read,
//!   each name read as leniently as Zeek's `ExtractName`), class, type, `RD`, `TC` and `Z`; the reply fills `rcode` and, from answer-section records only, `AA`, `RA`,
//!   `rtt` (first answer's time minus `ts`, unset when zero) and `answers`/`TTLs` in Zeek's
//!   text forms. A reply with no records at all marks the query `rejected`, as does a non-zero
//!   rcode in a reply without questions.
//!
//! Differences, all bounded by design: at most [`ANSWERS_CAP`](crate::types::dns::ANSWERS_CAP)
//! answers and 4 KiB of answer text per record (a longer answer is left out and counted);
//! DNS over TCP is read only from segments that hold whole messages; dynamic-update sections
//! are not turned into answers; at most [`PENDING_CAP`] waiting queries (and as many replies)
//! per connection, the oldest logged unmatched beyond that (Zeek allows 50 per id).

use super::Name;
use crate::decode::dns::{rtype, Message};
use crate::flow::key::{Endpoints, FlowKey};
use crate::flow::Conn;
use crate::types::dns::{DnsAnswers, DnsRecord, TextWriter};
use crate::types::record::{ConnRecord, Transport};
use hashbrown::HashMap;
use std::net::IpAddr;

/// Waiting queries (and, separately, waiting replies) kept per connection.
pub const PENDING_CAP: usize = 16;
/// Sessions waiting for their other half, over every connection of one worker.
const SLAB_CAP: usize = 1024;
/// Connections with DNS state at once, per worker.
const MAX_CONNS: usize = 65_536;
/// Zeek's `dns_max_queries`: a message claiming more questions is not DNS.
const MAX_QUERIES: u16 = 25;

/// The UDP ports Zeek's DNS analyzer is registered for.
const UDP_PORTS: [u16; 4] = [53, 137, 5353, 5355];

/// True when a packet between these ports may carry a message Zeek's DNS analyzer reads (one
/// comparison chain: called on every UDP and TCP packet at dispatch).
#[inline]
pub fn dns_ports(ip_proto: u8, src_port: u16, dst_port: u16) -> bool {
    match ip_proto {
        17 => UDP_PORTS.contains(&src_port) || UDP_PORTS.contains(&dst_port),
        6 => src_port == 53 || dst_port == 53,
        _ => false,
    }
}

/// The last question of a message.
#[derive(Clone, Copy, Debug)]
pub struct DnsQuestion {
    /// Lower-cased, as Zeek's `dns_request` gives it.
    pub name: Name,
    pub qtype: u16,
    pub qclass: u16,
}

/// One DNS message as the owner needs it for dns.log: header, last question, and the answer
/// section already in Zeek's text forms. Fixed-size and `Copy`.
#[derive(Clone, Copy, Debug)]
pub struct DnsMsg {
    pub ts_ns: u64,
    /// The packet's endpoints (its key names the connection).
    pub ep: Endpoints,
    pub id: u16,
    pub flags: u16,
    pub qdcount: u16,
    pub ancount: u16,
    pub nscount: u16,
    pub arcount: u16,
    /// The question section parsed (Zeek then raises `dns_request` or `dns_rejected`).
    pub questions_ok: bool,
    pub question: Option<DnsQuestion>,
    /// An answer-section record went through Zeek's `do_reply` (sets `AA`, `RA`, `rtt`).
    pub answered: bool,
    /// The owner name of the first such record, as spelt (`query` of a reply-only record).
    pub first_owner: Name,
    pub answers: DnsAnswers,
}

impl DnsMsg {
    pub fn is_response(&self) -> bool {
        self.flags & 0x8000 != 0
    }

    pub fn opcode(&self) -> u8 {
        ((self.flags >> 11) & 0xf) as u8
    }

    pub fn rcode(&self) -> u8 {
        (self.flags & 0xf) as u8
    }
}

/// Reads one DNS message (the payload of a UDP datagram, or one TCP-framed message). `None`
/// when it is shorter than a header (Zeek raises no event for it).
pub fn parse_message(payload: &[u8], ts_ns: u64, ep: Endpoints) -> Option<DnsMsg> {
    let m = Message::new_checked(payload).ok()?;
    let mut msg = DnsMsg {
        ts_ns,
        ep,
        id: m.id(),
        flags: m.flags(),
        qdcount: m.qdcount(),
        ancount: m.ancount(),
        nscount: m.nscount(),
        arcount: m.arcount(),
        questions_ok: false,
        question: None,
        answered: false,
        first_owner: Name::default(),
        answers: DnsAnswers::default(),
    };
    if msg.qdcount > MAX_QUERIES {
        return Some(msg);
    }
    let b = m.bytes();
    let mut pos = 12;
    let mut name = Name::default();
    let netbios = ep.src_port == 137 || ep.dst_port == 137;
    for _ in 0..msg.qdcount {
        // Zeek reads a question's name leniently (a bad label or pointer ends the name) and
        // only gives up when no type and class follow.
        let end = zeek_name(b, pos, netbios, &mut name);
        let Some(f) = b.get(end..end + 4) else {
            return Some(msg);
        };
        msg.question = Some(DnsQuestion {
            name,
            qtype: u16::from_be_bytes([f[0], f[1]]),
            qclass: u16::from_be_bytes([f[2], f[3]]),
        });
        pos = end + 4;
    }
    msg.questions_ok = true;
    // Only replies' answers reach the log; dynamic updates label their sections otherwise.
    if !msg.is_response() || msg.opcode() == 5 {
        return Some(msg);
    }
    let mut owner = Name::default();
    for _ in 0..msg.ancount {
        let Ok(end) = m.read_name_raw(pos, &mut owner) else {
            break;
        };
        let Some(f) = b.get(end..end + 10) else {
            break;
        };
        let rt = u16::from_be_bytes([f[0], f[1]]);
        let ttl = u32::from_be_bytes([f[4], f[5], f[6], f[7]]);
        let rdlen = usize::from(u16::from_be_bytes([f[8], f[9]]));
        let rd_off = end + 10;
        let Some(rdata) = b.get(rd_off..rd_off + rdlen) else {
            break;
        };
        pos = rd_off + rdlen;
        if answer(&m, rt, ttl, &owner, rd_off, rdata, &mut msg.answers) {
            if !msg.answered {
                msg.first_owner = owner;
            }
            msg.answered = true;
        }
    }
    Some(msg)
}

/// Zeek's `DNS_Interpreter::ExtractName` for a question: reads the name at `start` into `out`
/// (lower-cased, without the trailing dot) and returns where the question's type follows.
/// Zeek never fails a name: a label longer than 63 bytes (except for NetBIOS), one that runs
/// past the message or past its 512-byte buffer, or a compression pointer that does not point
/// before its own label ends the name where it stands, and the question fails only when four
/// bytes of type and class do not follow. A pointer's target is read no further than the
/// pointer itself, so every jump shrinks the window and the loop ends.
fn zeek_name(b: &[u8], start: usize, netbios: bool, out: &mut Name) -> usize {
    let mut buf = [0u8; 512];
    // Room left in Zeek's 513-byte buffer (one byte is kept for the terminator).
    let mut room = 512usize;
    let mut n = 0usize;
    let mut pos = start;
    // The end of the bytes the current (possibly pointed-to) part may read.
    let mut limit = b.len();
    // Where the question continues: after the first pointer, or where reading stopped.
    let mut resume = None;
    loop {
        if pos >= limit {
            break;
        }
        let label_at = pos;
        let len = usize::from(b[pos]);
        pos += 1;
        if pos >= limit || len == 0 {
            break;
        }
        if len & 0xc0 == 0xc0 {
            let target = ((len & 0x3f) << 8) | usize::from(b[pos]);
            pos += 1;
            if resume.is_none() {
                resume = Some(pos);
            }
            if target >= label_at {
                break;
            }
            pos = target;
            limit = label_at;
            continue;
        }
        if len > limit - pos {
            pos = limit;
            break;
        }
        if (len > 63 && !netbios) || len >= room {
            break;
        }
        buf[n..n + len].copy_from_slice(&b[pos..pos + len]);
        buf[n + len] = b'.';
        n += len + 1;
        room -= len + 1;
        pos += len;
    }
    if n >= 2 && buf[n - 1] == b'.' {
        n -= 1;
    }
    out.clear();
    for &c in &buf[..n] {
        out.push_byte(c);
    }
    resume.unwrap_or(pos)
}

/// Appends the text Zeek's `do_reply` logs for one answer record; returns whether `do_reply`
/// runs for its type at all (HINFO, CAA, SVCB/HTTPS, OPT, TKEY, TSIG: no).
fn answer(
    m: &Message<&[u8]>,
    rt: u16,
    ttl: u32,
    owner: &Name,
    rd_off: usize,
    rdata: &[u8],
    out: &mut DnsAnswers,
) -> bool {
    let mut target = Name::default();
    // A name inside the record data, after `skip` fixed bytes.
    let name_at = |skip: usize, target: &mut Name| -> bool {
        rdata.len() > skip && m.read_name_raw(rd_off + skip, target).is_ok()
    };
    match rt {
        rtype::A | rtype::AAAA => {
            let addr: Option<IpAddr> = if let Ok(v4) = <[u8; 4]>::try_from(rdata) {
                Some(IpAddr::from(v4))
            } else if let Ok(v6) = <[u8; 16]>::try_from(rdata) {
                Some(IpAddr::from(v6))
            } else {
                None
            };
            if let Some(a) = addr {
                out.push_with(ttl, |w| w.addr(a));
            }
            true
        }
        rtype::NS | rtype::CNAME | rtype::PTR => {
            if name_at(0, &mut target) {
                out.push(target.as_bytes(), ttl);
            }
            true
        }
        rtype::MX => {
            if name_at(2, &mut target) {
                out.push(target.as_bytes(), ttl);
            }
            true
        }
        rtype::SRV => {
            if name_at(6, &mut target) {
                out.push(target.as_bytes(), ttl);
            }
            true
        }
        // SOA: the primary name server.
        rtype::SOA => {
            if name_at(0, &mut target) {
                out.push(target.as_bytes(), ttl);
            }
            true
        }
        // TXT and SPF: `TXT <len> <string>` per character-string, space-separated.
        rtype::TXT | 99 => {
            let tag: &[u8] = if rt == 99 { b"SPF " } else { b"TXT " };
            out.push_with(ttl, |w| char_strings(w, tag, rdata));
            true
        }
        // WKS: Zeek's reply text is empty, so nothing is added (but AA/RA/rtt are set).
        11 => true,
        // NAPTR: order, preference, flags, service, then regexp and replacement.
        35 => {
            naptr(m, rd_off, rdata, ttl, out);
            true
        }
        // RRSIG: type covered and signer.
        46 => {
            if rdata.len() >= 18 {
                let covered = u16::from_be_bytes([rdata[0], rdata[1]]);
                let ok = m.read_name_raw(rd_off + 18, &mut target).is_ok();
                out.push_with(ttl, |w| {
                    w.bytes(b"RRSIG ");
                    w.number(u64::from(covered));
                    w.byte(b' ');
                    if !ok || target.is_empty() {
                        w.bytes(b"<Root>");
                    } else {
                        w.bytes(target.as_bytes());
                    }
                });
            }
            true
        }
        // DNSKEY: the algorithm.
        48 => {
            if rdata.len() >= 4 {
                out.push_with(ttl, |w| {
                    w.bytes(b"DNSKEY ");
                    w.number(u64::from(rdata[3]));
                });
            }
            true
        }
        // DS: algorithm and digest type.
        43 => {
            if rdata.len() >= 4 {
                out.push_with(ttl, |w| {
                    w.bytes(b"DS ");
                    w.number(u64::from(rdata[2]));
                    w.byte(b' ');
                    w.number(u64::from(rdata[3]));
                });
            }
            true
        }
        // NSEC: the owner and the next name.
        47 => {
            if name_at(0, &mut target) {
                out.push_with(ttl, |w| {
                    w.bytes(b"NSEC ");
                    w.bytes(owner.as_bytes());
                    w.byte(b' ');
                    w.bytes(target.as_bytes());
                });
            }
            true
        }
        50 => {
            out.push(b"NSEC3", ttl);
            true
        }
        51 => {
            out.push(b"NSEC3PARAM", ttl);
            true
        }
        65534 => {
            out.push(b"BIND9 signing signal", ttl);
            true
        }
        // SSHFP: the fingerprint in hex.
        44 => {
            if rdata.len() >= 2 {
                out.push_with(ttl, |w| {
                    w.bytes(b"SSHFP: ");
                    for &x in &rdata[2..] {
                        const HEX: &[u8; 16] = b"0123456789abcdef";
                        w.byte(HEX[usize::from(x >> 4)]);
                        w.byte(HEX[usize::from(x & 0xf)]);
                    }
                });
            }
            true
        }
        // LOC: size and precisions.
        29 => {
            if rdata.len() >= 4 {
                out.push_with(ttl, |w| {
                    w.bytes(b"LOC:  ");
                    w.number(u64::from(rdata[1]));
                    w.byte(b' ');
                    w.number(u64::from(rdata[2]));
                    w.byte(b' ');
                    w.number(u64::from(rdata[3]));
                });
            }
            true
        }
        13 | 41 | 64 | 65 | 249 | 250 | 257 => false,
        other => {
            out.push_with(ttl, |w| {
                w.bytes(b"<unknown type=");
                w.number(u64::from(other));
                w.byte(b'>');
            });
            true
        }
    }
}

/// `TXT 5 hello TXT 3 abc`: every character-string of the record data.
fn char_strings(w: &mut TextWriter<'_>, tag: &[u8], mut rdata: &[u8]) {
    let mut first = true;
    while let Some((&len, rest)) = rdata.split_first() {
        let n = usize::from(len).min(rest.len());
        if !first {
            w.byte(b' ');
        }
        first = false;
        w.bytes(tag);
        w.number(n as u64);
        w.byte(b' ');
        w.bytes(&rest[..n]);
        rdata = &rest[n..];
    }
}

fn naptr(m: &Message<&[u8]>, rd_off: usize, rdata: &[u8], ttl: u32, out: &mut DnsAnswers) {
    if rdata.len() < 4 {
        return;
    }
    let order = u16::from_be_bytes([rdata[0], rdata[1]]);
    let pref = u16::from_be_bytes([rdata[2], rdata[3]]);
    let mut at = 4;
    let mut strs: [&[u8]; 3] = [&[]; 3];
    for s in &mut strs {
        let Some(&len) = rdata.get(at) else { return };
        let Some(v) = rdata.get(at + 1..at + 1 + usize::from(len)) else {
            return;
        };
        *s = v;
        at += 1 + usize::from(len);
    }
    let mut repl = Name::default();
    if m.read_name_raw(rd_off + at, &mut repl).is_err() {
        return;
    }
    out.push_with(ttl, |w| {
        w.bytes(b"NAPTR ");
        w.number(u64::from(order));
        w.byte(b' ');
        w.number(u64::from(pref));
        w.byte(b' ');
        w.bytes(strs[0]);
        w.byte(b' ');
        w.bytes(strs[1]);
        w.byte(b' ');
        w.bytes(strs[2]);
        if !repl.is_empty() {
            if !strs[2].is_empty() {
                w.byte(b' ');
            }
            w.bytes(repl.as_bytes());
        }
    });
}

/// Zeek's `decode_netbios_name`: a 32-letter first-level encoded name back to its 15
/// characters (the 16th is the name type), up to the first character that is neither
/// alphanumeric nor punctuation (the space padding). `None` when `name` is not 32 letters.
pub fn decode_netbios(name: &[u8]) -> Option<Name> {
    if name.len() != 32 {
        return None;
    }
    let mut out = Name::default();
    for pair in name.chunks(2).take(15) {
        let hi = pair[0].to_ascii_uppercase().wrapping_sub(b'A');
        let lo = pair[1].to_ascii_uppercase().wrapping_sub(b'A');
        let c = (hi << 4).wrapping_add(lo);
        // Zeek compares a signed char: bytes from 0x80 count as below 3 and pass.
        if c.is_ascii_alphanumeric() || c.is_ascii_punctuation() || !(3..0x80).contains(&c) {
            out.push_raw(c);
        } else {
            break;
        }
    }
    (!out.is_empty()).then_some(out)
}

/// What the tracker did (plain integers: one tracker per worker).
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct DnsLogCounters {
    /// DNS messages applied.
    pub messages: u64,
    /// dns.log records produced.
    pub records: u64,
    /// Messages whose connection this worker no longer (or never) tracked.
    pub no_conn: u64,
    /// Sessions logged unmatched early because a bound was reached (per-connection FIFO,
    /// sessions in memory, connections with DNS state).
    pub overflow: u64,
}

const NIL: u32 = u32::MAX;

/// Waiting sessions of one kind for one connection, oldest first.
#[derive(Clone, Copy)]
struct Fifo {
    n: u8,
    items: [(u16, u32); PENDING_CAP],
}

impl Default for Fifo {
    fn default() -> Fifo {
        Fifo {
            n: 0,
            items: [(0, NIL); PENDING_CAP],
        }
    }
}

impl Fifo {
    /// Appends; hands back the oldest slot when full.
    fn push(&mut self, id: u16, slot: u32) -> Option<u32> {
        let mut evicted = None;
        if self.n as usize == PENDING_CAP {
            evicted = Some(self.remove(0).1);
        }
        self.items[self.n as usize] = (id, slot);
        self.n += 1;
        evicted
    }

    fn remove(&mut self, i: usize) -> (u16, u32) {
        let v = self.items[i];
        self.items.copy_within(i + 1..self.n as usize, i);
        self.n -= 1;
        v
    }

    /// The oldest session with this id.
    fn pop_id(&mut self, id: u16) -> Option<u32> {
        let i = self.items[..self.n as usize]
            .iter()
            .position(|&(x, _)| x == id)?;
        Some(self.remove(i).1)
    }

    fn pop_first(&mut self) -> Option<u32> {
        (self.n > 0).then(|| self.remove(0).1)
    }
}

/// One connection's waiting sessions (Zeek's `DNS::State`).
#[derive(Clone, Copy)]
struct ConnDns {
    pending_query: u32,
    queries: Fifo,
    replies: Fifo,
}

/// A session and what of it has been seen (Zeek's `saw_query`/`saw_reply`).
#[derive(Clone, Copy)]
struct Session {
    rec: DnsRecord,
    saw_query: bool,
    saw_reply: bool,
}

/// One worker's DNS sessions: matches queries and replies of the connections it owns and
/// produces dns.log records. Bounded: connections, sessions and per-connection FIFOs.
pub struct DnsTracker {
    conns: HashMap<FlowKey, ConnDns>,
    slab: Vec<Session>,
    free: Vec<u32>,
    /// The session of a message that is logged at once.
    scratch: Session,
    counters: DnsLogCounters,
}

impl Default for DnsTracker {
    fn default() -> DnsTracker {
        DnsTracker::new()
    }
}

fn is_multicast(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => v.is_multicast(),
        IpAddr::V6(v) => v.octets()[0] == 0xff,
    }
}

/// Whether Zeek's DNS analyzer runs on a connection with this responder port.
fn analysed(transport: Transport, resp_port: u16) -> bool {
    match transport {
        Transport::Udp => UDP_PORTS.contains(&resp_port),
        Transport::Tcp => resp_port == 53,
        _ => false,
    }
}

fn new_session(c: &Conn, id: u16, ts_ns: u64) -> Session {
    Session {
        rec: DnsRecord {
            ts_ns,
            uid: c.uid,
            orig_h: c.orig(),
            orig_p: c.orig_port(),
            resp_h: c.resp(),
            resp_p: c.resp_port(),
            proto: c.transport,
            trans_id: id,
            ..DnsRecord::default()
        },
        saw_query: false,
        saw_reply: false,
    }
}

/// Where the session a message belongs to lives.
enum Cur {
    Slot(u32),
    /// Not kept (`DnsTracker::scratch`): logged at the end of this message (multicast, or no
    /// room to wait).
    Scratch,
}

impl DnsTracker {
    pub fn new() -> DnsTracker {
        DnsTracker {
            conns: HashMap::with_capacity(256),
            slab: Vec::with_capacity(64),
            free: Vec::new(),
            scratch: Session {
                rec: DnsRecord::default(),
                saw_query: false,
                saw_reply: false,
            },
            counters: DnsLogCounters::default(),
        }
    }

    pub fn counters(&self) -> DnsLogCounters {
        self.counters
    }

    /// Stores a session; `None` when the sessions in memory are at their bound.
    fn store(&mut self, s: Session) -> Option<u32> {
        if let Some(i) = self.free.pop() {
            self.slab[i as usize] = s;
            return Some(i);
        }
        if self.slab.len() < SLAB_CAP {
            self.slab.push(s);
            return Some((self.slab.len() - 1) as u32);
        }
        None
    }

    fn release(&mut self, slot: u32, out: &mut impl FnMut(DnsRecord)) {
        self.free.push(slot);
        self.counters.records += 1;
        out(self.slab[slot as usize].rec);
    }

    /// Applies one message of connection `conn` (the owner's view of it, after the packet
    /// that carried the message went through the shard).
    pub fn on_message(
        &mut self,
        msg: &DnsMsg,
        conn: Option<&Conn>,
        out: &mut impl FnMut(DnsRecord),
    ) {
        let Some(c) = conn else {
            self.counters.no_conn += 1;
            return;
        };
        if !analysed(c.transport, c.resp_port()) || !matches!(msg.opcode(), 0 | 4 | 5) {
            return;
        }
        self.counters.messages += 1;
        let is_query = !msg.is_response();
        let id = msg.id;
        let cur = if is_multicast(c.resp()) {
            let mut s = new_session(c, id, msg.ts_ns);
            s.saw_query = true;
            s.saw_reply = true;
            self.scratch = s;
            Cur::Scratch
        } else {
            self.match_session(c, msg, is_query, out)
        };
        let s = match cur {
            Cur::Slot(i) => &mut self.slab[i as usize],
            Cur::Scratch => &mut self.scratch,
        };
        apply(s, c, msg, is_query);
        if s.saw_query && s.saw_reply {
            match cur {
                Cur::Slot(i) => self.release(i, out),
                Cur::Scratch => {
                    self.counters.records += 1;
                    out(self.scratch.rec);
                }
            }
        }
    }

    /// Zeek's `set_session`: the session this message belongs to.
    fn match_session(
        &mut self,
        c: &Conn,
        msg: &DnsMsg,
        is_query: bool,
        out: &mut impl FnMut(DnsRecord),
    ) -> Cur {
        let id = msg.id;
        if !self.conns.contains_key(&c.key) && self.conns.len() >= MAX_CONNS {
            // No room to wait: this message stands alone.
            self.counters.overflow += 1;
            let mut s = new_session(c, id, msg.ts_ns);
            s.saw_query = true;
            s.saw_reply = true;
            self.scratch = s;
            return Cur::Scratch;
        }
        let st = *self.conns.entry(c.key).or_insert(ConnDns {
            pending_query: NIL,
            queries: Fifo::default(),
            replies: Fifo::default(),
        });
        let mut st = st;
        let found = if is_query {
            st.replies.pop_id(id)
        } else if st.pending_query != NIL && self.slab[st.pending_query as usize].rec.trans_id == id
        {
            let q = st.pending_query;
            // Refill the fast path, preferring a query with the same id, to keep queue order.
            st.pending_query = st
                .queries
                .pop_id(id)
                .or_else(|| st.queries.pop_first())
                .unwrap_or(NIL);
            Some(q)
        } else {
            st.queries.pop_id(id)
        };
        let cur = match found {
            Some(slot) => Cur::Slot(slot),
            None => match self.store(new_session(c, id, msg.ts_ns)) {
                Some(slot) => {
                    let evicted = if !is_query {
                        st.replies.push(id, slot)
                    } else if st.pending_query == NIL {
                        st.pending_query = slot;
                        None
                    } else {
                        st.queries.push(id, slot)
                    };
                    if let Some(old) = evicted {
                        self.counters.overflow += 1;
                        self.release(old, out);
                    }
                    Cur::Slot(slot)
                }
                None => {
                    self.counters.overflow += 1;
                    let mut s = new_session(c, id, msg.ts_ns);
                    s.saw_query = true;
                    s.saw_reply = true;
                    self.scratch = s;
                    Cur::Scratch
                }
            },
        };
        self.conns.insert(c.key, st);
        cur
    }

    /// The connection `rec` describes has ended: every session still waiting is logged
    /// (Zeek's `finalize_dns`).
    pub fn conn_ended(&mut self, rec: &ConnRecord, out: &mut impl FnMut(DnsRecord)) {
        if self.conns.is_empty() || !analysed(rec.proto, rec.resp_p) {
            return;
        }
        let ep = Endpoints {
            ip_proto: rec.ip_proto,
            src: rec.orig_h,
            src_port: rec.orig_p,
            dst: rec.resp_h,
            dst_port: rec.resp_p,
            vlans: rec.vlans,
        };
        let Some(mut st) = self.conns.remove(&ep.key().0) else {
            return;
        };
        if st.pending_query != NIL {
            self.release(st.pending_query, out);
        }
        while let Some(s) = st.queries.pop_first() {
            self.release(s, out);
        }
        while let Some(s) = st.replies.pop_first() {
            self.release(s, out);
        }
    }

    /// Sessions waiting, over every connection (tests and stats).
    pub fn waiting(&self) -> usize {
        self.slab.len() - self.free.len()
    }
}

/// What one message's events do to its session (Zeek's `set_session` tail, `dns_request`,
/// `dns_rejected`, `do_reply` and the first `dns_end` handler).
fn apply(s: &mut Session, c: &Conn, msg: &DnsMsg, is_query: bool) {
    let r = &mut s.rec;
    let netbios = c.transport == Transport::Udp && (c.resp_port() == 137 || c.orig_port() == 137);
    if !is_query {
        r.rcode = Some(msg.rcode());
        if msg.rcode() != 0 && msg.qdcount == 0 {
            r.rejected = true;
        }
    }
    r.opcode = Some(msg.opcode());
    r.netbios = netbios;
    // Zeek raises `dns_request` (or `dns_rejected`) for each question it could read, before
    // a later one fails: the last question read counts even when the section did not parse.
    {
        if let Some(q) = &msg.question {
            if is_query {
                r.rd = msg.flags & 0x0100 != 0;
                r.tc = msg.flags & 0x0200 != 0;
                r.qclass = Some(q.qclass);
                r.qtype = Some(q.qtype);
                r.z = ((msg.flags >> 4) & 0x7) as u8;
                let decoded = if c.resp_port() == 137 && c.transport == Transport::Udp {
                    decode_netbios(q.name.as_bytes())
                } else {
                    None
                };
                r.query = Some(decoded.unwrap_or(q.name));
            } else if msg.ancount == 0 && msg.nscount == 0 && msg.arcount == 0 {
                r.rejected = true;
            }
        }
    }
    if !is_query && msg.answered {
        if r.query.is_none() {
            r.query = Some(msg.first_owner);
        }
        r.aa = msg.flags & 0x0400 != 0;
        r.ra = msg.flags & 0x0080 != 0;
        // Zeek sets rtt at the first answer and deletes it when zero, so a zero rtt is set
        // again by a later reply.
        if r.answered_ns.is_none_or(|at| at == r.ts_ns) {
            r.answered_ns = Some(msg.ts_ns);
        }
        r.answers.extend(&msg.answers);
    }
    if is_query {
        s.saw_query = true;
    } else {
        s.saw_reply = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netbios_names_decode_like_zeek() {
        // "WORKGROUP" padded with spaces, then the name type 0x1d.
        let mut enc = Vec::new();
        let mut raw = *b"WORKGROUP       ";
        raw[15] = 0x1d;
        for c in raw {
            enc.push(b'a' + (c >> 4));
            enc.push(b'a' + (c & 0xf));
        }
        assert_eq!(decode_netbios(&enc).unwrap().as_bytes(), b"WORKGROUP");
        assert!(decode_netbios(b"short").is_none());
    }

    fn ep() -> Endpoints {
        Endpoints {
            ip_proto: 17,
            src: "198.18.0.1".parse().unwrap(),
            src_port: 40000,
            dst: "198.18.0.53".parse().unwrap(),
            dst_port: 53,
            vlans: crate::flow::key::Vlans::NONE,
        }
    }

    /// A query header with `qd` questions, followed by `body`.
    fn query(qd: u16, body: &[u8]) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x01, 0x00];
        m.extend_from_slice(&qd.to_be_bytes());
        m.extend_from_slice(&[0; 6]);
        m.extend_from_slice(body);
        m
    }

    fn qname(m: &[u8]) -> Option<String> {
        let msg = parse_message(m, 0, ep())?;
        msg.question
            .map(|q| String::from_utf8_lossy(q.name.as_bytes()).into_owned())
    }

    #[test]
    fn question_names_are_read_as_leniently_as_zeek() {
        // A plain name.
        let ok = query(1, b"\x03WWW\x07example\x03com\x00\x00\x01\x00\x01");
        assert_eq!(qname(&ok).as_deref(), Some("www.example.com"));
        // A compression pointer that points forward ends the name; type and class follow it.
        let fwd = query(1, b"\x04host\xc0\x30\x00\x01\x00\x01");
        assert_eq!(qname(&fwd).as_deref(), Some("host"));
        // A label longer than 63 bytes ends the name where it stands (what follows its
        // length byte is read as type and class).
        let mut long = b"\x02ab\x50".to_vec();
        long.extend_from_slice(&[b'x'; 84]);
        assert_eq!(qname(&query(1, &long)).as_deref(), Some("ab"));
        // One that runs past the message leaves no room for type and class.
        long.truncate(8);
        assert_eq!(qname(&query(1, &long)), None);
        // No room for the type and class: the question is not read.
        assert_eq!(qname(&query(1, b"\x04host\x00\x00\x01")), None);
        // A pointer back to an earlier question's name.
        let mut two = b"\x04host\x00\x00\x01\x00\x01".to_vec();
        two.extend_from_slice(b"\x03www\xc0\x0c\x00\x1c\x00\x01");
        let m = parse_message(&query(2, &two), 0, ep()).unwrap();
        assert_eq!(m.question.unwrap().name.as_bytes(), b"www.host");
        assert_eq!(m.question.unwrap().qtype, 28);
    }

    #[test]
    fn a_question_read_before_a_broken_one_still_names_the_session() {
        // Zeek raises `dns_request` for the first question before the second one fails.
        let mut body = b"\x04host\x00\x00\x01\x00\x01".to_vec();
        body.extend_from_slice(b"\x03www");
        let m = parse_message(&query(2, &body), 0, ep()).unwrap();
        assert!(!m.questions_ok);
        assert_eq!(m.question.unwrap().name.as_bytes(), b"host");
    }

    #[test]
    fn fifo_is_ordered_and_bounded() {
        let mut f = Fifo::default();
        for i in 0..PENDING_CAP as u32 {
            assert_eq!(f.push((i % 3) as u16, i), None);
        }
        assert_eq!(f.push(9, 99), Some(0));
        assert_eq!(f.pop_id(1), Some(1));
        assert_eq!(f.pop_id(1), Some(4));
        assert_eq!(f.pop_first(), Some(2));
    }
}
