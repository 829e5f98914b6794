//! `namecache.log`: how well names are known and what replicating them cost, one record per
//! interval (live) and one at exit, summed over every worker.

use super::schema::{Field, FieldSink, LogRecord, Schema, ZeekType};
use crate::engine::worker::NamesReport;
use crate::names::evidence::EvidenceCounters;

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
    }
}
