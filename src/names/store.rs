//! Interned byte strings for a replica: each distinct name (or client address) is stored
//! once, with a count of the history items that point at it, and is freed when the last one
//! goes.
//!
//! Entries live in one byte arena reserved up front (pages become resident as they are
//! used) in 4-byte granules: a 6-byte header (references, size class, length) and the bytes.
//! A freed entry goes on the free list of its size class; an allocation takes its own class's
//! list, else a larger class's entry whole, else the untouched end of the arena. A full arena
//! says so and the replica evicts its least recently used address to make room; an arena with
//! no entry left is reset, so a shift in name lengths can never leave it stuck in fragments.
//! A hash table of entry offsets finds an existing entry by its bytes.

use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::BuildHasher;

/// An entry's place in the arena, in granules; stable until the entry is freed.
pub type Id = u32;

const GRANULE: usize = 4;
/// References (u32), size class in granules (u8), length (u8).
const HEADER: usize = 6;
/// Longest string an entry holds.
pub const MAX_LEN: usize = u8::MAX as usize;
/// Granules of the largest entry.
const MAX_CLASS: usize = (HEADER + MAX_LEN).div_ceil(GRANULE);
const NIL: u32 = u32::MAX;

pub struct Interner {
    arena: Vec<u8>,
    /// Granules in use or on a free list; beyond it the arena is untouched.
    end: usize,
    /// Granules the arena may reach.
    cap: usize,
    /// Per size class, the first free entry (the next one's offset is in its reference field).
    free: [u32; MAX_CLASS + 1],
    table: HashTable<Id>,
    hasher: DefaultHashBuilder,
    /// Entries held at most: the table's reserved capacity, so it never grows.
    max_live: usize,
    live: usize,
    live_bytes: usize,
}

fn class_of(len: usize) -> usize {
    (HEADER + len).div_ceil(GRANULE)
}

impl Interner {
    /// An interner for at least `entries` strings with `bytes_per_entry` of arena for each
    /// string the table takes room for ([`Interner::capacity`]: the table rounds up to a
    /// power of two buckets). Both are reserved now, so neither grows (and copies) while
    /// packets wait.
    pub fn new(entries: usize, bytes_per_entry: usize) -> Interner {
        let table = HashTable::with_capacity(entries);
        let cap = (table.capacity().saturating_mul(bytes_per_entry) / GRANULE)
            .clamp(MAX_CLASS, NIL as usize - 1);
        Interner {
            max_live: table.capacity(),
            arena: Vec::with_capacity(cap * GRANULE),
            end: 0,
            cap,
            free: [NIL; MAX_CLASS + 1],
            table,
            hasher: DefaultHashBuilder::default(),
            live: 0,
            live_bytes: 0,
        }
    }

    fn at(&self, id: Id) -> usize {
        id as usize * GRANULE
    }

    fn refs(&self, id: Id) -> u32 {
        let o = self.at(id);
        u32::from_le_bytes(self.arena[o..o + 4].try_into().expect("4 bytes"))
    }

    fn set_refs(&mut self, id: Id, refs: u32) {
        let o = self.at(id);
        self.arena[o..o + 4].copy_from_slice(&refs.to_le_bytes());
    }

    fn class(&self, id: Id) -> usize {
        self.arena[self.at(id) + 4] as usize
    }

    /// The bytes of a live entry.
    pub fn get(&self, id: Id) -> &[u8] {
        let o = self.at(id);
        let len = self.arena[o + 5] as usize;
        &self.arena[o + HEADER..o + HEADER + len]
    }

    fn hash(&self, bytes: &[u8]) -> u64 {
        self.hasher.hash_one(bytes)
    }

    /// The entry holding `bytes`, if there is one (its references are not changed).
    pub fn find(&self, bytes: &[u8]) -> Option<Id> {
        let bytes = &bytes[..bytes.len().min(MAX_LEN)];
        self.table
            .find(self.hash(bytes), |&id| self.get(id) == bytes)
            .copied()
    }

    /// One more reference to `bytes` (cut at [`MAX_LEN`]), stored if it is new. `None` when
    /// the arena has no room: the caller frees entries and asks again.
    pub fn intern(&mut self, bytes: &[u8]) -> Option<Id> {
        let bytes = &bytes[..bytes.len().min(MAX_LEN)];
        let hash = self.hash(bytes);
        if let Some(&id) = self.table.find(hash, |&id| self.get(id) == bytes) {
            self.set_refs(id, self.refs(id).saturating_add(1));
            return Some(id);
        }
        if self.live >= self.max_live {
            return None;
        }
        let id = self.alloc(class_of(bytes.len()))?;
        let o = self.at(id);
        self.arena[o..o + 4].copy_from_slice(&1u32.to_le_bytes());
        self.arena[o + 5] = bytes.len() as u8;
        self.arena[o + HEADER..o + HEADER + bytes.len()].copy_from_slice(bytes);
        let Interner {
            table,
            hasher,
            arena,
            ..
        } = self;
        table.insert_unique(hash, id, |&k| {
            let o = k as usize * GRANULE;
            let len = arena[o + 5] as usize;
            hasher.hash_one(&arena[o + HEADER..o + HEADER + len])
        });
        self.live += 1;
        self.live_bytes += bytes.len();
        Some(id)
    }

    /// One more reference to a live entry.
    pub fn retain(&mut self, id: Id) {
        self.set_refs(id, self.refs(id).saturating_add(1));
    }

    /// Drops one reference; the last frees the entry. An entry referenced `u32::MAX` times
    /// stays for good (the count saturated).
    pub fn release(&mut self, id: Id) {
        let refs = self.refs(id);
        if refs == u32::MAX {
            return;
        }
        if refs > 1 {
            self.set_refs(id, refs - 1);
            return;
        }
        let len = self.get(id).len();
        let hash = self.hash(self.get(id));
        if let Ok(e) = self.table.find_entry(hash, |&k| k == id) {
            e.remove();
        }
        let class = self.class(id);
        self.set_refs(id, self.free[class]);
        self.free[class] = id;
        self.live -= 1;
        self.live_bytes -= len;
        if self.live == 0 {
            self.reset();
        }
    }

    /// No entry is live: the whole arena is free again, in one piece.
    fn reset(&mut self) {
        self.end = 0;
        self.free = [NIL; MAX_CLASS + 1];
    }

    fn alloc(&mut self, class: usize) -> Option<Id> {
        if let Some(c) = (class..=MAX_CLASS).find(|&c| self.free[c] != NIL) {
            let id = self.free[c];
            self.free[c] = self.refs(id);
            return Some(id);
        }
        if self.end + class > self.cap {
            return None;
        }
        let id = self.end as Id;
        self.end += class;
        self.arena.resize(self.end * GRANULE, 0);
        let o = self.at(id);
        self.arena[o + 4] = class as u8;
        Some(id)
    }

    /// Strings held at most.
    pub fn capacity(&self) -> usize {
        self.max_live
    }

    /// Live entries.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Bytes of the strings held (without headers).
    pub fn string_bytes(&self) -> usize {
        self.live_bytes
    }

    /// Bytes in use: the arena up to its end and the table's buckets with their control bytes.
    pub fn bytes(&self) -> usize {
        self.end * GRANULE + self.table.capacity() * (std::mem::size_of::<Id>() + 1)
    }

    /// Bytes one entry of `len` bytes takes in the arena.
    pub fn entry_bytes(len: usize) -> usize {
        class_of(len) * GRANULE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_string_is_stored_once_and_freed_with_its_last_reference() {
        let mut s = Interner::new(16, 256);
        let a = s.intern(b"a.example").unwrap();
        let b = s.intern(b"b.example").unwrap();
        assert_ne!(a, b);
        assert_eq!(s.intern(b"a.example"), Some(a));
        assert_eq!((s.len(), s.get(a)), (2, &b"a.example"[..]));
        s.release(a);
        assert_eq!(s.find(b"a.example"), Some(a), "one reference is left");
        s.release(a);
        assert_eq!(s.find(b"a.example"), None);
        // The freed entry is reused by a string of its size class.
        assert_eq!(s.intern(b"c.example"), Some(a));
        assert_eq!(s.get(b), b"b.example");
    }

    #[test]
    fn a_full_arena_says_so_and_resets_when_emptied() {
        // Room for 28 strings (the table's capacity for 16) of 20 bytes each: 196 granules.
        let mut s = Interner::new(16, Interner::entry_bytes(20));
        assert_eq!(s.capacity(), 28);
        let long = [b'x'; MAX_LEN];
        let long_id = s.intern(&long).unwrap();
        let mut ids = Vec::new();
        while let Some(id) = s.intern(format!("name-{:015}", ids.len()).as_bytes()) {
            ids.push(id);
        }
        assert_eq!(
            ids.len(),
            (196 - 66) / 7,
            "the arena, not the table, is full"
        );
        // A freed longer entry serves a shorter string whole.
        s.release(long_id);
        assert_eq!(s.intern(b"another-name-of-20-b"), Some(long_id));
        for id in ids {
            s.release(id);
        }
        s.release(long_id);
        assert!(s.is_empty());
        // Empty: the arena is one piece again, so the longest string fits.
        assert!(s.intern(&long).is_some());
        assert_eq!(s.bytes() % GRANULE, 0);
    }
}
