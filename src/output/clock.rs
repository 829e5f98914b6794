//! The time that drives log rotation and the `#open`/`#close` dates.
//!
//! Offline, time is packet time: the reader publishes it as it goes (once per tick, not per
//! packet), so a run over a multi-hour trace rotates on the trace's hour boundaries, as Zeek
//! does when it reads a trace. Live, it is the wall clock. Tests drive a [`PacketClock`] by
//! hand.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Packet time shared by the reader (which advances it) and the writer (which reads it).
///
/// Reading a capture is much faster than real time, so the reader is usually far ahead of the
/// records the writer is draining. To rotate on exactly the right records, the reader stops at
/// each rotation boundary until the workers have emitted everything due before it and the
/// writer has written those records and rotated ([`PacketClock::wait_applied`]); the writer
/// reports the clock values it has acted on with [`PacketClock::mark_applied`].
#[derive(Debug, Default)]
pub struct PacketClock {
    /// Nanoseconds since the epoch; 0 until the first packet.
    ns: AtomicU64,
    /// The first time ever set: when the first log files open.
    start: AtomicU64,
    /// The latest clock value the writer has acted on, with every record that was queued
    /// before it written.
    applied: AtomicU64,
}

impl PacketClock {
    pub fn new() -> Arc<PacketClock> {
        Arc::new(PacketClock::default())
    }

    /// Moves the clock forward to `ns`; an earlier time (a capture slightly out of order)
    /// never moves it back.
    pub fn advance(&self, ns: u64) {
        let _ = self
            .start
            .compare_exchange(0, ns, Ordering::AcqRel, Ordering::Acquire);
        self.ns.fetch_max(ns, Ordering::Release);
    }

    /// The latest packet time, or `None` before the first packet.
    pub fn get(&self) -> Option<u64> {
        match self.ns.load(Ordering::Acquire) {
            0 => None,
            t => Some(t),
        }
    }

    /// The first packet time, or `None` before the first packet.
    pub fn start(&self) -> Option<u64> {
        match self.start.load(Ordering::Acquire) {
            0 => None,
            t => Some(t),
        }
    }

    /// Called by the writer: every record queued before the clock read `ns` is written, and
    /// rotation has been done for `ns`.
    pub fn mark_applied(&self, ns: u64) {
        self.applied.fetch_max(ns, Ordering::Release);
    }

    /// Waits until the writer has acted on `ns`, or `give_up()` says it never will (the
    /// writer ended). Returns false in that case.
    pub fn wait_applied(&self, ns: u64, mut give_up: impl FnMut() -> bool) -> bool {
        let mut spins = 0u32;
        while self.applied.load(Ordering::Acquire) < ns {
            if give_up() {
                return false;
            }
            spins += 1;
            if spins < 64 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(std::time::Duration::from_micros(100));
            }
        }
        true
    }
}

/// Where the writer takes the time from.
#[derive(Clone, Debug)]
pub enum Clock {
    /// The system clock (live capture).
    Wall,
    /// Packet time (reading files; tests).
    Packet(Arc<PacketClock>),
}

impl Clock {
    /// The current time, or `None` while a packet clock has seen no packet yet.
    pub fn now_ns(&self) -> Option<u64> {
        match self {
            Clock::Wall => Some(wall_ns()),
            Clock::Packet(c) => c.get(),
        }
    }

    /// When the first log files open: the first packet time, or now for the wall clock.
    pub fn start_ns(&self) -> Option<u64> {
        match self {
            Clock::Wall => Some(wall_ns()),
            Clock::Packet(c) => c.start(),
        }
    }

    /// The current time, falling back on the wall clock before the first packet (the dates of
    /// a log written for an empty capture).
    pub fn now_or_wall(&self) -> u64 {
        self.now_ns().unwrap_or_else(wall_ns)
    }
}

const DAY_NS: u64 = 86_400 * 1_000_000_000;

/// The first rotation boundary after `now` for an interval of `interval_ns`. Boundaries are
/// multiples of the interval counted from midnight UTC, and midnight is always one (Zeek's
/// `calc_next_rotate` with its default base time 00:00), so an interval that does not divide
/// a day restarts each day.
pub fn next_boundary(now: u64, interval_ns: u64) -> u64 {
    let interval = interval_ns.max(1);
    let day = now - now % DAY_NS;
    let next = day + ((now - day) / interval + 1) * interval;
    next.min(day + DAY_NS)
}

/// The last rotation boundary at or before `now`.
pub fn floor_boundary(now: u64, interval_ns: u64) -> u64 {
    let interval = interval_ns.max(1);
    let day = now - now % DAY_NS;
    day + (now - day) / interval * interval
}

/// The system clock, in nanoseconds since the epoch.
pub fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_clock_only_moves_forward() {
        let c = PacketClock::new();
        let clock = Clock::Packet(c.clone());
        assert_eq!(clock.now_ns(), None);
        c.advance(10);
        c.advance(5);
        assert_eq!(clock.now_ns(), Some(10));
        assert!(Clock::Wall.now_ns().unwrap() > 1_600_000_000_000_000_000);
        assert_eq!(c.start(), Some(10));
    }

    #[test]
    fn wait_applied_returns_when_marked_or_abandoned() {
        let c = PacketClock::new();
        c.mark_applied(5);
        assert!(c.wait_applied(5, || false));
        assert!(!c.wait_applied(6, || true));
    }

    const H: u64 = 3600 * 1_000_000_000;

    #[test]
    fn boundaries_align_to_midnight() {
        let day = 19_000 * DAY_NS;
        assert_eq!(next_boundary(day, H), day + H);
        assert_eq!(next_boundary(day + H / 2, H), day + H);
        assert_eq!(next_boundary(day + 23 * H + 1, H), day + 24 * H);
        assert_eq!(floor_boundary(day + 5 * H + 7, H), day + 5 * H);
        // 7h does not divide a day: 00, 07, 14, 21, then midnight again.
        let seven = 7 * H;
        assert_eq!(next_boundary(day + 22 * H, seven), day + 24 * H);
        assert_eq!(next_boundary(day + 24 * H, seven), day + 31 * H);
    }
}
