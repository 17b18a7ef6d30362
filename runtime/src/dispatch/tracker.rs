//! Which offsets of a route may be committed.
//!
//! Events finish out of order (several workers, asynchronous publish acknowledgements), but a
//! committed position promises that everything below it is finished. Per partition, the
//! tracker keeps the delivered offsets in delivery order with a done flag and advances the
//! commit position over the finished prefix.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Default)]
struct PartitionTrack {
    /// Delivered offsets, ascending, with whether each is finished.
    in_flight: VecDeque<(u64, bool)>,
    /// Everything below this is finished.
    next_commit: Option<u64>,
    /// What the last [`OffsetTracker::take_commits`] returned.
    last_taken: Option<u64>,
}

impl PartitionTrack {
    /// Whether an event delivered of the partition is unfinished.
    fn is_busy(&self) -> bool {
        self.in_flight.iter().any(|(_, done)| !done)
    }
}

/// Commit positions of one route.
#[derive(Default)]
pub struct OffsetTracker {
    partitions: Mutex<BTreeMap<u32, PartitionTrack>>,
    /// Set once the route's workers have stopped: nothing unfinished will finish any more.
    stopped: AtomicBool,
}

impl OffsetTracker {
    /// Records that `offset` of `partition` was delivered. Offsets are unique per partition;
    /// a commit position is the one after the last offset of the finished prefix, in
    /// delivery order (ascending, except on Redis: see [`crate::broker::redis`]).
    pub fn begin(&self, partition: u32, offset: u64) {
        let mut partitions = self.partitions.lock().expect("tracker lock");
        partitions
            .entry(partition)
            .or_default()
            .in_flight
            .push_back((offset, false));
    }

    /// Records that `offset` of `partition` is finished.
    pub fn finish(&self, partition: u32, offset: u64) {
        let mut partitions = self.partitions.lock().expect("tracker lock");
        let Some(track) = partitions.get_mut(&partition) else {
            return;
        };
        // Offsets are unique per partition. They ascend in delivery order on Kafka and the
        // embedded broker; on Redis an entry reclaimed from a dead consumer comes after
        // younger ones, so the search falls back to a scan.
        let index = match track.in_flight.binary_search_by_key(&offset, |(o, _)| *o) {
            Ok(index) => Some(index),
            Err(_) => track.in_flight.iter().position(|(o, _)| *o == offset),
        };
        if let Some(index) = index {
            track.in_flight[index].1 = true;
        }
        while let Some(&(offset, true)) = track.in_flight.front() {
            track.in_flight.pop_front();
            track.next_commit = Some(offset + 1);
        }
    }

    /// `(partition, next offset)` for every partition whose position moved since the last
    /// call.
    pub fn take_commits(&self) -> Vec<(u32, u64)> {
        let mut partitions = self.partitions.lock().expect("tracker lock");
        partitions
            .iter_mut()
            .filter_map(|(&partition, track)| {
                let next = track.next_commit?;
                (track.last_taken != Some(next)).then(|| {
                    track.last_taken = Some(next);
                    (partition, next)
                })
            })
            .collect()
    }

    /// Forgets what [`Self::take_commits`] returned, so the next call returns the positions
    /// again (after a failed commit).
    pub fn retake_commits(&self) {
        let mut partitions = self.partitions.lock().expect("tracker lock");
        for track in partitions.values_mut() {
            track.last_taken = None;
        }
    }

    /// Says that the route's workers have stopped, so [`Self::release`] waits for nothing:
    /// what was queued and not handled will never finish here.
    pub fn stop_waiting(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }

    /// For partitions being taken away: waits up to `timeout` for their delivered events to
    /// finish (not at all once the workers stopped), then forgets them and returns their
    /// commit positions. Events that finish later are ignored (the partitions' new owner
    /// reads them again).
    pub fn release(&self, partitions: &[u32], timeout: Duration) -> Vec<(u32, u64)> {
        self.wait_finished(timeout, |tracks| {
            partitions
                .iter()
                .filter_map(|p| tracks.get(p))
                .any(PartitionTrack::is_busy)
        });
        let mut tracks = self.partitions.lock().expect("tracker lock");
        partitions
            .iter()
            .filter_map(|p| {
                tracks
                    .remove(p)
                    .and_then(|t| t.next_commit)
                    .map(|next| (*p, next))
            })
            .collect()
    }

    /// Whether the route's workers have stopped (see [`Self::stop_waiting`]).
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Waits up to `timeout` until nothing delivered is unfinished, over all partitions (not
    /// at all once the workers stopped); whether that was reached.
    pub fn settle(&self, timeout: Duration) -> bool {
        self.wait_finished(timeout, |tracks| {
            tracks.values().any(PartitionTrack::is_busy)
        })
    }

    /// Waits up to `timeout` until `busy` says no more (not at all once the workers
    /// stopped); whether it did.
    fn wait_finished(
        &self,
        timeout: Duration,
        busy: impl Fn(&BTreeMap<u32, PartitionTrack>) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if !busy(&self.partitions.lock().expect("tracker lock")) {
                return true;
            }
            if self.stopped.load(Ordering::SeqCst) || Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Forgets every partition and returns the commit position of each that has one, and
    /// the partitions forgotten. For a transactional route that settled: its transaction
    /// carries all the positions, and after it what is delivered starts afresh.
    pub fn release_all(&self) -> (Vec<(u32, u64)>, Vec<u32>) {
        let mut tracks = self.partitions.lock().expect("tracker lock");
        let partitions = tracks.keys().copied().collect();
        let positions = std::mem::take(&mut *tracks)
            .into_iter()
            .filter_map(|(partition, track)| track.next_commit.map(|next| (partition, next)))
            .collect();
        (positions, partitions)
    }

    /// Events delivered and not finished, over all partitions.
    pub fn in_flight(&self) -> usize {
        let partitions = self.partitions.lock().expect("tracker lock");
        partitions
            .values()
            .map(|t| t.in_flight.iter().filter(|(_, done)| !done).count())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_only_the_finished_prefix() {
        let tracker = OffsetTracker::default();
        for offset in 10..15 {
            tracker.begin(0, offset);
        }
        tracker.finish(0, 11);
        tracker.finish(0, 12);
        assert!(tracker.take_commits().is_empty(), "10 is not finished");
        tracker.finish(0, 10);
        assert_eq!(tracker.take_commits(), vec![(0, 13)]);
        assert!(tracker.take_commits().is_empty(), "nothing moved");
        tracker.finish(0, 14);
        tracker.finish(0, 13);
        assert_eq!(tracker.take_commits(), vec![(0, 15)]);
        assert_eq!(tracker.in_flight(), 0);
    }

    #[test]
    fn release_returns_positions_and_forgets_the_partitions() {
        let tracker = OffsetTracker::default();
        tracker.begin(3, 5);
        tracker.begin(3, 6);
        tracker.finish(3, 5);
        let positions = tracker.release(&[3], Duration::from_millis(20));
        assert_eq!(
            positions,
            vec![(3, 6)],
            "6 never finished: only 5 is committed"
        );
        tracker.finish(3, 6);
        assert!(
            tracker.take_commits().is_empty(),
            "a released partition is forgotten"
        );
    }

    #[test]
    fn settle_waits_for_every_partition_and_release_all_forgets_them_all() {
        let tracker = std::sync::Arc::new(OffsetTracker::default());
        tracker.begin(0, 7);
        tracker.begin(1, 3);
        tracker.begin(1, 4);
        tracker.finish(1, 3);
        assert!(!tracker.settle(Duration::from_millis(20)), "two unfinished");
        let finishing = tracker.clone();
        let worker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            finishing.finish(0, 7);
            finishing.finish(1, 4);
        });
        assert!(tracker.settle(Duration::from_secs(30)));
        worker.join().unwrap();
        let (mut positions, mut partitions) = tracker.release_all();
        positions.sort();
        partitions.sort();
        assert_eq!(positions, vec![(0, 8), (1, 5)]);
        assert_eq!(partitions, vec![0, 1]);
        assert_eq!(tracker.release_all(), (vec![], vec![]), "nothing left");
        tracker.begin(0, 8);
        assert_eq!(tracker.in_flight(), 1, "what comes next starts afresh");
    }

    #[test]
    fn release_waits_for_nothing_once_the_workers_stopped() {
        let tracker = OffsetTracker::default();
        tracker.begin(0, 1);
        tracker.begin(0, 2);
        tracker.finish(0, 1);
        tracker.stop_waiting();
        let started = Instant::now();
        assert_eq!(tracker.release(&[0], Duration::from_secs(60)), vec![(0, 2)]);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn partitions_are_independent_and_gaps_are_fine() {
        let tracker = OffsetTracker::default();
        tracker.begin(0, 1);
        tracker.begin(0, 5);
        tracker.begin(1, 7);
        tracker.finish(1, 7);
        tracker.finish(0, 5);
        assert_eq!(tracker.take_commits(), vec![(1, 8)]);
        tracker.finish(0, 1);
        assert_eq!(tracker.take_commits(), vec![(0, 6)]);
    }
}
