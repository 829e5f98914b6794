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
        let mut spins = 0u32;
        loop {
            match self.shared.queue.push(v) {
                Ok(()) => return true,
                Err(back) => {
                    if Arc::strong_count(&self.shared) == 1 {
                        return false;
                    }
                    v = back;
                    spins += 1;
                    if spins < 64 {
                        std::hint::spin_loop();
                    } else {
                        std::thread::yield_now();
                    }
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

#[cfg(test)]
mod tests {
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
