//! The per-worker flow table: one hash lookup per packet, a slab of connections sized at
//! start-up with a hard cap, a least-recently-active list for eviction, and a timer queue
//! driven by packet time.
//!
//! Memory layout is chosen for tables far larger than the CPU caches: the hash index holds
//! only 8 bytes per flow (slot number and a 32-bit hash tag), and the list links and slot
//! generations live in their own 16-byte array, so a lookup and a move to the list's tail
//! stay in the L2 cache; the connections are read only for the flow the packet belongs
//! to.

use super::cold::ColdStore;
use super::conn::{Conn, Expiry};
use super::expect::{Expectation, Expectations};
use super::key::{Endpoints, FlowKey};
use super::summary::PacketSummary;
use super::{FlowConfig, FlowCounters};
use crate::types::record::ConnRecord;
use hashbrown::HashTable;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

const NIL: u32 = u32::MAX;

/// How many of the newest flows an announcement arriving late is checked against.
const RECENT_FLOWS: usize = 64;

/// How many slots a live capture touches up front (see [`Shard::prefault`]).
const PREFAULT_SLOTS: usize = 1 << 16;
/// Timers a packet runs before it is applied, at most ([`Shard::advance_some`]): a mass timeout
/// is spread over the packets that follow it (and the worker's ticks) instead of being one batch.
pub(super) const EXPIRE_PER_PACKET: usize = 64;

/// The small per-slot state kept apart from the connection itself.
#[derive(Clone, Copy)]
struct Meta {
    /// Bumped each time the slot is reused, so stale timer entries can be recognised.
    gen: u32,
    prev: u32,
    next: u32,
    live: bool,
}

/// One hash-index entry: the slot, and the key's 32-bit hash, so that a probe rarely reads a
/// connection that is not the one looked for, and growing the index rehashes from the
/// entries alone instead of reading every connection.
#[derive(Clone, Copy)]
struct Entry {
    slot: u32,
    tag: u32,
}

/// The index's 64-bit hash made from a key's 32-bit one: hashbrown takes the bucket from the
/// low bits and its 7-bit control byte from the top ones, which are then independent for any
/// table below 2^25 buckets.
fn spread(tag: u32) -> u64 {
    (u64::from(tag) << 32) | u64::from(tag)
}

fn tag_of(hash: u64) -> u32 {
    hash as u32
}

/// One worker's flow table.
pub struct Shard {
    cfg: FlowConfig,
    index: HashTable<Entry>,
    hasher: hashbrown::DefaultHashBuilder,
    conns: Vec<Conn>,
    /// What few connections need (holes, tunnels, a SYN-ACK first), apart from `conns`.
    cold: ColdStore,
    meta: Vec<Meta>,
    free: Vec<u32>,
    /// Least recently active first.
    lru_head: u32,
    lru_tail: u32,
    /// (deadline, slot, generation), earliest first. Each connection keeps at most a few
    /// entries: one is pushed only when its deadline moves earlier than the queued one.
    timers: BinaryHeap<Reverse<(u64, u32, u32)>>,
    /// Data connections announced by control connections (FTP), matched at creation.
    expected: Expectations,
    /// The most recently created flows (slot, generation), so that an announcement that
    /// reaches this shard just after its data connection started (live, the two travel on
    /// different queues) still marks it.
    recent: [(u32, u32); RECENT_FLOWS],
    recent_next: usize,
    counters: FlowCounters,
    /// The latest time timers were run to: the end of input runs what is still due by then.
    clock_ns: u64,
}

impl Shard {
    pub fn new(cfg: &FlowConfig) -> Shard {
        // Every table is reserved at its cap up front, so it never grows by copying inside the
        // worker loop (the last doubling of a million-flow table would copy hundreds of MB
        // while packets wait). Reserving is address space only: pages become resident as
        // flows fill them.
        let cap = cfg.max_flows.max(1);
        let conns = Vec::with_capacity(cap);
        Shard {
            cfg: cfg.clone(),
            index: HashTable::with_capacity(cap),
            hasher: hashbrown::DefaultHashBuilder::default(),
            conns,
            cold: ColdStore::default(),
            meta: Vec::with_capacity(cap),
            free: Vec::with_capacity(cap),
            lru_head: NIL,
            lru_tail: NIL,
            timers: BinaryHeap::with_capacity(2 * cap + 1024),
            expected: Expectations::default(),
            recent: [(NIL, 0); RECENT_FLOWS],
            recent_next: 0,
            counters: FlowCounters::default(),
            clock_ns: 0,
        }
    }

    /// Touches the memory of the first [`PREFAULT_SLOTS`] connections now, so that a capture
    /// does not take a page fault (and, with huge pages, a 2 MiB clear or a compaction) per new
    /// flow while its ring fills at start. Costs that much resident memory from the start.
    pub fn prefault(&mut self) {
        let n = PREFAULT_SLOTS.saturating_sub(self.conns.len());
        for c in self.conns.spare_capacity_mut().iter_mut().take(n) {
            *c = std::mem::MaybeUninit::zeroed();
        }
    }

    /// Applies one packet, first running every timer due at its time (Zeek advances its
    /// timers before it dispatches a packet).
    pub fn process(&mut self, pkt: &PacketSummary, out: &mut impl FnMut(ConnRecord)) {
        self.counters.packets += 1;
        if !pkt.checksum_ok {
            self.counters.bad_checksum += 1;
        }
        self.advance_some(pkt.ts_ns, EXPIRE_PER_PACKET, out);

        let ep = Endpoints::of_summary(pkt);
        let (key, _) = ep.key();
        let hash = self.hash(&key);
        let idx = match self.find(&key, hash) {
            // A mass timeout is spread over the following packets, so this packet's own
            // connection may still wait for timers due before it: they run first, as they
            // would have had every due timer run before this packet.
            Some(i) if self.expire_overdue(i, pkt.ts_ns, out) => {
                self.insert(key, hash, pkt, &ep, out)
            }
            Some(i) => {
                let c = &self.conns[i as usize];
                let is_orig = c.is_orig(pkt, ep.src_port);
                if c.is_reuse(pkt, is_orig) {
                    self.remove(i, out);
                    self.counters.flows_expired += 1;
                    self.insert(key, hash, pkt, &ep, out)
                } else {
                    i
                }
            }
            None => self.insert(key, hash, pkt, &ep, out),
        };
        let conn = &mut self.conns[idx as usize];
        let is_orig = conn.is_orig(pkt, ep.src_port);
        conn.add_parents(&mut self.cold, &pkt.parents);
        conn.apply(&self.cfg, &mut self.cold, pkt, is_orig);
        self.touch(idx);
        self.schedule(idx);
    }

    /// The connection with this key, if this shard tracks it (protocol logs such as dns.log
    /// read its uid and roles).
    pub fn get(&self, key: &FlowKey) -> Option<&Conn> {
        self.find(key, self.hash(key))
            .map(|i| &self.conns[i as usize])
    }

    fn hash(&self, key: &FlowKey) -> u64 {
        use std::hash::BuildHasher;
        let h = self.hasher.hash_one(key);
        spread((h ^ (h >> 32)) as u32)
    }

    fn find(&self, key: &FlowKey, hash: u64) -> Option<u32> {
        let tag = tag_of(hash);
        self.index
            .find(hash, |e| {
                e.tag == tag && self.conns[e.slot as usize].key == *key
            })
            .map(|e| e.slot)
    }

    /// Remembers a connection announced by a control connection; when it starts, it gets the
    /// announced service.
    pub fn expect(&mut self, e: Expectation) {
        for &(idx, gen) in &self.recent {
            let Some(m) = self.meta.get(idx as usize) else {
                continue;
            };
            let c = &mut self.conns[idx as usize];
            if m.live && m.gen == gen && e.matches(c.orig(), c.resp(), c.resp_port(), c.start_ns) {
                c.service.confirm(e.service);
                return;
            }
        }
        self.expected.add(e);
    }

    /// Expires every flow whose deadline is at or before `now_ns`.
    pub fn advance(&mut self, now_ns: u64, out: &mut impl FnMut(ConnRecord)) {
        self.advance_some(now_ns, usize::MAX, out);
    }

    /// Runs at most `budget` of the timers due at or before `now_ns`, earliest first, and
    /// says whether due ones are left. A mass timeout (a million flows that went quiet in the
    /// same second) then costs each call a bounded batch instead of stalling the worker for
    /// the whole burst while its ring fills. What is left stays correct in the meantime: a
    /// packet of an overdue flow expires it first ([`Shard::process`]), and a full table
    /// expires due flows before it evicts a live one.
    pub fn advance_some(
        &mut self,
        now_ns: u64,
        budget: usize,
        out: &mut impl FnMut(ConnRecord),
    ) -> bool {
        self.clock_ns = self.clock_ns.max(now_ns);
        let mut left = budget;
        while let Some(&Reverse((at, idx, gen))) = self.timers.peek() {
            if at > now_ns {
                return false;
            }
            if left == 0 {
                return true;
            }
            left -= 1;
            self.timers.pop();
            let m = self.meta[idx as usize];
            let conn = &mut self.conns[idx as usize];
            if !m.live || m.gen != gen || conn.timer_at != at {
                continue;
            }
            conn.timer_at = u64::MAX;
            match conn.run_timers(at) {
                Expiry::Remove => {
                    self.remove(idx, out);
                    self.counters.flows_expired += 1;
                }
                Expiry::Keep => self.schedule(idx),
            }
        }
        false
    }

    /// Runs the timers of the flow in slot `idx` that are due at or before `now_ns` (its
    /// queued entry, if any, goes stale and is skipped when it comes up). True when the flow
    /// was removed.
    fn expire_overdue(&mut self, idx: u32, now_ns: u64, out: &mut impl FnMut(ConnRecord)) -> bool {
        loop {
            let at = self.conns[idx as usize].timer_at;
            if at > now_ns {
                return false;
            }
            self.conns[idx as usize].timer_at = u64::MAX;
            match self.conns[idx as usize].run_timers(at) {
                Expiry::Remove => {
                    self.remove(idx, out);
                    self.counters.flows_expired += 1;
                    return true;
                }
                Expiry::Keep => self.schedule(idx),
            }
        }
    }

    /// End of input: runs the timers still due (a spread-out mass timeout may have left
    /// some), then emits every flow, oldest activity first.
    pub fn flush(&mut self, out: &mut impl FnMut(ConnRecord)) {
        self.advance(self.clock_ns, out);
        while self.lru_head != NIL {
            self.remove(self.lru_head, out);
        }
        self.timers.clear();
    }

    pub fn counters(&self) -> FlowCounters {
        let mut c = self.counters;
        c.active = self.index.len() as u64;
        c
    }

    fn insert(
        &mut self,
        key: FlowKey,
        hash: u64,
        pkt: &PacketSummary,
        ep: &Endpoints,
        out: &mut impl FnMut(ConnRecord),
    ) -> u32 {
        // A full table first expires flows whose timeout is already due (their expiry may be
        // waiting behind a spread-out mass timeout), so a live flow is evicted only when none is.
        while self.index.len() >= self.cfg.max_flows.max(1) && self.advance_some(pkt.ts_ns, 1, out)
        {
        }
        if self.index.len() >= self.cfg.max_flows.max(1) && self.lru_head != NIL {
            // The table is full: the least recently active flow makes room, and is logged.
            self.remove(self.lru_head, out);
            self.counters.flows_evicted += 1;
        }
        let mut conn = Conn::new(&self.cfg, key, pkt, ep.src_port, ep.dst_port);
        if let Some(s) = self
            .expected
            .take(conn.orig(), conn.resp(), conn.resp_port(), pkt.ts_ns)
        {
            conn.service.confirm(s);
        }
        let idx = match self.free.pop() {
            Some(i) => {
                self.conns[i as usize] = conn;
                let m = &mut self.meta[i as usize];
                m.gen = m.gen.wrapping_add(1);
                m.live = true;
                i
            }
            None => {
                self.conns.push(conn);
                self.meta.push(Meta {
                    gen: 0,
                    prev: NIL,
                    next: NIL,
                    live: true,
                });
                (self.conns.len() - 1) as u32
            }
        };
        self.index.insert_unique(
            hash,
            Entry {
                slot: idx,
                tag: tag_of(hash),
            },
            |e| spread(e.tag),
        );
        self.recent[self.recent_next] = (idx, self.meta[idx as usize].gen);
        self.recent_next = (self.recent_next + 1) % RECENT_FLOWS;
        self.link_tail(idx);
        self.counters.flows_created += 1;
        idx
    }

    fn remove(&mut self, idx: u32, out: &mut impl FnMut(ConnRecord)) {
        debug_assert!(self.meta[idx as usize].live, "removing a free slot");
        self.meta[idx as usize].live = false;
        let conn = &mut self.conns[idx as usize];
        out(conn.record(&self.cfg, &self.cold));
        conn.release(&mut self.cold);
        let hash = self.hash(&self.conns[idx as usize].key);
        self.unlink(idx);
        if let Ok(e) = self.index.find_entry(hash, |e| e.slot == idx) {
            e.remove();
        }
        self.free.push(idx);
    }

    fn schedule(&mut self, idx: u32) {
        let d = self.conns[idx as usize].next_deadline();
        if d < self.conns[idx as usize].timer_at {
            if self.timers.len() >= self.timer_bound() {
                self.compact_timers();
            }
            self.conns[idx as usize].timer_at = d;
            self.timers
                .push(Reverse((d, idx, self.meta[idx as usize].gen)));
        }
    }

    /// The most timer entries the heap holds before its stale ones are swept out. Entries of
    /// removed or rescheduled flows are only dropped when they come due, so without a sweep
    /// the heap grows with the packet rate times the longest timeout (a flood of new flows
    /// against a full table), not with the table's cap.
    fn timer_bound(&self) -> usize {
        2 * self.cfg.max_flows.max(1) + 1024
    }

    /// Drops every entry that no longer matches a live flow's current deadline. At most one
    /// entry per live flow survives, so sweeps are at least `max_flows` pushes apart and cost
    /// O(1) per push over time; `retain` keeps the allocation.
    fn compact_timers(&mut self) {
        let (conns, meta) = (&self.conns, &self.meta);
        self.timers.retain(|&Reverse((at, idx, gen))| {
            let m = &meta[idx as usize];
            m.live && m.gen == gen && conns[idx as usize].timer_at == at
        });
    }

    /// Timer entries queued (live and stale), for tests of the bound.
    pub fn timer_entries(&self) -> usize {
        self.timers.len()
    }

    fn touch(&mut self, idx: u32) {
        if self.lru_tail != idx {
            self.unlink(idx);
            self.link_tail(idx);
        }
    }

    fn link_tail(&mut self, idx: u32) {
        let tail = self.lru_tail;
        {
            let m = &mut self.meta[idx as usize];
            m.prev = tail;
            m.next = NIL;
        }
        if tail != NIL {
            self.meta[tail as usize].next = idx;
        } else {
            self.lru_head = idx;
        }
        self.lru_tail = idx;
    }

    fn unlink(&mut self, idx: u32) {
        let (prev, next) = {
            let m = &self.meta[idx as usize];
            (m.prev, m.next)
        };
        if prev != NIL {
            self.meta[prev as usize].next = next;
        } else {
            self.lru_head = next;
        }
        if next != NIL {
            self.meta[next as usize].prev = prev;
        } else {
            self.lru_tail = prev;
        }
        let m = &mut self.meta[idx as usize];
        m.prev = NIL;
        m.next = NIL;
    }
}
