//! Riding out an outage: the delays between retries of a build step that failed because
//! something it needs (S3, the registry, the platform) could not be reached.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// The first delay.
const FIRST: Duration = Duration::from_millis(500);
/// The longest delay: a service that comes back is noticed within this.
const LONGEST: Duration = Duration::from_secs(10);

/// Delays from 0.5 s, doubling with jitter, at most 10 s apart; they end when `budget` of
/// waiting is spent.
pub fn delays(budget: Duration) -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(FIRST)
        .with_max_delay(LONGEST)
        .with_jitter()
        .without_max_times()
        .with_total_delay(Some(budget))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_and_stop_at_the_budget() {
        let all: Vec<Duration> = delays(Duration::from_secs(60)).collect();
        assert!(all[0] >= FIRST && all[0] < FIRST * 3, "{all:?}");
        assert!(all.iter().all(|d| *d <= LONGEST * 2), "{all:?}");
        let total: Duration = all.iter().sum();
        assert!(total <= Duration::from_secs(60), "{total:?}");
        assert!(
            total >= Duration::from_secs(40),
            "{total:?} of 60 s: gave up early"
        );
        assert!(all.len() >= 6, "{all:?}");
    }
}
