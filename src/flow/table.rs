//! The per-worker flow table: one hash lookup per packet, a slab of connections sized at
//! start-up with a hard cap, a least-recently-active list for eviction, and a timer queue
//! driven by packet time.

use super::conn::{Conn, Expiry};
use super::expect::{Expectation, Expectations};
use super::key::{Endpoints, FlowKey};
use super::summary::PacketSummary;
use super::{FlowConfig, FlowCounters};
use crate::output::record::ConnRecord;
use hashbrown::HashMap;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

const NIL: u32 = u32::MAX;

/// How many of the newest flows an announcement arriving late is checked against.
const RECENT_FLOWS: usize = 64;

/// How many slots are allocated up front; the table grows (rarely) up to `max_flows`.
const INITIAL_SLOTS: usize = 1 << 16;

struct Slot {
    conn: Conn,
    /// Bumped each time the slot is reused, so stale timer entries can be recognised.
    gen: u32,
    prev: u32,
    next: u32,
    live: bool,
}

/// One worker's flow table.
pub struct Shard {
    cfg: FlowConfig,
    map: HashMap<FlowKey, u32>,
    slots: Vec<Slot>,
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
}

impl Shard {
    pub fn new(cfg: &FlowConfig) -> Shard {
        let cap = cfg.max_flows.clamp(1, INITIAL_SLOTS);
        Shard {
            cfg: cfg.clone(),
            map: HashMap::with_capacity(cap),
            slots: Vec::with_capacity(cap),
            free: Vec::with_capacity(cap),
            lru_head: NIL,
            lru_tail: NIL,
            timers: BinaryHeap::with_capacity(cap * 2),
            expected: Expectations::default(),
            recent: [(NIL, 0); RECENT_FLOWS],
            recent_next: 0,
            counters: FlowCounters::default(),
        }
    }

    /// Applies one packet, first running every timer due at its time (Zeek advances its
    /// timers before it dispatches a packet).
    pub fn process(&mut self, pkt: &PacketSummary, out: &mut impl FnMut(ConnRecord)) {
        self.counters.packets += 1;
        if !pkt.checksum_ok {
            self.counters.bad_checksum += 1;
        }
        self.advance(pkt.ts_ns, out);

        let ep = Endpoints::of_summary(pkt);
        let (key, _) = ep.key();
        let idx = match self.map.get(&key).copied() {
            Some(i) => {
                let c = &self.slots[i as usize].conn;
                let is_orig = c.is_orig(pkt, ep.src_port);
                if c.is_reuse(pkt, is_orig) {
                    self.remove(i, out);
                    self.counters.flows_expired += 1;
                    self.insert(key, pkt, &ep, out)
                } else {
                    i
                }
            }
            None => self.insert(key, pkt, &ep, out),
        };
        let slot = &mut self.slots[idx as usize];
        let is_orig = slot.conn.is_orig(pkt, ep.src_port);
        slot.conn.add_parents(&pkt.parents);
        slot.conn.apply(&self.cfg, pkt, is_orig);
        self.touch(idx);
        self.schedule(idx);
    }

    /// The connection with this key, if this shard tracks it (protocol logs such as dns.log
    /// read its uid and roles).
    pub fn get(&self, key: &FlowKey) -> Option<&Conn> {
        self.map.get(key).map(|&i| &self.slots[i as usize].conn)
    }

    /// Remembers a connection announced by a control connection; when it starts, it gets the
    /// announced service.
    pub fn expect(&mut self, e: Expectation) {
        for &(idx, gen) in &self.recent {
            let Some(slot) = self.slots.get_mut(idx as usize) else {
                continue;
            };
            let c = &mut slot.conn;
            if slot.live && slot.gen == gen && e.matches(c.orig, c.resp, c.resp_port, c.start_ns) {
                c.service.confirm(e.service);
                return;
            }
        }
        self.expected.add(e);
    }

    /// Expires every flow whose deadline is at or before `now_ns`.
    pub fn advance(&mut self, now_ns: u64, out: &mut impl FnMut(ConnRecord)) {
        while let Some(&Reverse((at, idx, gen))) = self.timers.peek() {
            if at > now_ns {
                break;
            }
            self.timers.pop();
            let slot = &mut self.slots[idx as usize];
            if !slot.live || slot.gen != gen || slot.conn.timer_at != at {
                continue;
            }
            slot.conn.timer_at = u64::MAX;
            match slot.conn.run_timers(at) {
                Expiry::Remove => {
                    self.remove(idx, out);
                    self.counters.flows_expired += 1;
                }
                Expiry::Keep => self.schedule(idx),
            }
        }
    }

    /// End of input: emits every flow, oldest activity first.
    pub fn flush(&mut self, out: &mut impl FnMut(ConnRecord)) {
        while self.lru_head != NIL {
            self.remove(self.lru_head, out);
        }
        self.timers.clear();
    }

    pub fn counters(&self) -> FlowCounters {
        let mut c = self.counters;
        c.active = self.map.len() as u64;
        c
    }

    fn insert(
        &mut self,
        key: FlowKey,
        pkt: &PacketSummary,
        ep: &Endpoints,
        out: &mut impl FnMut(ConnRecord),
    ) -> u32 {
        if self.map.len() >= self.cfg.max_flows.max(1) && self.lru_head != NIL {
            // The table is full: the least recently active flow makes room, and is logged.
            self.remove(self.lru_head, out);
            self.counters.flows_evicted += 1;
        }
        let mut conn = Conn::new(&self.cfg, key, pkt, ep.src_port, ep.dst_port);
        if let Some(s) = self
            .expected
            .take(conn.orig, conn.resp, conn.resp_port, pkt.ts_ns)
        {
            conn.service.confirm(s);
        }
        let idx = match self.free.pop() {
            Some(i) => {
                let s = &mut self.slots[i as usize];
                s.conn = conn;
                s.gen = s.gen.wrapping_add(1);
                s.live = true;
                i
            }
            None => {
                self.slots.push(Slot {
                    conn,
                    gen: 0,
                    prev: NIL,
                    next: NIL,
                    live: true,
                });
                (self.slots.len() - 1) as u32
            }
        };
        self.map.insert(key, idx);
        self.recent[self.recent_next] = (idx, self.slots[idx as usize].gen);
        self.recent_next = (self.recent_next + 1) % RECENT_FLOWS;
        self.link_tail(idx);
        self.counters.flows_created += 1;
        idx
    }

    fn remove(&mut self, idx: u32, out: &mut impl FnMut(ConnRecord)) {
        let slot = &mut self.slots[idx as usize];
        debug_assert!(slot.live, "removing a free slot");
        slot.live = false;
        out(slot.conn.record(&self.cfg));
        let key = slot.conn.key;
        self.unlink(idx);
        self.map.remove(&key);
        self.free.push(idx);
    }

    fn schedule(&mut self, idx: u32) {
        let d = self.slots[idx as usize].conn.next_deadline();
        if d < self.slots[idx as usize].conn.timer_at {
            if self.timers.len() >= self.timer_bound() {
                self.compact_timers();
            }
            let slot = &mut self.slots[idx as usize];
            slot.conn.timer_at = d;
            self.timers.push(Reverse((d, idx, slot.gen)));
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
        let slots = &self.slots;
        self.timers.retain(|&Reverse((at, idx, gen))| {
            let s = &slots[idx as usize];
            s.live && s.gen == gen && s.conn.timer_at == at
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
            let s = &mut self.slots[idx as usize];
            s.prev = tail;
            s.next = NIL;
        }
        if tail != NIL {
            self.slots[tail as usize].next = idx;
        } else {
            self.lru_head = idx;
        }
        self.lru_tail = idx;
    }

    fn unlink(&mut self, idx: u32) {
        let (prev, next) = {
            let s = &self.slots[idx as usize];
            (s.prev, s.next)
        };
        if prev != NIL {
            self.slots[prev as usize].next = next;
        } else {
            self.lru_head = next;
        }
        if next != NIL {
            self.slots[next as usize].prev = prev;
        } else {
            self.lru_tail = prev;
        }
        let s = &mut self.slots[idx as usize];
        s.prev = NIL;
        s.next = NIL;
    }
}
