//! A latency histogram of atomics, observed on the hot paths (the DHCP
//! ACK release, the northbound's commit) without a lock: prometheus-client's
//! own `Histogram` takes a lock per observation. The exposition still goes
//! through prometheus-client's encoder (`metrics::encode_histogram`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency buckets: from a lease-log fsync
/// on a fast disk (0.25 ms) to a partner that acknowledges only after its
/// gate timed out, or a commit of a large configuration (10 s).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
];

/// Counts per bucket (not cumulative: one increment per observation), the
/// count and the sum; the `+Inf` bucket is the count.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_ns: AtomicU64,
}

/// What one scrape reads: cumulative buckets as the exposition wants them.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    pub sum: f64,
    pub count: u64,
    /// (upper bound in seconds, observations at or below it)
    pub buckets: Vec<(f64, u64)>,
}

impl Default for Histogram {
    /// A latency histogram over [`LATENCY_BUCKETS`].
    fn default() -> Self {
        Histogram::new(LATENCY_BUCKETS)
    }
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
        }
    }

    /// Three relaxed increments; the bucket is found by a scan of 15
    /// bounds.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// The buckets made cumulative. Read while observations go on, a
    /// bucket may hold an observation the count does not yet: the count is
    /// raised to the last bucket so that the exposition stays monotonic.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0;
        let buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .zip(self.buckets.iter())
            .map(|(b, c)| {
                total += c.load(Ordering::Relaxed);
                (*b, total)
            })
            .collect();
        HistogramSnapshot {
            sum: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
            count: self.count.load(Ordering::Relaxed).max(total),
            buckets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_bucket_and_accumulate() {
        let h = Histogram::new(&[0.001, 0.01, 0.1]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(1)); // on the bound: that bucket
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(3)); // beyond every bound: +Inf only
        let s = h.snapshot();
        assert_eq!(s.buckets, vec![(0.001, 2), (0.01, 3), (0.1, 3)]);
        assert_eq!(s.count, 4);
        assert!((s.sum - 3.0065).abs() < 1e-9, "{}", s.sum);
    }

    #[test]
    fn empty_histogram_reads_zero() {
        let s = Histogram::default().snapshot();
        assert_eq!(s.count, 0);
        assert_eq!(s.sum, 0.0);
        assert_eq!(s.buckets.len(), LATENCY_BUCKETS.len());
        assert!(s.buckets.iter().all(|(_, n)| *n == 0));
    }
}
