//! Replication without a manager: each worker runs a [`NameNode`] that owns a full
//! [`Replica`], inserts the evidence of the flows it owns, and pushes every new or changed
//! mapping to every other worker over its own bounded SPSC queues (a full mesh of N·(N−1)
//! queues, one producer and one consumer each). Unchanged mappings are not re-sent until half
//! their lifetime has passed; a token bucket per sender, driven by packet time, bounds the
//! rate; a full queue drops the message and counts it (live) or, offline, waits while
//! draining its own inbound queues, which can never deadlock two waiting workers.
//!
//! Offline ordering: evidence carries the reader's clock at the frame that proved it (the
//! largest packet time so far, which only grows along the capture), and each worker publishes
//! on a [`Progress`] board how far along that clock it has got. A connection that started at
//! `t` is named from evidence whose clock is at most `t + tolerance`, and only once every
//! worker has got past that clock and the queues are drained; so the names in a record are a
//! function of the capture, whatever the number of workers.

use super::cache::{Found, Inserted, Replica};
use super::{bucket::TokenBucket, Evidence, Name, NameSource, NamesConfig, OwnConn};
use crate::flow::LocalNets;
use crate::types::record::{ConnNames, ConnRecord, HostName, NameList};
use crate::types::spsc::{self, Backoff, Consumer, Producer};
use crossbeam_utils::CachePadded;
use hashbrown::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// One worker's ends of the replication mesh.
pub struct NodeLinks {
    /// Indexed by the receiving worker; `None` for this worker itself.
    pub to_others: Vec<Option<Producer<Evidence>>>,
    pub from_others: Vec<Consumer<Evidence>>,
}

/// The full mesh for `n` workers: element `w` holds worker `w`'s ends.
pub fn links(n: usize, capacity: usize) -> Vec<NodeLinks> {
    let mut out: Vec<NodeLinks> = (0..n)
        .map(|_| NodeLinks {
            to_others: Vec::with_capacity(n),
            from_others: Vec::with_capacity(n.saturating_sub(1)),
        })
        .collect();
    for from in 0..n {
        for to in 0..n {
            if from == to {
                out[from].to_others.push(None);
            } else {
                let (p, c) = spsc::channel(capacity);
                out[from].to_others.push(Some(p));
                out[to].from_others.push(c);
            }
        }
    }
    out
}

/// How far along the reader's clock each offline worker has got, and how far the reader has.
/// Written once per message batch (never per packet) and read by workers deciding whether a
/// record may be named yet.
pub struct Progress {
    workers: Vec<CachePadded<AtomicU64>>,
    reader: CachePadded<AtomicU64>,
}

impl Progress {
    pub fn new(n: usize) -> Arc<Progress> {
        Arc::new(Progress {
            workers: (0..n)
                .map(|_| CachePadded::new(AtomicU64::new(0)))
                .collect(),
            reader: CachePadded::new(AtomicU64::new(0)),
        })
    }

    /// The reader has handed over every message of the frames whose clock is below `clk`.
    pub fn reader_at(&self, clk: u64) {
        self.reader.store(clk, Ordering::Release);
    }

    pub fn reader(&self) -> u64 {
        self.reader.load(Ordering::Acquire)
    }

    /// Worker `w` has handled (and replicated) every message of the frames whose clock is
    /// below `clk`. `u64::MAX` once it has finished.
    pub fn worker_at(&self, w: usize, clk: u64) {
        let slot = &self.workers[w];
        if slot.load(Ordering::Relaxed) < clk {
            slot.store(clk, Ordering::Release);
        }
    }

    /// True when every worker but `me` has handled every frame whose clock is `clk` or less.
    pub fn others_past(&self, me: usize, clk: u64) -> bool {
        self.workers
            .iter()
            .enumerate()
            .all(|(w, s)| w == me || s.load(Ordering::Acquire) > clk)
    }
}

/// What to do when a replication queue is full.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MeshPolicy {
    /// Drop the message and count it (live: the packet path never waits).
    Drop,
    /// Wait, draining this worker's own inbound queues meanwhile (offline).
    Wait,
}

/// One worker's counters (plain integers: one node per thread).
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct NodeCounters {
    /// Evidence of this worker's own flows, per source.
    pub evidence: [u64; 9],
    /// Messages pushed to another worker (one per receiving worker).
    pub sent: u64,
    /// Messages received from other workers.
    pub received: u64,
    /// Refreshes not re-sent because the others already hold the mapping.
    pub deduplicated: u64,
    /// Mappings not replicated because the token bucket was empty.
    pub rate_limited: u64,
    /// Messages lost to full queues.
    pub dropped: u64,
    /// Connections named (looked up).
    pub conns: u64,
    /// Connections with at least one name.
    pub conns_named: u64,
    pub orig_lookups: u64,
    pub orig_hits: u64,
    pub resp_lookups: u64,
    pub resp_hits: u64,
    pub local_lookups: u64,
    pub local_hits: u64,
    pub nonlocal_lookups: u64,
    pub nonlocal_hits: u64,
    /// Ends named with the name their connection itself carried (SNI, HTTP Host).
    pub own_named: u64,
    /// Connections' own names not remembered because the owner's table was full.
    pub own_dropped: u64,
}

impl NodeCounters {
    pub fn add(&mut self, o: &NodeCounters) {
        for (a, b) in self.evidence.iter_mut().zip(o.evidence) {
            *a += b;
        }
        self.sent += o.sent;
        self.received += o.received;
        self.deduplicated += o.deduplicated;
        self.rate_limited += o.rate_limited;
        self.dropped += o.dropped;
        self.conns += o.conns;
        self.conns_named += o.conns_named;
        self.orig_lookups += o.orig_lookups;
        self.orig_hits += o.orig_hits;
        self.resp_lookups += o.resp_lookups;
        self.resp_hits += o.resp_hits;
        self.local_lookups += o.local_lookups;
        self.local_hits += o.local_hits;
        self.nonlocal_lookups += o.nonlocal_lookups;
        self.nonlocal_hits += o.nonlocal_hits;
        self.own_named += o.own_named;
        self.own_dropped += o.own_dropped;
    }
}

/// Connections' own names beyond this many per worker are not remembered (counted as
/// `own_dropped`); about 300 bytes each, so at most some 5 MiB per worker.
pub const OWN_MAX: usize = 16_384;

/// An own name older than this (by the evidence's packet time) may be forgotten when the
/// table is full: its connection has most likely ended without a record reaching it.
const OWN_RETAIN_NS: u64 = 3_600_000_000_000;

/// The name a connection itself carried, as its owner saw it.
#[derive(Clone, Copy, Debug)]
struct OwnName {
    name: Name,
    source: NameSource,
    ts_ns: u64,
}

/// Key of a connection's own name: (client, client port, server, server port, IP protocol).
type OwnKey = (IpAddr, u16, IpAddr, u16, u8);

/// The owner's memory of "this connection's own name": the SNI of its ClientHello or the Host
/// of its first HTTP request, keyed by the connection, set when such evidence arrives for a
/// flow this worker owns and taken when the connection's record is named. It lives beside
/// the flow table rather than in it, so a flow entry does not grow by a name; only
/// connections that carried a name have an entry. Both directions and every packet of a
/// connection reach its owner, in capture order, before its record is emitted, so what it
/// holds for a record never depends on the number of workers.
#[derive(Default)]
pub struct OwnNames {
    map: HashMap<OwnKey, OwnName>,
}

impl OwnNames {
    /// Remembers `ev`'s name for its connection; the first name a connection carried is kept
    /// (the Host of its first request). False when the table is full.
    fn remember(&mut self, ev: &Evidence, own: OwnConn) -> bool {
        let Some(client) = ev.client else {
            return true;
        };
        let key = (
            client,
            own.client_port,
            ev.addr,
            own.server_port,
            own.ip_proto,
        );
        if let Some(old) = self.map.get(&key) {
            // A name from long before is a previous connection's whose record never came.
            if old.ts_ns.saturating_add(OWN_RETAIN_NS) >= ev.ts_ns {
                return true;
            }
        } else if self.map.len() >= OWN_MAX {
            let horizon = ev.ts_ns.saturating_sub(OWN_RETAIN_NS);
            self.map.retain(|_, v| v.ts_ns >= horizon);
            if self.map.len() >= OWN_MAX {
                return false;
            }
        }
        self.map.insert(
            key,
            OwnName {
                name: ev.name,
                source: ev.source,
                ts_ns: ev.ts_ns,
            },
        );
        true
    }

    /// The own name of `rec`'s connection, if one was carried between its first and last
    /// packet, and which end it names (`true`: the responder). Taken out of the table; a
    /// name older than the connection is dropped, one newer (a later connection on the same
    /// ports) stays.
    fn take(&mut self, rec: &ConnRecord) -> Option<(bool, OwnName)> {
        if self.map.is_empty() {
            return None;
        }
        let proto = rec.ip_proto;
        let end = rec.ts_ns.saturating_add(rec.duration_ns);
        for (resp, key) in [
            (
                true,
                (rec.orig_h, rec.orig_p, rec.resp_h, rec.resp_p, proto),
            ),
            (
                false,
                (rec.resp_h, rec.resp_p, rec.orig_h, rec.orig_p, proto),
            ),
        ] {
            let Some(o) = self.map.get(&key).copied() else {
                continue;
            };
            if o.ts_ns > end {
                continue;
            }
            self.map.remove(&key);
            if o.ts_ns >= rec.ts_ns {
                return Some((resp, o));
            }
        }
        None
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// One worker's replica and its ends of the mesh.
pub struct NameNode {
    replica: Replica,
    out: Vec<Producer<Evidence>>,
    inbound: Vec<Consumer<Evidence>>,
    bucket: TokenBucket,
    policy: MeshPolicy,
    local: LocalNets,
    tolerance_ns: u64,
    capacity: usize,
    counters: NodeCounters,
    own: OwnNames,
    /// How many names `orig_names`/`resp_names` hold at most.
    list_max: usize,
}

impl NameNode {
    /// A node over its mesh ends; `local` splits hit rates into local and non-local.
    pub fn new(
        cfg: &NamesConfig,
        links: NodeLinks,
        policy: MeshPolicy,
        local: LocalNets,
    ) -> NameNode {
        NameNode {
            replica: Replica::new(cfg),
            out: links.to_others.into_iter().flatten().collect(),
            inbound: links.from_others,
            bucket: TokenBucket::new(cfg.rate_per_s, cfg.burst),
            policy,
            local,
            tolerance_ns: cfg.tolerance_ns,
            capacity: cfg.queue_capacity.max(1),
            counters: NodeCounters::default(),
            own: OwnNames::default(),
            list_max: cfg.names_max,
        }
    }

    /// A node without peers (tests, one worker).
    pub fn alone(cfg: &NamesConfig) -> NameNode {
        NameNode::new(
            cfg,
            NodeLinks {
                to_others: Vec::new(),
                from_others: Vec::new(),
            },
            MeshPolicy::Drop,
            LocalNets::zeek_default(),
        )
    }

    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    pub fn replica_mut(&mut self) -> &mut Replica {
        &mut self.replica
    }

    pub fn counters(&self) -> NodeCounters {
        self.counters
    }

    /// Evidence of a flow this worker owns: into the replica, and to every other worker when
    /// it is new, or a refresh the others have not had for half its lifetime.
    pub fn on_evidence(&mut self, ev: &Evidence) {
        self.counters.evidence[ev.source as usize] += 1;
        if let Some(own) = ev.own {
            if !self.own.remember(ev, own) {
                self.counters.own_dropped += 1;
            }
        }
        let send = match self.replica.insert(ev, false) {
            Inserted::New => true,
            Inserted::Refreshed { sent_ns, earlier } => {
                // A proof older than the ones held changes what the others' lookups see
                // (a worker behind the others learns a name from a peer before its own,
                // earlier proof): always sent, or names would depend on thread timing.
                let half = self.replica.config().lifetime_ns(ev.ttl_s) / 2;
                if earlier || ev.ts_ns >= sent_ns.saturating_add(half) {
                    true
                } else {
                    self.counters.deduplicated += 1;
                    false
                }
            }
            Inserted::Stale => false,
        };
        if !send || self.out.is_empty() {
            return;
        }
        if !self.bucket.take(ev.ts_ns) {
            self.counters.rate_limited += 1;
            return;
        }
        for k in 0..self.out.len() {
            let pushed = match self.policy {
                MeshPolicy::Drop => self.out[k].try_push(*ev),
                MeshPolicy::Wait => self.push_waiting(k, ev),
            };
            if pushed {
                self.counters.sent += 1;
            } else {
                self.counters.dropped += 1;
            }
        }
        self.replica.mark_sent(ev);
    }

    /// Pushes to peer `k`, draining this worker's inbound queues while the queue is full so
    /// that two workers waiting on each other always make progress.
    fn push_waiting(&mut self, k: usize, ev: &Evidence) -> bool {
        let mut wait = Backoff::new();
        loop {
            // Only this worker pushes onto the queue, so room seen now is still there.
            if self.out[k].len() < self.capacity {
                return self.out[k].try_push(*ev);
            }
            if self.drain() == 0 {
                wait.snooze();
            }
        }
    }

    /// Takes every message the other workers have sent; returns how many.
    pub fn drain(&mut self) -> usize {
        let mut n = 0;
        for q in &self.inbound {
            while let Some(ev) = q.pop() {
                self.replica.insert(&ev, true);
                n += 1;
            }
        }
        self.counters.received += n as u64;
        n
    }

    /// True once every other worker has closed its queue towards this one and it is empty.
    pub fn inbound_finished(&self) -> bool {
        self.inbound.iter().all(Consumer::is_finished)
    }

    /// Closes this worker's outbound queues (it will send no more).
    pub fn close_outbound(&mut self) {
        self.out.clear();
    }

    /// Periodic upkeep at packet time `now_ns`: frees names that expired an hour before it.
    /// The caller passes no later a time than the start of any record still to be named.
    pub fn tick(&mut self, now_ns: u64) {
        self.replica.sweep(now_ns);
    }

    /// The clock every worker must have passed before a connection that started at
    /// `start_ns` can be named (offline).
    pub fn ready_at(&self, start_ns: u64) -> u64 {
        start_ns.saturating_add(self.tolerance_ns)
    }

    /// Names both ends of a finished connection as of its first packet plus the tolerance,
    /// from mappings alive when it started.
    pub fn enrich(&mut self, rec: &ConnRecord, names: &mut ConnNames) {
        let at = self.ready_at(rec.ts_ns);
        self.enrich_at(rec, names, at);
    }

    /// Like [`NameNode::enrich`], counting only evidence whose clock is at most `at`.
    ///
    /// Precedence (docs/names.md): the name the connection itself carried (its ClientHello's
    /// SNI, its first HTTP request's Host, whenever in the connection it came), then the name
    /// this client looked up for that address, then the newest mapping, then PTR. The sets
    /// hold every distinct name of the address at the start, newest first; an end's own name
    /// that came too late to be among them leads its set.
    pub fn enrich_at(&mut self, rec: &ConnRecord, names: &mut ConnNames, at: u64) {
        names.clear();
        let own = self.own.take(rec);
        let own_for = |resp: bool| match own {
            Some((r, o)) if r == resp => Some(Found {
                name: o.name,
                source: o.source,
            }),
            _ => None,
        };
        let (own_resp, own_orig) = (own_for(true), own_for(false));
        self.counters.own_named += u64::from(own.is_some());
        let resp = own_resp.or_else(|| self.replica.lookup(rec.resp_h, rec.orig_h, at, rec.ts_ns));
        let orig = own_orig.or_else(|| self.replica.lookup(rec.orig_h, rec.resp_h, at, rec.ts_ns));
        self.count(rec.orig_h, orig.is_some(), true);
        self.count(rec.resp_h, resp.is_some(), false);
        self.counters.conns += 1;
        if orig.is_some() || resp.is_some() {
            self.counters.conns_named += 1;
        }
        names.orig = host(orig);
        names.resp = host(resp);
        let max = self.list_max;
        for (h, list, addr) in [
            (&names.orig, &mut names.orig_all, rec.orig_h),
            (&names.resp, &mut names.resp_all, rec.resp_h),
        ] {
            if h.source.is_none() {
                continue;
            }
            fill_list(&mut self.replica, list, h, addr, at, rec.ts_ns, max);
        }
    }

    fn count(&mut self, addr: IpAddr, hit: bool, orig: bool) {
        let c = &mut self.counters;
        let h = u64::from(hit);
        if orig {
            c.orig_lookups += 1;
            c.orig_hits += h;
        } else {
            c.resp_lookups += 1;
            c.resp_hits += h;
        }
        if self.local.contains(addr) {
            c.local_lookups += 1;
            c.local_hits += h;
        } else {
            c.nonlocal_lookups += 1;
            c.nonlocal_hits += h;
        }
    }
}

/// `addr`'s names at the start into `list`, with `h`'s name first when the replica's do not
/// hold it (a connection's own name that came after the tolerance).
fn fill_list(
    replica: &mut Replica,
    list: &mut NameList,
    h: &HostName,
    addr: IpAddr,
    at: u64,
    alive: u64,
    max: usize,
) {
    let own = h.name.as_bytes();
    let max = max.clamp(1, crate::types::record::NAMES_MAX);
    let mut pos = None;
    let mut k = 0;
    replica.names_at(addr, at, alive, |n| {
        if n == own {
            pos = Some(k);
        }
        k += 1;
    });
    if !matches!(pos, Some(p) if p < max) {
        list.push(own);
    }
    replica.names_at(addr, at, alive, |n| {
        if list.len() < max {
            list.push(n);
        }
    });
}

fn host(f: Option<Found>) -> HostName {
    match f {
        Some(f) => HostName {
            name: f.name,
            source: Some(f.source),
        },
        None => HostName::default(),
    }
}

/// The name source of a host name, for callers that only want the spelling.
pub fn source_str(s: Option<NameSource>) -> &'static str {
    s.map_or("-", NameSource::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::Name;

    fn ev(addr: &str, name: &str, ts_ns: u64) -> Evidence {
        Evidence {
            addr: addr.parse().unwrap(),
            name: Name::new(name.as_bytes()),
            source: NameSource::A,
            ts_ns,
            ttl_s: 60,
            client: Some("198.18.0.1".parse().unwrap()),
            clk_ns: ts_ns,
            own: None,
        }
    }

    #[test]
    fn new_mappings_reach_every_other_worker_and_refreshes_are_deduplicated() {
        let cfg = NamesConfig::default();
        let mut l = links(3, 16).into_iter();
        let local = LocalNets::zeek_default;
        let mut a = NameNode::new(&cfg, l.next().unwrap(), MeshPolicy::Drop, local());
        let mut b = NameNode::new(&cfg, l.next().unwrap(), MeshPolicy::Drop, local());
        let mut c = NameNode::new(&cfg, l.next().unwrap(), MeshPolicy::Drop, local());
        a.on_evidence(&ev("198.18.1.1", "x.example", 1_000));
        a.on_evidence(&ev("198.18.1.1", "x.example", 2_000));
        assert_eq!(a.counters().sent, 2);
        assert_eq!(a.counters().deduplicated, 1);
        assert_eq!(b.drain(), 1);
        assert_eq!(c.drain(), 1);
        let client: IpAddr = "198.18.0.1".parse().unwrap();
        let f = b
            .replica_mut()
            .lookup("198.18.1.1".parse().unwrap(), client, 5_000, 5_000)
            .unwrap();
        assert_eq!(f.name.as_bytes(), b"x.example");
        // A refresh after half the lifetime is sent again.
        let half = cfg.lifetime_ns(60) / 2;
        a.on_evidence(&ev("198.18.1.1", "x.example", 1_000 + half));
        assert_eq!(a.counters().sent, 4);
    }

    #[test]
    fn a_connections_own_name_is_taken_once_and_only_within_its_connection() {
        use crate::types::record::{ConnRecord, ConnState, Transport};
        eprintln!(
            "own-name entry {} bytes (key {}, value {})",
            std::mem::size_of::<(OwnKey, OwnName)>(),
            std::mem::size_of::<OwnKey>(),
            std::mem::size_of::<OwnName>()
        );
        let mut own = OwnNames::default();
        let mut e = ev("198.18.2.2", "vhost.example", 5_000);
        e.source = NameSource::Http;
        let conn = OwnConn {
            client_port: 40000,
            server_port: 80,
            ip_proto: 6,
        };
        assert!(own.remember(&e, conn));
        // A later request on the same connection keeps the first Host.
        let mut later = e;
        later.name = Name::new(b"other.example");
        later.ts_ns = 6_000;
        assert!(own.remember(&later, conn));
        let rec = |ts_ns: u64, duration_ns: u64, flipped: bool| {
            let mut r = crate::types::record::fixtures::ssh_basic_row();
            r.ts_ns = ts_ns;
            r.duration_ns = duration_ns;
            r.proto = Transport::Tcp;
            r.ip_proto = 6;
            r.conn_state = ConnState::SF;
            let (c, s) = (
                ("198.18.0.1".parse().unwrap(), 40000),
                ("198.18.2.2".parse().unwrap(), 80),
            );
            let ((oh, op), (rh, rp)) = if flipped { (s, c) } else { (c, s) };
            (r.orig_h, r.orig_p, r.resp_h, r.resp_p) = (oh, op, rh, rp);
            r
        };
        let r: ConnRecord = rec(1_000, 2_000, false);
        // Carried after the connection ended: a later connection's, kept for it.
        assert!(own.take(&r).is_none());
        assert_eq!(own.len(), 1);
        // The connection, seen from its server's side (a capture that starts mid-way).
        let (resp, o) = own.take(&rec(4_000, 10_000, true)).unwrap();
        assert!(!resp, "names the originator, the server");
        assert_eq!(o.name.as_bytes(), b"vhost.example");
        assert!(own.is_empty());
        assert!(own.take(&rec(4_000, 10_000, false)).is_none());
    }

    #[test]
    fn an_earlier_proof_learnt_after_a_peers_later_one_is_still_sent() {
        // Regression: worker b, behind a, took a's proof (t = 2000) from the mesh before its
        // own earlier proof (t = 1000) and treated that as a refresh the others had, so a
        // never learnt the name held from t = 1000, and names depended on thread timing.
        let cfg = NamesConfig::default();
        let mut l = links(2, 16).into_iter();
        let local = LocalNets::zeek_default;
        let mut a = NameNode::new(&cfg, l.next().unwrap(), MeshPolicy::Drop, local());
        let mut b = NameNode::new(&cfg, l.next().unwrap(), MeshPolicy::Drop, local());
        a.on_evidence(&ev("198.18.1.1", "x.example", 2_000));
        assert_eq!(b.drain(), 1);
        b.on_evidence(&ev("198.18.1.1", "x.example", 1_000));
        assert_eq!(b.counters().sent, 1, "{:?}", b.counters());
        assert_eq!(a.drain(), 1);
        let mut names = Vec::new();
        a.replica()
            .names_at("198.18.1.1".parse().unwrap(), 1_500, 1_500, |n| {
                names.push(n.to_vec())
            });
        assert_eq!(names, [b"x.example".to_vec()]);
    }

    #[test]
    fn full_queues_drop_and_count_and_the_bucket_limits() {
        let cfg = NamesConfig {
            rate_per_s: 10,
            burst: 5,
            ..NamesConfig::default()
        };
        let mut l = links(2, 3).into_iter();
        let mut a = NameNode::new(
            &cfg,
            l.next().unwrap(),
            MeshPolicy::Drop,
            LocalNets::zeek_default(),
        );
        let _b = l.next().unwrap();
        for i in 0..20u32 {
            let addr = std::net::Ipv4Addr::from(0xc612_0100 + i).to_string();
            a.on_evidence(&ev(&addr, "n.example", 0));
        }
        let c = a.counters();
        assert_eq!(c.rate_limited, 15);
        assert_eq!(c.sent, 3);
        assert_eq!(c.dropped, 2);
    }

    #[test]
    fn progress_board() {
        let p = Progress::new(3);
        p.worker_at(1, 10);
        p.worker_at(2, 5);
        assert!(p.others_past(0, 4));
        assert!(!p.others_past(0, 5));
        assert!(!p.others_past(2, 0), "worker 0 has not started");
        p.worker_at(2, 3);
        assert!(p.others_past(0, 4), "progress never goes back");
    }
}
