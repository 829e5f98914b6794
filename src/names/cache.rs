//! One worker's replica of the address → name mappings.
//!
//! Each address keeps a short history of names ordered by the time each was first proven, so
//! that a lookup answers "which name did this address have at that instant" even after the
//! address changed name. Addresses live in preallocated-as-needed slots with a hard bound
//! (`max_entries`) and a least-recently-used list: at the bound the least recently used
//! address is evicted. Names live in an arena bounded at twice that, so memory is bounded.
//! Items expire `clamp(TTL, floor, cap)` after their last proof; an incremental sweep, a few
//! thousand slots per call, frees them.
//!
//! Determinism: a lookup only considers items whose dispatcher clock is at or before `at_ns`
//! (the connection's start plus the tolerance) and that were alive at the connection's start.
//! Items are freed only an hour after they expire, so which items a replica still holds
//! (sweep timing, arrival order) does not change an answer for connections shorter than that.

use super::{Evidence, Name, NameSource, NamesConfig};
use hashbrown::HashMap;
use std::net::IpAddr;

/// Names kept per address.
pub const HISTORY: usize = 8;
const NIL: u32 = u32::MAX;
/// Slots allocated up front; the table grows up to `max_entries`.
const INITIAL_SLOTS: usize = 4096;
/// Slots visited by one sweep call at most.
const SWEEP_SLOTS: usize = 4096;
/// Packet time in which the sweep visits every slot once. Items are freed only an hour
/// ([`RETAIN_NS`]) after they expire, so visiting each slot once a minute frees them late by
/// a minute at most, at a sixtieth of the work of a full pass every tick.
const SWEEP_PERIOD_NS: u64 = 60_000_000_000;
/// How long an expired item is kept before it is freed: records are produced when a
/// connection ends, and a lookup must see what was alive when it started.
pub const RETAIN_NS: u64 = 3_600_000_000_000;

#[derive(Clone, Copy, Debug)]
struct Item {
    /// Index into the name arena.
    name: u32,
    source: NameSource,
    /// Earliest and latest proof.
    first_ns: u64,
    last_ns: u64,
    expires_ns: u64,
    /// Time of the last proof the other replicas were sent (or that came from them).
    sent_ns: u64,
    client: Option<IpAddr>,
    /// Smallest dispatcher clock among the proofs.
    clk_ns: u64,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    addr: IpAddr,
    items: [Option<Item>; HISTORY],
    prev: u32,
    next: u32,
    live: bool,
}

/// Sources that mostly confirm a DNS name; the first to go when an address's history is full.
fn is_weak(s: NameSource) -> bool {
    !matches!(
        s,
        NameSource::A | NameSource::Aaaa | NameSource::Cname | NameSource::Ptr
    )
}

/// The client an item is kept for: only DNS answers say who looked a name up.
fn key_client(source: NameSource, client: Option<IpAddr>) -> Option<IpAddr> {
    match source {
        NameSource::A | NameSource::Aaaa | NameSource::Cname => client,
        _ => None,
    }
}

/// What inserting evidence did, for the replication decision.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Inserted {
    /// A new name for the address (or for this client): the others must learn it.
    New,
    /// The same name proven again; `sent_ns` is when the others last learnt of it, and
    /// `earlier` says this proof came before every one held (by packet time or by the
    /// dispatcher's clock), so it changes what a lookup sees and the others must learn it too.
    Refreshed { sent_ns: u64, earlier: bool },
    /// Older than every name held for a full history: not kept.
    Stale,
}

/// Counts and sizes of one replica.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct ReplicaStats {
    /// Addresses held.
    pub entries: u64,
    /// Names held (history items).
    pub names: u64,
    /// Bytes the replica's tables hold (allocated capacity).
    pub bytes: u64,
    /// Addresses evicted at the bound.
    pub evictions: u64,
    /// Names expired by TTL.
    pub expired: u64,
    pub inserts: u64,
    pub refreshes: u64,
}

/// A name found for an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    pub name: Name,
    pub source: NameSource,
}

/// One worker's replica.
pub struct Replica {
    cfg: NamesConfig,
    index: HashMap<IpAddr, u32>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Least recently used first.
    head: u32,
    tail: u32,
    names: Vec<Name>,
    free_names: Vec<u32>,
    max_names: usize,
    sweep_at: usize,
    /// Packet time up to which the sweep has done its share of the slots.
    swept_to_ns: u64,
    stats: ReplicaStats,
}

impl Replica {
    pub fn new(cfg: &NamesConfig) -> Replica {
        let max = cfg.max_entries.max(1);
        let initial = max.min(INITIAL_SLOTS);
        Replica {
            cfg: cfg.clone(),
            index: HashMap::with_capacity(initial),
            slots: Vec::with_capacity(initial),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            names: Vec::with_capacity(initial),
            free_names: Vec::new(),
            max_names: max * 2,
            sweep_at: 0,
            swept_to_ns: 0,
            stats: ReplicaStats::default(),
        }
    }

    pub fn config(&self) -> &NamesConfig {
        &self.cfg
    }

    /// Counts and sizes now.
    pub fn stats(&self) -> ReplicaStats {
        let mut s = self.stats;
        s.entries = self.index.len() as u64;
        s.names = (self.names.len() - self.free_names.len()) as u64;
        s.bytes = (self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.index.capacity() * (std::mem::size_of::<(IpAddr, u32)>() + 1)
            + self.names.capacity() * std::mem::size_of::<Name>()
            + (self.free.capacity() + self.free_names.capacity()) * 4) as u64;
        s
    }

    /// Bytes one address with one name costs (for namecache.log and docs).
    pub fn bytes_per_entry() -> u64 {
        (std::mem::size_of::<Slot>()
            + std::mem::size_of::<(IpAddr, u32)>()
            + 1
            + std::mem::size_of::<Name>()) as u64
    }

    fn unlink(&mut self, i: u32) {
        let (p, n) = (self.slots[i as usize].prev, self.slots[i as usize].next);
        if p == NIL {
            self.head = n;
        } else {
            self.slots[p as usize].next = n;
        }
        if n == NIL {
            self.tail = p;
        } else {
            self.slots[n as usize].prev = p;
        }
    }

    fn push_tail(&mut self, i: u32) {
        self.slots[i as usize].prev = self.tail;
        self.slots[i as usize].next = NIL;
        if self.tail == NIL {
            self.head = i;
        } else {
            self.slots[self.tail as usize].next = i;
        }
        self.tail = i;
    }

    fn touch(&mut self, i: u32) {
        if self.tail != i {
            self.unlink(i);
            self.push_tail(i);
        }
    }

    fn free_item(&mut self, it: &Item) {
        self.free_names.push(it.name);
    }

    fn remove_slot(&mut self, i: u32) {
        self.unlink(i);
        let s = self.slots[i as usize];
        for it in s.items.iter().flatten() {
            self.free_item(it);
        }
        self.slots[i as usize].live = false;
        self.slots[i as usize].items = [None; HISTORY];
        self.index.remove(&s.addr);
        self.free.push(i);
    }

    fn evict_lru(&mut self) -> bool {
        if self.head == NIL {
            return false;
        }
        let h = self.head;
        self.remove_slot(h);
        self.stats.evictions += 1;
        true
    }

    fn alloc_name(&mut self, n: Name, keep: u32) -> Option<u32> {
        loop {
            if let Some(i) = self.free_names.pop() {
                self.names[i as usize] = n;
                return Some(i);
            }
            if self.names.len() < self.max_names {
                self.names.push(n);
                return Some((self.names.len() - 1) as u32);
            }
            // The arena is full: free the least recently used address, but never the one
            // being written to.
            if self.head == keep || !self.evict_lru() {
                return None;
            }
        }
    }

    fn slot_for(&mut self, addr: IpAddr) -> u32 {
        if let Some(&i) = self.index.get(&addr) {
            self.touch(i);
            return i;
        }
        if self.index.len() >= self.cfg.max_entries.max(1) {
            self.evict_lru();
        }
        let fresh = Slot {
            addr,
            items: [None; HISTORY],
            prev: NIL,
            next: NIL,
            live: true,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = fresh;
                i
            }
            None => {
                self.slots.push(fresh);
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(addr, i);
        self.push_tail(i);
        i
    }

    /// Inserts one proven mapping. `from_peer` marks evidence another worker replicated (the
    /// others already have it).
    ///
    /// An address keeps one item per distinct (name, asking client, PTR or not); proofs of the
    /// same item merge (earliest and latest proof, longest expiry). The client is kept only
    /// for DNS lookups (A, AAAA, CNAME), the only sources a client "looked up". Merging into
    /// keys rather than into neighbours in time makes the history a function of the set of
    /// proofs, whatever order they arrive in.
    pub fn insert(&mut self, ev: &Evidence, from_peer: bool) -> Inserted {
        let life = self.cfg.lifetime_ns(ev.ttl_s);
        let si = self.slot_for(ev.addr);
        let is_ptr = ev.source == NameSource::Ptr;
        let client = key_client(ev.source, ev.client);
        let found = self.slots[si as usize].items.iter().position(|it| {
            it.is_some_and(|it| {
                it.client == client
                    && (it.source == NameSource::Ptr) == is_ptr
                    && self.names[it.name as usize] == ev.name
            })
        });
        if let Some(k) = found {
            let m = self.slots[si as usize].items[k]
                .as_mut()
                .expect("found above");
            let sent_ns = m.sent_ns;
            let earlier = ev.ts_ns < m.first_ns || ev.clk_ns < m.clk_ns;
            // The item's source is that of its earliest proof (ties: the first in
            // `NameSource` order), so it does not depend on arrival order either.
            if (ev.ts_ns, ev.source as u8) < (m.first_ns, m.source as u8) {
                m.source = ev.source;
            }
            m.first_ns = m.first_ns.min(ev.ts_ns);
            m.last_ns = m.last_ns.max(ev.ts_ns);
            m.expires_ns = m.expires_ns.max(ev.ts_ns.saturating_add(life));
            m.clk_ns = m.clk_ns.min(ev.clk_ns);
            if from_peer {
                m.sent_ns = m.sent_ns.max(ev.ts_ns);
            }
            self.stats.refreshes += 1;
            return Inserted::Refreshed { sent_ns, earlier };
        }
        // A new item: into a free place, else over the oldest when this one is newer.
        let s = &self.slots[si as usize];
        let place = match s.items.iter().position(Option::is_none) {
            Some(k) => k,
            None => {
                // Full: the oldest weak item (SNI, HTTP, DHCP, mDNS, LLMNR: they mostly
                // confirm a DNS name) makes room for a DNS item; otherwise the oldest item of
                // the newcomer's class or weaker goes, and a newcomer older than it is not
                // kept.
                let oldest = |pick: &dyn Fn(&Item) -> bool| {
                    s.items
                        .iter()
                        .enumerate()
                        .filter_map(|(k, it)| it.map(|it| (k, it)))
                        .filter(|(_, it)| pick(it))
                        .min_by_key(|(_, it)| (it.first_ns, it.name))
                };
                let (k, victim) = if is_weak(ev.source) {
                    match oldest(&|it| is_weak(it.source)) {
                        Some(v) => v,
                        None => return Inserted::Stale,
                    }
                } else {
                    oldest(&|it| is_weak(it.source))
                        .or_else(|| oldest(&|_| true))
                        .expect("a full history has items")
                };
                if is_weak(victim.source) == is_weak(ev.source) && victim.first_ns >= ev.ts_ns {
                    return Inserted::Stale;
                }
                self.free_item(&victim);
                self.slots[si as usize].items[k] = None;
                k
            }
        };
        let Some(name) = self.alloc_name(ev.name, si) else {
            return Inserted::Stale;
        };
        self.slots[si as usize].items[place] = Some(Item {
            name,
            source: ev.source,
            first_ns: ev.ts_ns,
            last_ns: ev.ts_ns,
            expires_ns: ev.ts_ns.saturating_add(life),
            sent_ns: if from_peer { ev.ts_ns } else { 0 },
            client,
            clk_ns: ev.clk_ns,
        });
        self.stats.inserts += 1;
        Inserted::New
    }

    /// Records that the others were sent the mapping proven at `ts_ns`.
    pub fn mark_sent(&mut self, ev: &Evidence) {
        let Some(&si) = self.index.get(&ev.addr) else {
            return;
        };
        let names = &self.names;
        let client = key_client(ev.source, ev.client);
        for it in self.slots[si as usize].items.iter_mut().flatten() {
            if it.client == client && names[it.name as usize] == ev.name {
                it.sent_ns = it.sent_ns.max(ev.ts_ns);
            }
        }
    }

    /// The name `addr` had when a connection started at `alive_ns`: among the items whose
    /// dispatcher clock is at or before `at_ns` (the start plus the tolerance) and that were
    /// alive at the start, the newest proven by the start, else the first proven after it. First the name `client` itself looked up in DNS
    /// (A, AAAA, CNAME), then the newest name of any source but PTR, then a PTR name.
    pub fn lookup(
        &mut self,
        addr: IpAddr,
        client: IpAddr,
        at_ns: u64,
        alive_ns: u64,
    ) -> Option<Found> {
        let &si = self.index.get(&addr)?;
        let s = &self.slots[si as usize];
        let visible = |it: &&Item| it.clk_ns <= at_ns && it.expires_ns >= alive_ns;
        // A name proven at or before the start beats one proven within the tolerance after
        // it; among the former the newest wins, among the latter the earliest. Ties on time go
        // to the smallest name, so the answer never depends on slot order.
        let rank = |it: &Item| {
            if it.first_ns <= alive_ns {
                (1u8, it.first_ns)
            } else {
                (0u8, u64::MAX - it.first_ns)
            }
        };
        let best = |f: &dyn Fn(&Item) -> bool| -> Option<Item> {
            s.items
                .iter()
                .flatten()
                .filter(visible)
                .filter(|it| f(it))
                .max_by(|a, b| {
                    rank(a).cmp(&rank(b)).then_with(|| {
                        self.names[b.name as usize]
                            .as_bytes()
                            .cmp(self.names[a.name as usize].as_bytes())
                    })
                })
                .copied()
        };
        let not_ptr = |it: &Item| it.source != NameSource::Ptr;
        let looked_up = |it: &Item| {
            matches!(
                it.source,
                NameSource::A | NameSource::Aaaa | NameSource::Cname
            ) && it.client == Some(client)
        };
        let it = best(&looked_up)
            .or_else(|| best(&not_ptr))
            .or_else(|| best(&|it| !not_ptr(it)))?;
        let found = Found {
            name: self.names[it.name as usize],
            source: it.source,
        };
        self.touch(si);
        Some(found)
    }

    /// Calls `f` with every distinct name `addr` had for a connection that started at
    /// `alive_ns` (the items [`Replica::lookup`] chooses among, of every source), in the order
    /// it prefers them: the newest proven by the start first, then those proven within the
    /// tolerance after it, earliest first; ties by name. Allocates nothing.
    pub fn names_at(&self, addr: IpAddr, at_ns: u64, alive_ns: u64, mut f: impl FnMut(&[u8])) {
        let Some(&si) = self.index.get(&addr) else {
            return;
        };
        let s = &self.slots[si as usize];
        let mut items = [None::<Item>; HISTORY];
        let mut n = 0;
        for it in s.items.iter().flatten() {
            if it.clk_ns <= at_ns && it.expires_ns >= alive_ns {
                items[n] = Some(*it);
                n += 1;
            }
        }
        let rank = |it: &Item| {
            if it.first_ns <= alive_ns {
                (1u8, it.first_ns)
            } else {
                (0u8, u64::MAX - it.first_ns)
            }
        };
        let names = &self.names;
        let live = &mut items[..n];
        live.sort_unstable_by(|a, b| {
            let (a, b) = (a.as_ref().expect("filled"), b.as_ref().expect("filled"));
            rank(b).cmp(&rank(a)).then_with(|| {
                names[a.name as usize]
                    .as_bytes()
                    .cmp(names[b.name as usize].as_bytes())
            })
        });
        for (k, it) in live.iter().flatten().enumerate() {
            let name = names[it.name as usize].as_bytes();
            let seen = live[..k]
                .iter()
                .flatten()
                .any(|p| names[p.name as usize].as_bytes() == name);
            if !seen {
                f(name);
            }
        }
    }

    /// Frees items that expired more than [`RETAIN_NS`] before `now_ns`, visiting the slots in
    /// turn at a pace of the whole table per [`SWEEP_PERIOD_NS`] of packet time, and at most
    /// [`SWEEP_SLOTS`] per call (the sweep resumes where it stopped).
    pub fn sweep(&mut self, now_ns: u64) {
        if self.slots.is_empty() {
            return;
        }
        let elapsed = now_ns.saturating_sub(self.swept_to_ns);
        let due = (self.slots.len() as u128 * u128::from(elapsed) / u128::from(SWEEP_PERIOD_NS))
            .min(SWEEP_SLOTS as u128) as usize;
        if due == 0 {
            // Less than one slot's share yet: the time carries over to the next call.
            return;
        }
        self.swept_to_ns = now_ns;
        for _ in 0..due.min(self.slots.len()) {
            if self.sweep_at >= self.slots.len() {
                self.sweep_at = 0;
            }
            let i = self.sweep_at;
            self.sweep_at += 1;
            if !self.slots[i].live {
                continue;
            }
            let mut left = 0;
            for k in 0..HISTORY {
                if let Some(it) = self.slots[i].items[k] {
                    if it.expires_ns.saturating_add(RETAIN_NS) < now_ns {
                        self.free_item(&it);
                        self.slots[i].items[k] = None;
                        self.stats.expired += 1;
                    } else {
                        left += 1;
                    }
                }
            }
            if left == 0 {
                self.remove_slot(i as u32);
            }
        }
    }

    /// Every held mapping as evidence (for snapshots), least recently used first.
    pub fn for_each(&self, mut f: impl FnMut(Evidence, u64)) {
        let mut i = self.head;
        while i != NIL {
            let s = &self.slots[i as usize];
            for it in s.items.iter().flatten() {
                f(
                    Evidence {
                        addr: s.addr,
                        name: self.names[it.name as usize],
                        source: it.source,
                        ts_ns: it.first_ns,
                        ttl_s: 0,
                        client: it.client,
                        clk_ns: it.first_ns,
                        own: None,
                    },
                    it.expires_ns,
                );
            }
            i = s.next;
        }
    }

    /// Restores a mapping from a snapshot with its expiry as saved.
    pub fn restore(&mut self, ev: &Evidence, expires_ns: u64) {
        if self.insert(ev, true) == Inserted::Stale {
            return;
        }
        let Some(&si) = self.index.get(&ev.addr) else {
            return;
        };
        let names = &self.names;
        let client = key_client(ev.source, ev.client);
        for it in self.slots[si as usize].items.iter_mut().flatten() {
            if it.client == client && names[it.name as usize] == ev.name {
                it.expires_ns = expires_ns;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn ev(addr: &str, name: &str, ts_s: u64, client: Option<&str>) -> Evidence {
        Evidence {
            addr: addr.parse().unwrap(),
            name: Name::new(name.as_bytes()),
            source: NameSource::A,
            ts_ns: ts_s * S,
            ttl_s: 60,
            client: client.map(|c| c.parse().unwrap()),
            clk_ns: ts_s * S,
            own: None,
        }
    }

    fn name_at(r: &mut Replica, addr: &str, client: &str, at_s: u64) -> Option<String> {
        r.lookup(
            addr.parse().unwrap(),
            client.parse().unwrap(),
            at_s * S,
            at_s * S,
        )
        .map(|f| String::from_utf8_lossy(f.name.as_bytes()).into_owned())
    }

    #[test]
    fn history_answers_as_of_an_instant() {
        let mut r = Replica::new(&NamesConfig::default());
        let c = Some("198.18.0.1");
        assert_eq!(
            r.insert(&ev("198.18.1.1", "old.example", 10, c), false),
            Inserted::New
        );
        assert_eq!(
            r.insert(&ev("198.18.1.1", "new.example", 20, c), false),
            Inserted::New
        );
        assert_eq!(
            r.insert(&ev("198.18.1.1", "new.example", 25, c), false),
            Inserted::Refreshed {
                sent_ns: 0,
                earlier: false
            }
        );
        // A proof older than the ones held widens the item: the others must hear of it.
        assert_eq!(
            r.insert(&ev("198.18.1.1", "new.example", 19, c), false),
            Inserted::Refreshed {
                sent_ns: 0,
                earlier: true
            }
        );
        assert_eq!(name_at(&mut r, "198.18.1.1", "198.18.0.1", 5), None);
        assert_eq!(
            name_at(&mut r, "198.18.1.1", "198.18.0.1", 15).as_deref(),
            Some("old.example")
        );
        assert_eq!(
            name_at(&mut r, "198.18.1.1", "198.18.0.1", 30).as_deref(),
            Some("new.example")
        );
        // Evidence arriving out of order lands in its place in time.
        assert_eq!(
            r.insert(&ev("198.18.1.1", "mid.example", 17, c), false),
            Inserted::New
        );
        assert_eq!(
            name_at(&mut r, "198.18.1.1", "198.18.0.1", 18).as_deref(),
            Some("mid.example")
        );
        assert_eq!(
            name_at(&mut r, "198.18.1.1", "198.18.0.1", 16).as_deref(),
            Some("old.example")
        );
    }

    #[test]
    fn the_clients_own_lookup_wins_on_shared_addresses() {
        let mut r = Replica::new(&NamesConfig::default());
        r.insert(
            &ev("198.18.7.7", "a.example", 10, Some("198.18.0.1")),
            false,
        );
        r.insert(
            &ev("198.18.7.7", "b.example", 11, Some("198.18.0.2")),
            false,
        );
        assert_eq!(
            name_at(&mut r, "198.18.7.7", "198.18.0.1", 12).as_deref(),
            Some("a.example")
        );
        assert_eq!(
            name_at(&mut r, "198.18.7.7", "198.18.0.2", 12).as_deref(),
            Some("b.example")
        );
        assert_eq!(
            name_at(&mut r, "198.18.7.7", "198.18.0.3", 12).as_deref(),
            Some("b.example")
        );
    }

    #[test]
    fn bound_evicts_least_recently_used_and_ttl_expires() {
        let cfg = NamesConfig {
            max_entries: 100,
            ttl_floor_s: 60,
            ..NamesConfig::default()
        };
        let mut r = Replica::new(&cfg);
        for i in 0..1000u32 {
            let a = std::net::Ipv4Addr::from(0xc612_0000 + i).to_string();
            r.insert(&ev(&a, &format!("h{i}.example"), 1, None), false);
        }
        let st = r.stats();
        assert_eq!(st.entries, 100);
        assert_eq!(st.evictions, 900);
        assert!(st.names <= 200);
        // The newest survive.
        assert!(name_at(&mut r, "198.18.3.231", "198.18.0.1", 2).is_some());
        for _ in 0..4 {
            r.sweep(1000 * S + RETAIN_NS);
        }
        let st = r.stats();
        assert_eq!((st.entries, st.names), (0, 0));
        assert_eq!(st.expired, 100);
        // A lookup never returns what was dead when the connection started.
        r.insert(&ev("198.18.1.1", "x.example", 10, None), false);
        assert_eq!(
            r.lookup(
                "198.18.1.1".parse().unwrap(),
                "198.18.0.1".parse().unwrap(),
                11 * S,
                500 * S
            ),
            None
        );
    }
}
