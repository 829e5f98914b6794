//! What few connections need, kept out of [`Conn`](super::conn::Conn) so that the common
//! connection stays small: the out-of-order ranges above a TCP hole, tunnel parents (and the
//! last packet's tunnel), the SYN-ACK a connection began with. A connection holds an index into its shard's
//! [`ColdStore`] only once it needs one of these; the store is bounded by the flow table
//! (one entry per connection at most) and reuses freed entries.

use super::conn::PendingSynAck;
use super::tcp::Ranges;
use crate::types::record::{Uid, MAX_TUNNEL_PARENTS};

/// No cold entry.
pub const NO_COLD: u32 = u32::MAX;

/// One connection's rarely used state.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cold {
    /// Ranges seen above a hole, per end of the connection's key (`lo`, `hi`): an end keeps
    /// its index when the roles flip.
    pub ranges: [Ranges; 2],
    /// Uids of the encapsulating connections (Zeek's `tunnel_parents`).
    pub parents: [Option<Uid>; MAX_TUNNEL_PARENTS],
    /// The innermost tunnel of the last packet (Zeek's `Connection::encapsulation`).
    pub encap: Option<Uid>,
    /// The first packet of a connection that began with a SYN-ACK (see `Conn::apply_tcp`).
    pub pending_synack: Option<PendingSynAck>,
}

/// A shard's cold entries.
#[derive(Default)]
pub struct ColdStore {
    items: Vec<Cold>,
    free: Vec<u32>,
}

impl ColdStore {
    /// The entry at `i`, if there is one.
    #[inline]
    pub fn get(&self, i: u32) -> Option<&Cold> {
        if i == NO_COLD {
            None
        } else {
            Some(&self.items[i as usize])
        }
    }

    /// The entry at `*i`, allocating a fresh one (and storing its index in `*i`) when there
    /// is none yet.
    pub fn get_or_insert(&mut self, i: &mut u32) -> &mut Cold {
        if *i == NO_COLD {
            *i = match self.free.pop() {
                Some(f) => {
                    self.items[f as usize] = Cold::default();
                    f
                }
                None => {
                    self.items.push(Cold::default());
                    (self.items.len() - 1) as u32
                }
            };
        }
        &mut self.items[*i as usize]
    }

    /// Frees the entry at `*i` (if any) and clears the index.
    pub fn release(&mut self, i: &mut u32) {
        if *i != NO_COLD {
            self.free.push(*i);
            *i = NO_COLD;
        }
    }

    /// Entries in use.
    pub fn len(&self) -> usize {
        self.items.len() - self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_entries_are_reused_fresh() {
        let mut s = ColdStore::default();
        let (mut a, mut b) = (NO_COLD, NO_COLD);
        s.get_or_insert(&mut a).ranges[0][0] = (5, 9);
        s.get_or_insert(&mut b);
        assert_eq!((a, b, s.len()), (0, 1, 2));
        assert_eq!(
            s.get_or_insert(&mut a).ranges[0][0],
            (5, 9),
            "the same entry again"
        );
        s.release(&mut a);
        assert_eq!((a, s.len()), (NO_COLD, 1));
        assert!(s.get(a).is_none());
        let mut c = NO_COLD;
        assert_eq!(
            s.get_or_insert(&mut c).ranges[0][0],
            (0, 0),
            "reused, and cleared"
        );
        assert_eq!(c, 0);
    }
}
