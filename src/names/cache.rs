//! One worker's replica of the address → name mappings.
//!
//! Each address keeps a short history of names ordered by the time each was first proven, so
//! that a lookup answers "which name did this address have at that instant" even after the
//! address changed name. Addresses live in slots reserved up front for `max_entries` (pages
//! become resident as they fill) with a least-recently-used list: at the bound the least
//! recently used address is evicted. A slot holds its first history item itself and chains
//! the others from a pool, so the common address with one name costs one slot. Names and
//! asking clients are interned ([`Interner`]): each distinct one is stored once and items
//! point at it, so memory is bounded by the caps and not by how often a name repeats.
//! Items expire `clamp(TTL, floor, cap)` after their last proof; an incremental sweep, a few
//! thousand slots per call, frees them.
//!
//! Determinism: a lookup only considers items whose dispatcher clock is at or before `at_ns`
//! (the connection's start plus the tolerance) and that were alive at the connection's start.
//! Items are freed only an hour after they expire, so which items a replica still holds
//! (sweep timing, arrival order) does not change an answer for connections shorter than that.

use super::store::{Id, Interner};
use super::{Evidence, Name, NameSource, NamesConfig};
use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Names kept per address.
pub const HISTORY: usize = 8;
const NIL: u32 = u32::MAX;
/// The place of a slot's own item among the item references ([`Replica::refs`]); pool links
/// are numbered below it.
const INLINE: u32 = u32::MAX - 1;
/// Slots visited by one sweep call at most.
const SWEEP_SLOTS: usize = 4096;
/// Packet time in which the sweep visits every slot once. Items are freed only an hour
/// ([`RETAIN_NS`]) after they expire, so visiting each slot once a minute frees them late by
/// a minute at most, at a sixtieth of the work of a full pass every tick.
const SWEEP_PERIOD_NS: u64 = 60_000_000_000;
/// How long an expired item is kept before it is freed: records are produced when a
/// connection ends, and a lookup must see what was alive when it started.
pub const RETAIN_NS: u64 = 3_600_000_000_000;
/// Arena bytes reserved per name the name table holds (a 24-byte name takes 32).
const NAME_ARENA_PER_ENTRY: usize = 40;
/// Distinct asking clients a replica holds (at least; their ids take 24 bits of an item).
/// Beyond them a DNS answer is kept without its client: lookups by that client fall back to
/// the address's newest name instead of evicting addresses to make room.
const MAX_CLIENTS: usize = 1 << 16;
/// An item's client field: no client, or one the interner does not hold (matches no item).
const NO_CLIENT: u32 = 0xff_ffff;
const UNKNOWN_CLIENT: u32 = 0xff_fffe;

/// One name of an address's history: 40 bytes.
#[derive(Clone, Copy, Debug)]
struct Item {
    /// Earliest proof.
    first_ns: u64,
    expires_ns: u64,
    /// Time of the last proof the other replicas were sent (or that came from them).
    sent_ns: u64,
    /// Smallest dispatcher clock among the proofs.
    clk_ns: u64,
    /// The interned name; [`NIL`] in a slot without its own item.
    name: Id,
    /// The interned asking client ([`NO_CLIENT`] for none) above the source's byte.
    tag: u32,
}

impl Item {
    fn source(&self) -> NameSource {
        NameSource::ALL[(self.tag & 0xff) as usize]
    }

    fn client(&self) -> u32 {
        self.tag >> 8
    }
}

/// A further history item of a slot, chained from its slot.
#[derive(Clone, Copy, Debug)]
struct Link {
    item: Item,
    next: u32,
}

/// One address: 72 bytes with its first item.
#[derive(Clone, Copy, Debug)]
struct Slot {
    first: Item,
    addr: [u8; 16],
    prev: u32,
    next: u32,
    /// The chain of further items ([`NIL`]: none).
    more: u32,
    v4: bool,
    live: bool,
}

impl Slot {
    fn ip(&self) -> IpAddr {
        if self.v4 {
            IpAddr::V4(Ipv4Addr::new(
                self.addr[0],
                self.addr[1],
                self.addr[2],
                self.addr[3],
            ))
        } else {
            IpAddr::V6(Ipv6Addr::from(self.addr))
        }
    }

    fn new(addr: IpAddr) -> Slot {
        let (bytes, v4) = match addr {
            IpAddr::V4(a) => {
                let mut b = [0; 16];
                b[..4].copy_from_slice(&a.octets());
                (b, true)
            }
            IpAddr::V6(a) => (a.octets(), false),
        };
        Slot {
            first: EMPTY_ITEM,
            addr: bytes,
            prev: NIL,
            next: NIL,
            more: NIL,
            v4,
            live: true,
        }
    }
}

const EMPTY_ITEM: Item = Item {
    first_ns: 0,
    expires_ns: 0,
    sent_ns: 0,
    clk_ns: 0,
    name: NIL,
    tag: NO_CLIENT << 8,
};

/// The interner key of a client address: its family's length, then its bytes.
fn client_key(a: IpAddr, buf: &mut [u8; 17]) -> &[u8] {
    match a {
        IpAddr::V4(v) => {
            buf[0] = 4;
            buf[1..5].copy_from_slice(&v.octets());
            &buf[..5]
        }
        IpAddr::V6(v) => {
            buf[0] = 16;
            buf[1..17].copy_from_slice(&v.octets());
            &buf[..17]
        }
    }
}

/// A name as stored (already normalised by whoever proved it), spelled as it is.
fn name_of(bytes: &[u8]) -> Name {
    let mut n = Name::default();
    for &b in bytes {
        n.push_raw(b);
    }
    n
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
    /// Bytes the replica's tables hold in use (reserved but untouched space not counted).
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

/// The item references of one slot ([`INLINE`] or a pool link), in chain order.
type Refs = ([u32; HISTORY], usize);

/// One worker's replica.
pub struct Replica {
    cfg: NamesConfig,
    /// Slot numbers, hashed by address.
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
    slots: Vec<Slot>,
    free: Vec<u32>,
    pool: Vec<Link>,
    free_links: Vec<u32>,
    max_links: usize,
    /// Least recently used first.
    head: u32,
    tail: u32,
    names: Interner,
    clients: Interner,
    /// History items held.
    items: usize,
    sweep_at: usize,
    /// Packet time up to which the sweep has done its share of the slots.
    swept_to_ns: u64,
    stats: ReplicaStats,
}

impl Replica {
    /// A replica with room reserved for `max_entries` addresses, as many further history
    /// items, and the names they point at.
    pub fn new(cfg: &NamesConfig) -> Replica {
        let max = cfg.max_entries.max(1);
        Replica {
            cfg: cfg.clone(),
            index: HashTable::with_capacity(max),
            hasher: DefaultHashBuilder::default(),
            slots: Vec::with_capacity(max),
            free: Vec::new(),
            pool: Vec::with_capacity(max),
            free_links: Vec::new(),
            max_links: max,
            head: NIL,
            tail: NIL,
            names: Interner::new(max, NAME_ARENA_PER_ENTRY),
            clients: Interner::new(MAX_CLIENTS, Interner::entry_bytes(17)),
            items: 0,
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
        s.names = self.items as u64;
        s.bytes = (self.slots.len() * std::mem::size_of::<Slot>()
            + self.pool.len() * std::mem::size_of::<Link>()
            + self.index.capacity() * (std::mem::size_of::<u32>() + 1)
            + self.names.bytes()
            + self.clients.bytes()
            + (self.free.capacity() + self.free_links.capacity()) * 4) as u64;
        s
    }

    /// Bytes one address with one name of 24 bytes costs (for namecache.log and docs): its
    /// slot, its name and the two table buckets that find them.
    pub fn bytes_per_entry() -> u64 {
        (std::mem::size_of::<Slot>()
            + Interner::entry_bytes(24)
            + 2 * (std::mem::size_of::<u32>() + 1)) as u64
    }

    fn find_slot(&self, addr: IpAddr) -> Option<u32> {
        let hash = self.hasher.hash_one(addr);
        self.index
            .find(hash, |&i| self.slots[i as usize].ip() == addr)
            .copied()
    }

    /// The item references of slot `si`.
    fn refs(&self, si: u32) -> Refs {
        let s = &self.slots[si as usize];
        let mut out = ([NIL; HISTORY], 0);
        if s.first.name != NIL {
            out.0[0] = INLINE;
            out.1 = 1;
        }
        let mut l = s.more;
        while l != NIL && out.1 < HISTORY {
            out.0[out.1] = l;
            out.1 += 1;
            l = self.pool[l as usize].next;
        }
        out
    }

    fn item(&self, si: u32, r: u32) -> &Item {
        if r == INLINE {
            &self.slots[si as usize].first
        } else {
            &self.pool[r as usize].item
        }
    }

    fn item_mut(&mut self, si: u32, r: u32) -> &mut Item {
        if r == INLINE {
            &mut self.slots[si as usize].first
        } else {
            &mut self.pool[r as usize].item
        }
    }

    /// Copies of the items of slot `si` (for ranking without holding a borrow).
    fn items_of(&self, si: u32) -> ([Item; HISTORY], usize) {
        let (refs, n) = self.refs(si);
        let mut out = [EMPTY_ITEM; HISTORY];
        for (k, &r) in refs[..n].iter().enumerate() {
            out[k] = *self.item(si, r);
        }
        (out, n)
    }

    /// Adds an item to slot `si` (it has fewer than [`HISTORY`]); false when the pool is full.
    fn push_item(&mut self, si: u32, it: Item) -> bool {
        if self.slots[si as usize].first.name == NIL {
            self.slots[si as usize].first = it;
        } else {
            let link = Link {
                item: it,
                next: self.slots[si as usize].more,
            };
            let l = match self.free_links.pop() {
                Some(l) => {
                    self.pool[l as usize] = link;
                    l
                }
                None if self.pool.len() < self.max_links => {
                    self.pool.push(link);
                    (self.pool.len() - 1) as u32
                }
                None => return false,
            };
            self.slots[si as usize].more = l;
        }
        self.items += 1;
        true
    }

    /// Removes item `r` of slot `si` and drops its references.
    fn drop_item(&mut self, si: u32, r: u32) {
        let it = *self.item(si, r);
        self.names.release(it.name);
        if it.client() < UNKNOWN_CLIENT {
            self.clients.release(it.client());
        }
        self.items -= 1;
        let more = self.slots[si as usize].more;
        if r == INLINE {
            // The first chained item moves into the slot.
            if more == NIL {
                self.slots[si as usize].first = EMPTY_ITEM;
            } else {
                let link = self.pool[more as usize];
                self.slots[si as usize].first = link.item;
                self.slots[si as usize].more = link.next;
                self.free_links.push(more);
            }
            return;
        }
        if more == r {
            self.slots[si as usize].more = self.pool[r as usize].next;
        } else {
            let mut p = more;
            while self.pool[p as usize].next != r {
                p = self.pool[p as usize].next;
            }
            self.pool[p as usize].next = self.pool[r as usize].next;
        }
        self.free_links.push(r);
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

    fn remove_slot(&mut self, i: u32) {
        self.unlink(i);
        while self.slots[i as usize].first.name != NIL {
            self.drop_item(i, INLINE);
        }
        let addr = self.slots[i as usize].ip();
        self.slots[i as usize].live = false;
        let hash = self.hasher.hash_one(addr);
        if let Ok(e) = self.index.find_entry(hash, |&k| k == i) {
            e.remove();
        }
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

    /// Frees the least recently used address to make room, but never `keep` (the one being
    /// written to); false when there is nothing else to free.
    fn make_room(&mut self, keep: u32) -> bool {
        self.head != keep && self.evict_lru()
    }

    fn intern_name(&mut self, name: &Name, keep: u32) -> Option<Id> {
        loop {
            if let Some(id) = self.names.intern(name.as_bytes()) {
                return Some(id);
            }
            if !self.make_room(keep) {
                return None;
            }
        }
    }

    fn intern_client(&mut self, client: Option<IpAddr>) -> u32 {
        let Some(c) = client else {
            return NO_CLIENT;
        };
        let mut buf = [0; 17];
        self.clients
            .intern(client_key(c, &mut buf))
            .unwrap_or(NO_CLIENT)
    }

    /// The client field items proven for `client` carry ([`UNKNOWN_CLIENT`] when no item
    /// has that client).
    fn client_tag(&self, client: Option<IpAddr>) -> u32 {
        let Some(c) = client else {
            return NO_CLIENT;
        };
        let mut buf = [0; 17];
        self.clients
            .find(client_key(c, &mut buf))
            .unwrap_or(UNKNOWN_CLIENT)
    }

    fn slot_for(&mut self, addr: IpAddr) -> u32 {
        if let Some(i) = self.find_slot(addr) {
            self.touch(i);
            return i;
        }
        if self.index.len() >= self.cfg.max_entries.max(1) {
            self.evict_lru();
        }
        let fresh = Slot::new(addr);
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
        let hash = self.hasher.hash_one(addr);
        let Replica {
            index,
            hasher,
            slots,
            ..
        } = self;
        index.insert_unique(hash, i, |&k| hasher.hash_one(slots[k as usize].ip()));
        self.push_tail(i);
        i
    }

    /// The reference of the item of slot `si` with this name, client field and PTR-ness.
    fn find_item(&self, si: u32, name: Option<Id>, client: u32, is_ptr: bool) -> Option<u32> {
        let name = name?;
        let (refs, n) = self.refs(si);
        refs[..n].iter().copied().find(|&r| {
            let it = self.item(si, r);
            it.name == name && it.client() == client && (it.source() == NameSource::Ptr) == is_ptr
        })
    }

    /// Inserts one proven mapping. `from_peer` marks evidence another worker replicated (the
    /// others already have it).
    ///
    /// An address keeps one item per distinct (name, asking client, PTR or not); proofs of the
    /// same item merge (earliest proof, longest expiry). The client is kept only for DNS
    /// lookups (A, AAAA, CNAME), the only sources a client "looked up". Merging into keys
    /// rather than into neighbours in time makes the history a function of the set of proofs,
    /// whatever order they arrive in.
    pub fn insert(&mut self, ev: &Evidence, from_peer: bool) -> Inserted {
        let life = self.cfg.lifetime_ns(ev.ttl_s);
        let si = self.slot_for(ev.addr);
        let is_ptr = ev.source == NameSource::Ptr;
        let client = key_client(ev.source, ev.client);
        let name_id = self.names.find(ev.name.as_bytes());
        if let Some(r) = self.find_item(si, name_id, self.client_tag(client), is_ptr) {
            let m = self.item_mut(si, r);
            let sent_ns = m.sent_ns;
            let earlier = ev.ts_ns < m.first_ns || ev.clk_ns < m.clk_ns;
            // The item's source is that of its earliest proof (ties: the first in
            // `NameSource` order), so it does not depend on arrival order either.
            if (ev.ts_ns, ev.source as u8) < (m.first_ns, m.source() as u8) {
                m.tag = (m.tag & !0xff) | ev.source as u32;
            }
            m.first_ns = m.first_ns.min(ev.ts_ns);
            m.expires_ns = m.expires_ns.max(ev.ts_ns.saturating_add(life));
            m.clk_ns = m.clk_ns.min(ev.clk_ns);
            if from_peer {
                m.sent_ns = m.sent_ns.max(ev.ts_ns);
            }
            self.stats.refreshes += 1;
            return Inserted::Refreshed { sent_ns, earlier };
        }
        // A new item: into a free place, else over the oldest when this one is newer.
        let (refs, n) = self.refs(si);
        if n == HISTORY {
            // Full: the oldest weak item (SNI, HTTP, DHCP, mDNS, LLMNR: they mostly confirm a
            // DNS name) makes room for a DNS item; otherwise the oldest item of the newcomer's
            // class or weaker goes, and a newcomer older than it is not kept.
            let oldest = |pick: &dyn Fn(&Item) -> bool| {
                refs.iter()
                    .map(|&r| (r, *self.item(si, r)))
                    .filter(|(_, it)| pick(it))
                    .min_by_key(|(_, it)| (it.first_ns, it.name))
            };
            let (r, victim) = if is_weak(ev.source) {
                match oldest(&|it| is_weak(it.source())) {
                    Some(v) => v,
                    None => return Inserted::Stale,
                }
            } else {
                oldest(&|it| is_weak(it.source()))
                    .or_else(|| oldest(&|_| true))
                    .expect("a full history has items")
            };
            if is_weak(victim.source()) == is_weak(ev.source) && victim.first_ns >= ev.ts_ns {
                return Inserted::Stale;
            }
            self.drop_item(si, r);
        }
        let Some(name) = self.intern_name(&ev.name, si) else {
            return Inserted::Stale;
        };
        let client = self.intern_client(client);
        let item = Item {
            first_ns: ev.ts_ns,
            expires_ns: ev.ts_ns.saturating_add(life),
            sent_ns: if from_peer { ev.ts_ns } else { 0 },
            clk_ns: ev.clk_ns,
            name,
            tag: client << 8 | ev.source as u32,
        };
        while !self.push_item(si, item) {
            if !self.make_room(si) {
                self.names.release(name);
                if client != NO_CLIENT {
                    self.clients.release(client);
                }
                return Inserted::Stale;
            }
        }
        self.stats.inserts += 1;
        Inserted::New
    }

    /// Calls `f` on every item of `ev`'s address with its name and client.
    fn for_matching(&mut self, ev: &Evidence, mut f: impl FnMut(&mut Item)) {
        let Some(si) = self.find_slot(ev.addr) else {
            return;
        };
        let Some(name) = self.names.find(ev.name.as_bytes()) else {
            return;
        };
        let client = self.client_tag(key_client(ev.source, ev.client));
        let (refs, n) = self.refs(si);
        for &r in &refs[..n] {
            let it = self.item_mut(si, r);
            if it.client() == client && it.name == name {
                f(it);
            }
        }
    }

    /// Records that the others were sent the mapping proven at `ts_ns`.
    pub fn mark_sent(&mut self, ev: &Evidence) {
        self.for_matching(ev, |it| it.sent_ns = it.sent_ns.max(ev.ts_ns));
    }

    /// The visible items of `addr` for a connection that started at `alive_ns`, best first:
    /// the newest proven by the start, then those proven within the tolerance after it,
    /// earliest first; ties go to the smallest name, so the order never depends on slot order.
    fn ranked(&self, si: u32, at_ns: u64, alive_ns: u64) -> ([Item; HISTORY], usize) {
        let (refs, n) = self.refs(si);
        let mut out = [EMPTY_ITEM; HISTORY];
        let mut m = 0;
        for it in refs[..n].iter().map(|&r| self.item(si, r)) {
            if it.clk_ns <= at_ns && it.expires_ns >= alive_ns {
                out[m] = *it;
                m += 1;
            }
        }
        let rank = |it: &Item| {
            if it.first_ns <= alive_ns {
                (1u8, it.first_ns)
            } else {
                (0u8, u64::MAX - it.first_ns)
            }
        };
        out[..m].sort_unstable_by(|a, b| {
            rank(b)
                .cmp(&rank(a))
                .then_with(|| self.names.get(a.name).cmp(self.names.get(b.name)))
        });
        (out, m)
    }

    /// The name `addr` had when a connection started at `alive_ns`: among the items whose
    /// dispatcher clock is at or before `at_ns` (the start plus the tolerance) and that were
    /// alive at the start, the newest proven by the start, else the first proven after it.
    /// First the name `client` itself looked up in DNS (A, AAAA, CNAME), then the newest name
    /// of any source but PTR, then a PTR name.
    pub fn lookup(
        &mut self,
        addr: IpAddr,
        client: IpAddr,
        at_ns: u64,
        alive_ns: u64,
    ) -> Option<Found> {
        let si = self.find_slot(addr)?;
        let (items, n) = self.ranked(si, at_ns, alive_ns);
        let items = &items[..n];
        let client = self.client_tag(Some(client));
        let looked_up = |it: &&Item| {
            matches!(
                it.source(),
                NameSource::A | NameSource::Aaaa | NameSource::Cname
            ) && it.client() == client
        };
        let is_ptr = |it: &&Item| it.source() == NameSource::Ptr;
        let it = items
            .iter()
            .find(looked_up)
            .or_else(|| items.iter().find(|it| !is_ptr(it)))
            .or_else(|| items.iter().find(is_ptr))?;
        let found = Found {
            name: name_of(self.names.get(it.name)),
            source: it.source(),
        };
        self.touch(si);
        Some(found)
    }

    /// Calls `f` with every distinct name `addr` had for a connection that started at
    /// `alive_ns` (the items [`Replica::lookup`] chooses among, of every source), in the order
    /// it prefers them: the newest proven by the start first, then those proven within the
    /// tolerance after it, earliest first; ties by name. Allocates nothing.
    pub fn names_at(&self, addr: IpAddr, at_ns: u64, alive_ns: u64, mut f: impl FnMut(&[u8])) {
        let Some(si) = self.find_slot(addr) else {
            return;
        };
        let (items, n) = self.ranked(si, at_ns, alive_ns);
        for (k, it) in items[..n].iter().enumerate() {
            // One interned entry per distinct name: equal names have equal ids.
            if !items[..k].iter().any(|p| p.name == it.name) {
                f(self.names.get(it.name));
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
            let i = self.sweep_at as u32;
            self.sweep_at += 1;
            if !self.slots[i as usize].live {
                continue;
            }
            let (refs, n) = self.refs(i);
            // Last first: dropping a chained item never moves the ones before it.
            for &r in refs[..n].iter().rev() {
                if self.item(i, r).expires_ns.saturating_add(RETAIN_NS) < now_ns {
                    self.drop_item(i, r);
                    self.stats.expired += 1;
                }
            }
            if self.slots[i as usize].first.name == NIL {
                self.remove_slot(i);
            }
        }
    }

    /// Every held mapping as evidence (for snapshots), least recently used first.
    pub fn for_each(&self, mut f: impl FnMut(Evidence, u64)) {
        let mut i = self.head;
        while i != NIL {
            let s = &self.slots[i as usize];
            let (items, n) = self.items_of(i);
            for it in &items[..n] {
                let client = (it.client() < UNKNOWN_CLIENT).then(|| {
                    let key = self.clients.get(it.client());
                    if key[0] == 4 {
                        IpAddr::V4(Ipv4Addr::new(key[1], key[2], key[3], key[4]))
                    } else {
                        let b: [u8; 16] = key[1..17].try_into().expect("16 bytes");
                        IpAddr::V6(Ipv6Addr::from(b))
                    }
                });
                f(
                    Evidence {
                        addr: s.ip(),
                        name: name_of(self.names.get(it.name)),
                        source: it.source(),
                        ts_ns: it.first_ns,
                        ttl_s: 0,
                        client,
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
        self.for_matching(ev, |it| it.expires_ns = expires_ns);
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
