//! `namecache.log`: how well names are known and what replicating them cost, one record per
//! interval (live) and one at exit, summed over every worker.

use super::schema::{Field, FieldSink, LogRecord, Schema, ZeekType};
use crate::names::evidence::EvidenceCounters;
use crate::names::NamesReport;
use crossbeam_utils::CachePadded;
use std::sync::Mutex;

/// Where live workers publish their name counters for the periodic namecache.log record: one
/// cache-padded slot per worker. A worker publishes a few times a second with `try_lock`, so
/// it never waits (a publication that meets the reader is skipped; the next one carries the
/// same cumulative counts); the main thread reads every slot once per stats interval.
pub struct NameCacheBoard {
    slots: Box<[CachePadded<Mutex<Published>>]>,
}

/// One worker's last publication: its names, and the evidence its dispatcher parsed.
type Published = (NamesReport, EvidenceCounters);

impl NameCacheBoard {
    pub fn new(workers: usize) -> NameCacheBoard {
        NameCacheBoard {
            slots: (0..workers)
                .map(|_| CachePadded::new(Mutex::new(Default::default())))
                .collect(),
        }
    }

    /// Worker `w`'s counters so far: its names, and the evidence its dispatcher parsed.
    /// `wait` blocks for the slot (at exit); otherwise a busy slot skips this publication.
    pub fn publish(&self, w: usize, names: NamesReport, evidence: EvidenceCounters, wait: bool) {
        let slot = &self.slots[w];
        let guard = if wait {
            Some(slot.lock().unwrap_or_else(|p| p.into_inner()))
        } else {
            slot.try_lock().ok()
        };
        if let Some(mut g) = guard {
            *g = (names, evidence);
        }
    }

    /// One record summed over every worker's last publication.
    pub fn record(&self, ts_ns: u64) -> NameCacheRecord {
        let mut reports = Vec::with_capacity(self.slots.len());
        let mut evidence = EvidenceCounters::default();
        for slot in self.slots.iter() {
            let g = slot.lock().unwrap_or_else(|p| p.into_inner());
            reports.push(g.0);
            evidence.add(&g.1);
        }
        NameCacheRecord::from_reports(ts_ns, &reports, evidence)
    }
}

/// One namecache.log record.
#[derive(Clone, Copy, Debug, Default)]
pub struct NameCacheRecord {
    /// `ts`: when the counts were taken (packet time offline).
    pub ts_ns: u64,
    /// Every worker's counters summed; replica sizes: `entries` is the largest replica (each
    /// is a full copy), `bytes` the sum over workers.
    pub names: NamesReport,
    /// Workers the counts cover.
    pub workers: u64,
    /// Evidence parsed at dispatch (per source, malformed DNS, cut).
    pub evidence: EvidenceCounters,
}

impl NameCacheRecord {
    /// Sums the workers' reports.
    pub fn from_reports<'a>(
        ts_ns: u64,
        reports: impl IntoIterator<Item = &'a NamesReport>,
        evidence: EvidenceCounters,
    ) -> NameCacheRecord {
        let mut r = NameCacheRecord {
            ts_ns,
            evidence,
            ..NameCacheRecord::default()
        };
        for w in reports {
            r.workers += 1;
            r.names.node.add(&w.node);
            r.names.replica.entries = r.names.replica.entries.max(w.replica.entries);
            r.names.replica.names = r.names.replica.names.max(w.replica.names);
            r.names.replica.bytes += w.replica.bytes;
            r.names.replica.evictions += w.replica.evictions;
            r.names.replica.expired += w.replica.expired;
            r.names.named_early += w.named_early;
        }
        r
    }
}

/// The columns of namecache.log.
pub static NAMECACHE: Schema = Schema::new(
    "namecache",
    &[
        Field::new("ts", ZeekType::Time),
        Field::new("workers", ZeekType::Count),
        Field::new("conns", ZeekType::Count),
        Field::new("conns_named", ZeekType::Count),
        Field::new("hit_rate", ZeekType::Double),
        Field::new("lookups", ZeekType::Count),
        Field::new("orig_hit_rate", ZeekType::Double),
        Field::new("resp_hit_rate", ZeekType::Double),
        Field::new("local_hit_rate", ZeekType::Double),
        Field::new("nonlocal_hit_rate", ZeekType::Double),
        Field::new("entries", ZeekType::Count),
        Field::new("names", ZeekType::Count),
        Field::new("bytes", ZeekType::Count),
        Field::new("bytes_per_entry", ZeekType::Count),
        Field::new("evictions", ZeekType::Count),
        Field::new("expired", ZeekType::Count),
        Field::new("repl_sent", ZeekType::Count),
        Field::new("repl_received", ZeekType::Count),
        Field::new("repl_deduplicated", ZeekType::Count),
        Field::new("repl_rate_limited", ZeekType::Count),
        Field::new("repl_dropped", ZeekType::Count),
        Field::new("named_early", ZeekType::Count),
        Field::new("ev_a", ZeekType::Count),
        Field::new("ev_aaaa", ZeekType::Count),
        Field::new("ev_cname", ZeekType::Count),
        Field::new("ev_ptr", ZeekType::Count),
        Field::new("ev_mdns", ZeekType::Count),
        Field::new("ev_llmnr", ZeekType::Count),
        Field::new("ev_sni", ZeekType::Count),
        Field::new("ev_http", ZeekType::Count),
        Field::new("ev_dhcp", ZeekType::Count),
        Field::new("dns_malformed", ZeekType::Count),
        Field::new("ev_cut", ZeekType::Count),
        Field::new("ev_sni_quic", ZeekType::Count),
        Field::new("quic_initials", ZeekType::Count),
        Field::new("quic_undecryptable", ZeekType::Count),
        Field::new("hello_reassembled", ZeekType::Count),
        Field::new("reasm_evicted", ZeekType::Count),
        Field::new("reasm_abandoned", ZeekType::Count),
        Field::new("reasm_syns_forgotten", ZeekType::Count),
        Field::new("conns_own_named", ZeekType::Count),
        Field::new("own_dropped", ZeekType::Count),
    ],
);

fn rate(hits: u64, of: u64) -> f64 {
    if of == 0 {
        0.0
    } else {
        hits as f64 / of as f64
    }
}

impl LogRecord for NameCacheRecord {
    fn schema() -> &'static Schema {
        &NAMECACHE
    }

    fn write_fields<S: FieldSink>(&self, out: &mut S) {
        let n = &self.names.node;
        let rp = &self.names.replica;
        out.time(self.ts_ns);
        out.count(self.workers);
        out.count(n.conns);
        out.count(n.conns_named);
        out.double(rate(n.conns_named, n.conns));
        out.count(n.orig_lookups + n.resp_lookups);
        out.double(rate(n.orig_hits, n.orig_lookups));
        out.double(rate(n.resp_hits, n.resp_lookups));
        out.double(rate(n.local_hits, n.local_lookups));
        out.double(rate(n.nonlocal_hits, n.nonlocal_lookups));
        out.count(rp.entries);
        out.count(rp.names);
        out.count(rp.bytes);
        out.count(crate::names::Replica::bytes_per_entry());
        out.count(rp.evictions);
        out.count(rp.expired);
        out.count(n.sent);
        out.count(n.received);
        out.count(n.deduplicated);
        out.count(n.rate_limited);
        out.count(n.dropped);
        out.count(self.names.named_early);
        for v in self.evidence.by_source {
            out.count(v);
        }
        out.count(self.evidence.dns_malformed);
        out.count(self.evidence.cut);
        out.count(self.evidence.sni_quic);
        out.count(self.evidence.quic_initials);
        out.count(self.evidence.quic_undecryptable);
        out.count(self.evidence.hello_reassembled);
        out.count(self.evidence.reasm_evicted);
        out.count(self.evidence.reasm_abandoned);
        out.count(self.evidence.reasm_syns_forgotten);
        out.count(n.own_named);
        out.count(n.own_dropped);
    }
}
