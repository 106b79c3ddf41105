//! The waits between tries of something that fails while a service is away: from a first
//! wait, doubling up to a longest, for as long as the caller keeps trying.

use std::time::Duration;

/// `first`, twice that, … up to `longest`, then `longest` again without end: the caller stops
/// when its work is done (or when its own deadline says so).
pub fn doubling(first: Duration, longest: Duration) -> impl Iterator<Item = Duration> {
    std::iter::successors(Some(first.min(longest)), move |wait| {
        Some((*wait * 2).min(longest))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_waits_double_up_to_the_longest_and_go_on() {
        let waits: Vec<Duration> = doubling(Duration::from_millis(100), Duration::from_secs(1))
            .take(7)
            .collect();
        let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000, 1000]);
    }
}
