//! Bounded single-producer/single-consumer queues between cores.
//!
//! Built on `crossbeam_queue::ArrayQueue` (allocated once, `push` hands the value back when
//! full). Each queue has exactly one [`Producer`] and one [`Consumer`]; the split types make
//! that a compile-time fact. The full-queue policy is the producer's choice and always visible:
//! [`Producer::try_push`] drops and counts (the live packet path), [`Producer::push_wait`]
//! spins then yields until there is room (offline, where losing data is never right).

use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

struct Shared<T> {
    queue: ArrayQueue<T>,
    /// Values dropped because the queue was full. Written by the producer only.
    dropped: CachePadded<AtomicU64>,
    /// Set by the producer when it will push no more.
    closed: CachePadded<AtomicBool>,
}

/// The sending half.
pub struct Producer<T> {
    shared: Arc<Shared<T>>,
}

/// The receiving half.
pub struct Consumer<T> {
    shared: Arc<Shared<T>>,
}

/// A new queue holding at most `capacity` values (at least 1).
pub fn channel<T>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    let shared = Arc::new(Shared {
        queue: ArrayQueue::new(capacity.max(1)),
        dropped: CachePadded::new(AtomicU64::new(0)),
        closed: CachePadded::new(AtomicBool::new(false)),
    });
    (
        Producer {
            shared: shared.clone(),
        },
        Consumer { shared },
    )
}

impl<T> Producer<T> {
    /// Pushes `v`, or drops it and counts the drop when the queue is full.
    /// Returns false when the value was dropped.
    pub fn try_push(&self, v: T) -> bool {
        match self.shared.queue.push(v) {
            Ok(()) => true,
            Err(_) => {
                // Only this producer writes the counter, so a relaxed add is exact.
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Pushes `v`, or hands it back when the queue is full (not counted as a drop: the
    /// caller keeps it).
    pub fn try_push_or_back(&self, v: T) -> Result<(), T> {
        self.shared.queue.push(v)
    }

    /// Pushes `v`, waiting for room; returns false (and drops `v`) only if the consumer is
    /// gone. Used where back-pressure is the right policy (reading a file).
    pub fn push_wait(&self, mut v: T) -> bool {
        let mut wait = Backoff::new();
        loop {
            match self.shared.queue.push(v) {
                Ok(()) => return true,
                Err(back) => {
                    if Arc::strong_count(&self.shared) == 1 {
                        return false;
                    }
                    v = back;
                    wait.snooze();
                }
            }
        }
    }

    /// Values dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Values waiting in the queue.
    pub fn len(&self) -> usize {
        self.shared.queue.len()
    }

    /// True when the queue holds nothing.
    pub fn is_empty(&self) -> bool {
        self.shared.queue.is_empty()
    }

    /// The most values the queue holds.
    pub fn capacity(&self) -> usize {
        self.shared.queue.capacity()
    }
}

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
    }
}

impl<T> Consumer<T> {
    /// Takes the oldest value, if any.
    pub fn pop(&self) -> Option<T> {
        self.shared.queue.pop()
    }

    /// True once the producer is gone and every value has been taken.
    pub fn is_finished(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire) && self.shared.queue.is_empty()
    }

    /// Values dropped by the producer because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

/// Bytes per slot of a message queue: a variable-length message (a record's names and
/// context) takes as many slots as its length needs, so it crosses at its own size.
pub const CHUNK: usize = 64;

/// One slot of a message queue.
pub type Chunk = [u8; CHUNK];

/// Slots a message of `len` bytes takes (two bytes of length come first).
pub fn chunks_for(len: usize) -> usize {
    (len + 2).div_ceil(CHUNK)
}

impl Producer<Chunk> {
    /// Slots free now. Only this producer fills them, so they stay free until it pushes.
    pub fn room(&self) -> usize {
        self.capacity() - self.len()
    }

    /// Pushes `msg` (at most 65,535 bytes) as [`chunks_for`] slots, waiting for room. False
    /// only when the consumer is gone.
    pub fn push_msg_wait(&self, msg: &[u8]) -> bool {
        let mut ok = true;
        each_chunk(msg, |c| ok = ok && self.push_wait(c));
        ok
    }

    /// Pushes `msg` when every slot it needs is free (then every push succeeds: this is the
    /// only producer); otherwise pushes nothing and returns false (not counted: the caller
    /// decides).
    pub fn try_push_msg(&self, msg: &[u8]) -> bool {
        if self.room() < chunks_for(msg.len()) {
            return false;
        }
        let mut ok = true;
        each_chunk(msg, |c| ok = ok && self.shared.queue.push(c).is_ok());
        ok
    }
}

/// `msg` cut into slots: its length (big-endian u16), then its bytes.
pub fn each_chunk(msg: &[u8], mut f: impl FnMut(Chunk)) {
    debug_assert!(msg.len() <= usize::from(u16::MAX));
    let mut c = [0u8; CHUNK];
    c[..2].copy_from_slice(&(msg.len() as u16).to_be_bytes());
    let first = msg.len().min(CHUNK - 2);
    c[2..2 + first].copy_from_slice(&msg[..first]);
    f(c);
    for part in msg[first..].chunks(CHUNK) {
        let mut c = [0u8; CHUNK];
        c[..part.len()].copy_from_slice(part);
        f(c);
    }
}

/// Reads a message back from slots: `next` yields them in order. The message's bytes go to
/// the front of `out`; returns their length, or `None` when a slot is missing or the message
/// does not fit `out` (its slots are consumed all the same).
pub fn read_chunks(out: &mut [u8], mut next: impl FnMut() -> Option<Chunk>) -> Option<usize> {
    let first = next()?;
    let len = usize::from(u16::from_be_bytes([first[0], first[1]]));
    let fits = len <= out.len();
    let head = len.min(CHUNK - 2);
    if fits {
        out[..head].copy_from_slice(&first[2..2 + head]);
    }
    let mut at = head;
    while at < len {
        let c = next()?;
        let n = (len - at).min(CHUNK);
        if fits {
            out[at..at + n].copy_from_slice(&c[..n]);
        }
        at += n;
    }
    fits.then_some(len)
}

impl Consumer<Chunk> {
    /// Takes the oldest message into the front of `out`; see [`read_chunks`]. A producer
    /// pushes every slot of a message before it announces the message (on another queue), so a
    /// consumer that saw the announcement finds every slot here.
    pub fn pop_msg(&self, out: &mut [u8]) -> Option<usize> {
        read_chunks(out, || self.pop())
    }
}

/// How a thread waits for a queue (room to push, or something to pop) where waiting is the
/// policy: a few spins for the common short wait, a few yields, then sleeps that double from
/// 5 µs up to 500 µs. A waiting thread costs almost no CPU (a yield loop burns a core in
/// `sched_yield`) and wakes within half a millisecond, while a queue of thousands of messages
/// takes milliseconds to fill or drain.
pub struct Backoff {
    n: u32,
}

impl Backoff {
    const SPINS: u32 = 32;
    const YIELDS: u32 = 8;
    const FIRST_SLEEP_US: u64 = 5;
    const LONGEST_SLEEP_US: u64 = 500;

    pub fn new() -> Backoff {
        Backoff { n: 0 }
    }

    /// Waits a little longer than last time.
    pub fn snooze(&mut self) {
        let n = self.n;
        self.n = self.n.saturating_add(1);
        if n < Self::SPINS {
            std::hint::spin_loop();
        } else if n < Self::SPINS + Self::YIELDS {
            std::thread::yield_now();
        } else {
            let doublings = (n - Self::SPINS - Self::YIELDS).min(10);
            let us = (Self::FIRST_SLEEP_US << doublings).min(Self::LONGEST_SLEEP_US);
            std::thread::sleep(std::time::Duration::from_micros(us));
        }
    }

    /// Work came: the next wait starts short again.
    pub fn reset(&mut self) {
        self.n = 0;
    }
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff::new()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn messages_cross_at_their_own_size() {
        let (tx, rx) = super::channel::<super::Chunk>(8);
        let long: Vec<u8> = (0..200u8).collect();
        assert!(tx.try_push_msg(b"ab"));
        assert_eq!(tx.room(), 7);
        assert!(tx.try_push_msg(&long));
        assert_eq!(tx.room(), 7 - super::chunks_for(200));
        // Not enough room for a third: nothing is pushed.
        assert!(!tx.try_push_msg(&[1; 300]));
        let mut out = [0u8; 256];
        assert_eq!(rx.pop_msg(&mut out), Some(2));
        assert_eq!(&out[..2], b"ab");
        assert_eq!(rx.pop_msg(&mut out), Some(200));
        assert_eq!(&out[..200], &long[..]);
        assert_eq!(rx.pop_msg(&mut out), None);
        // A message longer than the reader's buffer is consumed and refused.
        assert!(tx.push_msg_wait(&[7; 62]));
        assert!(tx.push_msg_wait(&[7; 63]));
        assert!(tx.push_msg_wait(b"z"));
        assert_eq!(super::chunks_for(62), 1);
        assert_eq!(super::chunks_for(63), 2);
        assert_eq!(rx.pop_msg(&mut out[..10]), None);
        assert_eq!(rx.pop_msg(&mut out), Some(63));
        assert_eq!(rx.pop_msg(&mut out), Some(1));
    }

    use super::*;

    #[test]
    fn full_queue_drops_and_counts() {
        let (p, c) = channel::<u32>(2);
        assert!(p.try_push(1));
        assert!(p.try_push(2));
        assert!(!p.try_push(3));
        assert_eq!(p.dropped(), 1);
        assert_eq!(c.pop(), Some(1));
        assert_eq!(c.pop(), Some(2));
        assert_eq!(c.pop(), None);
        assert!(!c.is_finished());
        drop(p);
        assert!(c.is_finished());
    }

    #[test]
    fn push_wait_delivers_everything_across_threads() {
        let (p, c) = channel::<u64>(4);
        let t = std::thread::spawn(move || {
            for i in 0..10_000 {
                assert!(p.push_wait(i));
            }
        });
        let mut next = 0;
        while next < 10_000 {
            if let Some(v) = c.pop() {
                assert_eq!(v, next);
                next += 1;
            }
        }
        t.join().unwrap();
        assert_eq!(c.dropped(), 0);
    }
}
