//! Where a capture's threads run. Workers are pinned one per core (`--cpus`); every other
//! thread (writer, statistics, inventory reload, metrics) is kept off those cores, so that
//! none of them ever preempts a worker between two RX batches: on a busy core a woken
//! writer takes the CPU for its time slice while the worker's ring fills up.

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// Restricts the calling thread, and every thread it spawns afterwards, to the CPUs it may
/// use minus `workers`. Returns the CPUs left, or `None` when the workers take every CPU
/// (or the mask cannot be read or set), in which case nothing changes.
pub fn keep_off(workers: &[usize]) -> Option<Vec<usize>> {
    let me = Pid::from_raw(0);
    let allowed = sched_getaffinity(me).ok()?;
    let mut rest = CpuSet::new();
    let mut left = Vec::new();
    for cpu in 0..CpuSet::count() {
        if allowed.is_set(cpu).unwrap_or(false) && !workers.contains(&cpu) {
            rest.set(cpu).ok()?;
            left.push(cpu);
        }
    }
    if left.is_empty() {
        return None;
    }
    sched_setaffinity(me, &rest).ok()?;
    Some(left)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_other_threads_off_the_worker_cpus() {
        let allowed = sched_getaffinity(Pid::from_raw(0)).unwrap();
        let cpus: Vec<usize> = (0..CpuSet::count())
            .filter(|&c| allowed.is_set(c).unwrap())
            .collect();
        // In a thread of its own: the mask is per thread and inherited by its children.
        let first = cpus[0];
        let (left, child) = std::thread::spawn(move || {
            let left = keep_off(&[first]);
            let child = std::thread::spawn(|| sched_getaffinity(Pid::from_raw(0)).unwrap())
                .join()
                .unwrap();
            (left, child)
        })
        .join()
        .unwrap();
        if cpus.len() == 1 {
            assert_eq!(left, None, "a lone CPU stays shared");
            return;
        }
        let left = left.expect("other CPUs are left");
        assert!(!left.contains(&first));
        assert_eq!(left.len(), cpus.len() - 1);
        assert!(
            !child.is_set(first).unwrap(),
            "a thread spawned later inherits the mask"
        );
        assert!(child.is_set(left[0]).unwrap());
        // Workers on every CPU: nothing is left to move to, and nothing changes.
        assert_eq!(keep_off(&cpus), None);
    }
}
