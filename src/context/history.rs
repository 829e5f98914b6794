//! Validity windows from successive snapshots.
//!
//! A snapshot (one kubectl or describe-instances file) says which objects held which
//! addresses when it was taken (the file's modification time). Replayed in time order:
//!
//! - a window opens at the object's declared start (pod `startTime`, instance launch), or at
//!   the first snapshot that shows it when it declares none (or declares a later one);
//! - it closes at its declared end (deletion time, finished pod), or at the first later
//!   snapshot of the same scope (same kind, same account and region) that no longer lists
//!   it; an object that comes back reopens it;
//! - a later holder of the same address (same rank) closes the previous holder's window
//!   where its own begins, since two pods never hold one address at once;
//! - a window still open in the latest snapshot stays open.

use super::{Rank, Values, Window};
use hashbrown::HashMap;
use std::collections::BTreeSet;
use std::net::IpAddr;

/// One object's address as one snapshot shows it.
#[derive(Clone, Debug)]
pub struct Observation {
    /// Which snapshots can speak for this object's absence: `k8s:Pod`, `ec2:ACCOUNT:REGION`.
    pub scope: Box<str>,
    /// The object's identity within its scope (pod uid, instance id).
    pub id: Box<str>,
    pub ip: IpAddr,
    /// Declared start (start time, launch time), nanoseconds since the epoch.
    pub start_ns: Option<u64>,
    /// Declared end (deletion time, finish time).
    pub end_ns: Option<u64>,
    pub rank: Rank,
    pub values: Values,
}

/// What one snapshot file holds.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// When it was taken (the file's modification time).
    pub taken_ns: u64,
    pub observations: Vec<Observation>,
    /// The scopes this snapshot lists completely.
    pub scopes: BTreeSet<Box<str>>,
    /// Objects of kinds that hold no address (deployments, ...).
    pub ignored: u64,
    /// Objects without an address (pending pods, headless services).
    pub no_address: u64,
    /// Pods on the host network (their address is the node's).
    pub host_network: u64,
}

impl Snapshot {
    /// An empty snapshot taken at `taken_ns`.
    pub fn at(taken_ns: u64) -> Snapshot {
        Snapshot {
            taken_ns,
            ..Snapshot::default()
        }
    }

    /// Marks `scope` as listed by this snapshot.
    pub fn cover(&mut self, scope: &str) {
        if !self.scopes.contains(scope) {
            self.scopes.insert(scope.into());
        }
    }
}

/// Key of a track: scope, object and address.
type TrackKey = (Box<str>, Box<str>, IpAddr);

#[derive(Clone, Debug)]
struct Track {
    first_seen: u64,
    last_seen: u64,
    start: Option<u64>,
    end: Option<u64>,
    /// The first snapshot of its scope after `last_seen` that did not list it.
    gone_at: Option<u64>,
    rank: Rank,
    values: Values,
}

/// The accumulated history of one series of snapshots.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    tracks: HashMap<TrackKey, Track>,
    /// The time of the latest snapshot applied.
    pub latest_ns: Option<u64>,
    /// Snapshots applied.
    pub snapshots: u64,
}

impl Timeline {
    /// Applies the next snapshot. Snapshots are expected in time order; one older than the
    /// latest is applied as if taken at the latest (callers rebuild from scratch instead).
    pub fn apply(&mut self, snap: Snapshot) {
        let t = self
            .latest_ns
            .map_or(snap.taken_ns, |l| l.max(snap.taken_ns));
        self.latest_ns = Some(t);
        self.snapshots += 1;
        let mut seen: hashbrown::HashSet<TrackKey> =
            hashbrown::HashSet::with_capacity(snap.observations.len());
        for o in snap.observations {
            let key: TrackKey = (o.scope, o.id, o.ip);
            seen.insert(key.clone());
            match self.tracks.get_mut(&key) {
                Some(tr) => {
                    tr.last_seen = t;
                    tr.gone_at = None;
                    if o.start_ns.is_some() {
                        tr.start = o.start_ns;
                    }
                    // An end once declared stays (a deleted object does not come back).
                    if let Some(e) = o.end_ns {
                        tr.end = Some(tr.end.map_or(e, |x| x.min(e)));
                    }
                    tr.values = o.values;
                    tr.rank = o.rank;
                }
                None => {
                    self.tracks.insert(
                        key,
                        Track {
                            first_seen: t,
                            last_seen: t,
                            start: o.start_ns,
                            end: o.end_ns,
                            gone_at: None,
                            rank: o.rank,
                            values: o.values,
                        },
                    );
                }
            }
        }
        for (key, tr) in self.tracks.iter_mut() {
            if tr.gone_at.is_none() && snap.scopes.contains(&key.0) && !seen.contains(key) {
                tr.gone_at = Some(t);
            }
        }
    }

    /// Keeps at most `max` tracks: beyond it, the closed ones that ended longest ago are
    /// forgotten (a long run with pod churn would otherwise grow without bound). Returns how
    /// many were dropped.
    pub fn trim(&mut self, max: usize) -> usize {
        if self.tracks.len() <= max {
            return 0;
        }
        let mut ends: Vec<u64> = self
            .tracks
            .values()
            .filter_map(|tr| match (tr.end, tr.gone_at) {
                (Some(e), Some(g)) => Some(e.min(g)),
                (e, g) => e.or(g),
            })
            .collect();
        let excess = self.tracks.len() - max;
        if ends.is_empty() {
            return 0;
        }
        let k = excess.min(ends.len()) - 1;
        let (_, &mut cut, _) = ends.select_nth_unstable(k);
        let before = self.tracks.len();
        let mut left = excess;
        self.tracks.retain(|_, tr| {
            let end = match (tr.end, tr.gone_at) {
                (Some(e), Some(g)) => Some(e.min(g)),
                (e, g) => e.or(g),
            };
            let drop = left > 0 && end.is_some_and(|e| e <= cut);
            if drop {
                left -= 1;
            }
            !drop
        });
        before - self.tracks.len()
    }

    /// Tracks held.
    pub fn len(&self) -> usize {
        self.tracks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }

    /// The windows as of the latest snapshot, each address's windows of one rank clipped so
    /// that a later holder closes the earlier one.
    pub fn windows(&self) -> Vec<Window> {
        let mut out: Vec<Window> = self
            .tracks
            .iter()
            .filter_map(|((_, _, ip), tr)| {
                let from = tr.start.map_or(tr.first_seen, |s| s.min(tr.first_seen));
                let to = match (tr.end, tr.gone_at) {
                    (Some(e), Some(g)) => e.min(g),
                    (Some(e), None) => e,
                    (None, Some(g)) => g,
                    (None, None) => u64::MAX,
                };
                (to > from).then(|| Window {
                    ip: *ip,
                    from_ns: from,
                    to_ns: to,
                    rank: tr.rank,
                    values: tr.values.clone(),
                })
            })
            .collect();
        clip_successors(&mut out);
        out
    }
}

/// Sorts windows by (address, rank, start) and closes each where the next holder of the same
/// address and rank begins; windows that end up empty are removed.
pub fn clip_successors(ws: &mut Vec<Window>) {
    ws.sort_by_key(|w| (w.ip, w.rank, w.from_ns, w.to_ns));
    for i in 1..ws.len() {
        let (prev, next) = ws.split_at_mut(i);
        let p = &mut prev[i - 1];
        let n = &next[0];
        if p.ip == n.ip && p.rank == n.rank && p.to_ns > n.from_ns {
            p.to_ns = n.from_ns;
        }
    }
    ws.retain(|w| w.to_ns > w.from_ns);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::col;

    const S: u64 = 1_000_000_000;

    fn obs(id: &str, ip: &str, start: Option<u64>, end: Option<u64>) -> Observation {
        let mut values: Values = Default::default();
        values[col::POD] = Some(id.into());
        Observation {
            scope: "k8s:Pod".into(),
            id: id.into(),
            ip: ip.parse().unwrap(),
            start_ns: start,
            end_ns: end,
            rank: Rank::Pod,
            values,
        }
    }

    fn snap(t: u64, list: Vec<Observation>) -> Snapshot {
        let mut s = Snapshot::at(t);
        s.cover("k8s:Pod");
        s.observations = list;
        s
    }

    fn span(ws: &[Window], pod: &str) -> (u64, u64) {
        let w = ws
            .iter()
            .find(|w| w.values[col::POD].as_deref() == Some(pod))
            .unwrap();
        (w.from_ns, w.to_ns)
    }

    #[test]
    fn a_vanished_pod_closes_at_the_first_snapshot_without_it() {
        let mut tl = Timeline::default();
        tl.apply(snap(
            100 * S,
            vec![obs("a", "10.0.0.1", Some(90 * S), None)],
        ));
        tl.apply(snap(
            160 * S,
            vec![obs("a", "10.0.0.1", Some(90 * S), None)],
        ));
        tl.apply(snap(220 * S, vec![]));
        let ws = tl.windows();
        assert_eq!(span(&ws, "a"), (90 * S, 220 * S));
    }

    #[test]
    fn a_later_holder_closes_the_earlier_window_and_a_gap_stays_empty() {
        let mut tl = Timeline::default();
        tl.apply(snap(
            100 * S,
            vec![obs("a", "10.0.0.1", Some(90 * S), None)],
        ));
        // "a" is deleted at 130 s; "b" gets the address at 150 s.
        tl.apply(snap(
            160 * S,
            vec![
                obs("a", "10.0.0.1", Some(90 * S), Some(130 * S)),
                obs("b", "10.0.0.1", Some(150 * S), None),
            ],
        ));
        let ws = tl.windows();
        assert_eq!(span(&ws, "a"), (90 * S, 130 * S));
        assert_eq!(span(&ws, "b"), (150 * S, u64::MAX));
    }

    #[test]
    fn overlapping_holders_are_clipped() {
        let mut tl = Timeline::default();
        tl.apply(snap(
            100 * S,
            vec![obs("a", "10.0.0.1", Some(90 * S), None)],
        ));
        // The snapshot that would have shown "a" gone was missed: "b" proves it.
        tl.apply(snap(
            300 * S,
            vec![obs("b", "10.0.0.1", Some(250 * S), None)],
        ));
        let ws = tl.windows();
        assert_eq!(span(&ws, "a"), (90 * S, 250 * S));
        assert_eq!(span(&ws, "b"), (250 * S, u64::MAX));
    }

    #[test]
    fn a_snapshot_of_another_scope_closes_nothing() {
        let mut tl = Timeline::default();
        tl.apply(snap(100 * S, vec![obs("a", "10.0.0.1", None, None)]));
        let mut other = Snapshot::at(200 * S);
        other.cover("k8s:Service");
        tl.apply(other);
        let ws = tl.windows();
        assert_eq!(span(&ws, "a"), (100 * S, u64::MAX), "opens at first sight");
    }

    #[test]
    fn trimming_forgets_the_longest_closed_first() {
        let mut tl = Timeline::default();
        let list = (0..10u64)
            .map(|i| {
                obs(
                    &format!("p{i}"),
                    &format!("10.0.0.{i}"),
                    Some(i * S),
                    Some((i + 1) * S),
                )
            })
            .chain([obs("open", "10.0.1.1", Some(0), None)])
            .collect();
        tl.apply(snap(100 * S, list));
        assert_eq!(tl.trim(100), 0);
        assert_eq!(tl.trim(4), 7);
        let ws = tl.windows();
        assert_eq!(ws.len(), 4);
        assert!(ws.iter().any(|w| w.to_ns == u64::MAX), "open windows stay");
        assert_eq!(span(&ws, "p9"), (9 * S, 10 * S));
        assert!(ws
            .iter()
            .all(|w| w.values[col::POD].as_deref() != Some("p6")));
    }

    #[test]
    fn a_returning_object_reopens() {
        let mut tl = Timeline::default();
        tl.apply(snap(
            100 * S,
            vec![obs("a", "10.0.0.1", Some(50 * S), None)],
        ));
        tl.apply(snap(200 * S, vec![]));
        tl.apply(snap(
            300 * S,
            vec![obs("a", "10.0.0.1", Some(50 * S), None)],
        ));
        assert_eq!(span(&tl.windows(), "a"), (50 * S, u64::MAX));
    }
}
