//! Token buckets per client address and per app: a request takes a token; an empty bucket answers how long until the next one.
//!
//! A bucket holds up to `burst` tokens and gains `per_s` a second. Buckets live in a map per
//! kind; one that has refilled completely is the same as none, so the map drops those when it
//! grows ([`PRUNE_AT`]), and an idle edge holds nothing and does nothing.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries in a map before full buckets are dropped.
const PRUNE_AT: usize = 4096;

/// A rate: `per_s` a second, bursts up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Tokens gained a second.
    pub per_s: u32,
    /// The most tokens a bucket holds.
    pub burst: u32,
}

impl Rate {
    /// `per_s` a second with a burst of twice that.
    pub fn per_second(per_s: u32) -> Self {
        Self {
            per_s: per_s.max(1),
            burst: per_s.max(1).saturating_mul(2),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Buckets by key.
#[derive(Debug)]
pub struct Buckets<K> {
    map: Mutex<HashMap<K, Bucket>>,
}

impl<K> Default for Buckets<K> {
    fn default() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone> Buckets<K> {
    /// Takes a token of `key`'s bucket at `rate`.
    ///
    /// # Errors
    ///
    /// How long until a token is there, when none is.
    pub fn take(&self, key: &K, rate: Rate, now: Instant) -> Result<(), Duration> {
        let per_s = f64::from(rate.per_s);
        let burst = f64::from(rate.burst.max(1));
        let Ok(mut map) = self.map.lock() else {
            return Ok(());
        };
        if map.len() >= PRUNE_AT && !map.contains_key(key) {
            map.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_s < burst
            });
        }
        let bucket = map.entry(key.clone()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let gained = now.saturating_duration_since(bucket.at).as_secs_f64() * per_s;
        bucket.tokens = (bucket.tokens + gained).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_s))
        }
    }

    /// How many buckets are held.
    pub fn len(&self) -> usize {
        self.map.lock().map_or(0, |m| m.len())
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The edge's buckets: per client address, per app.
#[derive(Debug, Default)]
pub struct RateLimits {
    /// Per client address.
    pub clients: Buckets<IpAddr>,
    /// Per `(tenant, app)`.
    pub apps: Buckets<(String, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let buckets = Buckets::<u8>::default();
        let rate = Rate {
            per_s: 10,
            burst: 3,
        };
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(buckets.take(&1, rate, t0), Ok(()));
        }
        let wait = buckets.take(&1, rate, t0).expect_err("empty");
        assert!(
            wait > Duration::from_millis(90) && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        // Another key has its own bucket.
        assert_eq!(buckets.take(&2, rate, t0), Ok(()));
        // 100 ms later one token is back, not more.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(buckets.take(&1, rate, t1), Ok(()));
        assert!(buckets.take(&1, rate, t1).is_err());
    }

    #[test]
    fn full_buckets_are_dropped_when_the_map_grows() {
        let buckets = Buckets::<usize>::default();
        let rate = Rate::per_second(1000);
        let t0 = Instant::now();
        for key in 0..PRUNE_AT {
            buckets.take(&key, rate, t0).expect("a token");
        }
        assert_eq!(buckets.len(), PRUNE_AT);
        // A second later every bucket has refilled: the next new key drops them.
        buckets
            .take(&PRUNE_AT, rate, t0 + Duration::from_secs(1))
            .expect("a token");
        assert_eq!(buckets.len(), 1);
    }
}
