//! The benchmarks' arithmetic on what they time, so that every bench prints the same figures.

use std::time::Duration;

/// The `p` quantile (0.0..=1.0) of `samples`, nearest rank; sorts them.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

/// `d` in milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
