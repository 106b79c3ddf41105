//! Small measuring helpers: percentiles, rates and the process's resident memory.

use std::time::Duration;

/// The `p`-th percentile (0–100) of `samples` in milliseconds; 0 when empty.
pub fn percentile_ms(samples: &mut [Duration], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[rank.min(samples.len() - 1)].as_secs_f64() * 1000.0
}

/// Operations per second.
pub fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(f64::EPSILON)
}

/// The median of `samples` in milliseconds.
pub fn median_ms(samples: &mut [Duration]) -> f64 {
    percentile_ms(samples, 50.0)
}

/// This process's resident set size in bytes (Linux), if readable.
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let resident: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(resident * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_ranked_sample() {
        let mut s: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile_ms(&mut s, 50.0), 51.0);
        assert_eq!(percentile_ms(&mut s, 99.0), 99.0);
        assert_eq!(percentile_ms(&mut [], 99.0), 0.0);
        assert!((rate(10, Duration::from_secs(2)) - 5.0).abs() < 1e-9);
        assert!(rss_bytes().is_some_and(|b| b > 0));
    }
}
