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
#[derive(Debug, Default)]
pub struct PacketClock {
    /// Nanoseconds since the epoch; 0 until the first packet.
    ns: AtomicU64,
}

impl PacketClock {
    pub fn new() -> Arc<PacketClock> {
        Arc::new(PacketClock::default())
    }

    /// Moves the clock forward to `ns`; an earlier time (a capture slightly out of order)
    /// never moves it back.
    pub fn advance(&self, ns: u64) {
        self.ns.fetch_max(ns, Ordering::Release);
    }

    /// The latest packet time, or `None` before the first packet.
    pub fn get(&self) -> Option<u64> {
        match self.ns.load(Ordering::Acquire) {
            0 => None,
            t => Some(t),
        }
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

    /// The current time, falling back on the wall clock before the first packet (the dates of
    /// a log written for an empty capture).
    pub fn now_or_wall(&self) -> u64 {
        self.now_ns().unwrap_or_else(wall_ns)
    }
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
    }
}
