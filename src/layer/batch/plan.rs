//! How waiting calls are cut into batches, as plain functions.

use std::time::Duration;

use super::vendor::BatchLimits;

/// How long before the calls waiting now go out: at once when there are
/// `max_requests` of them, else when the first has waited `max_wait` or
/// none has arrived for `quiet`, whichever comes first; `None` when none
/// waits. `oldest` and `newest` are how long ago the first and the last
/// arrived.
pub(crate) fn flush_in(
    waiting: usize,
    oldest: Duration,
    newest: Duration,
    max_requests: usize,
    max_wait: Duration,
    quiet: Duration,
) -> Option<Duration> {
    if waiting == 0 {
        return None;
    }
    if waiting >= max_requests {
        return Some(Duration::ZERO);
    }
    Some(
        max_wait
            .saturating_sub(oldest)
            .min(quiet.saturating_sub(newest)),
    )
}

/// Cuts requests of the given sizes (bytes), in order, into batches within
/// `limits`: the index ranges of each. A request larger than a whole batch
/// goes alone (the vendor then rejects it, as it would anyway).
pub(crate) fn split(sizes: &[usize], limits: BatchLimits) -> Vec<std::ops::Range<usize>> {
    let mut batches = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, &size) in sizes.iter().enumerate() {
        let full = i - start >= limits.max_requests.max(1)
            || (i > start && bytes + size > limits.max_bytes);
        if full {
            batches.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < sizes.len() {
        batches.push(start..sizes.len());
    }
    batches
}

/// The pause before polling a batch again: doubling from `min` up to `max`.
pub(crate) fn next_poll(previous: Option<Duration>, min: Duration, max: Duration) -> Duration {
    previous.map_or(min, |p| (p * 2).clamp(min, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: BatchLimits = BatchLimits {
        max_requests: 3,
        max_bytes: 100,
    };

    #[test]
    fn flushes_when_full_when_the_oldest_waited_or_when_arrivals_stop() {
        let s = Duration::from_secs;
        let (wait, quiet) = (s(60), s(2));
        assert_eq!(flush_in(0, s(90), s(90), 10, wait, quiet), None);
        assert_eq!(flush_in(10, s(0), s(0), 10, wait, quiet), Some(s(0)));
        // Calls still arriving: wait for a quiet moment.
        assert_eq!(flush_in(9, s(10), s(0), 10, wait, quiet), Some(s(2)));
        assert_eq!(flush_in(9, s(10), s(1), 10, wait, quiet), Some(s(1)));
        assert_eq!(flush_in(9, s(10), s(2), 10, wait, quiet), Some(s(0)));
        // Arriving without a pause: the oldest's wait bounds it.
        assert_eq!(flush_in(9, s(59), s(0), 10, wait, quiet), Some(s(1)));
        assert_eq!(flush_in(9, s(60), s(0), 10, wait, quiet), Some(s(0)));
    }

    #[test]
    fn splits_by_count_and_by_bytes_in_order() {
        assert_eq!(split(&[10; 7], LIMITS), vec![0..3, 3..6, 6..7]);
        assert_eq!(split(&[60, 30, 20, 5], LIMITS), vec![0..2, 2..4]);
        // Too large for any batch: alone.
        assert_eq!(split(&[10, 500, 10], LIMITS), vec![0..1, 1..2, 2..3]);
        assert!(split(&[], LIMITS).is_empty());
    }

    #[test]
    fn polls_back_off_to_the_cap() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(5));
        let mut p = None;
        let seen: Vec<u64> = (0..5)
            .map(|_| {
                let next = next_poll(p, min, max);
                p = Some(next);
                next.as_secs()
            })
            .collect();
        assert_eq!(seen, [1, 2, 4, 5, 5]);
    }
}
