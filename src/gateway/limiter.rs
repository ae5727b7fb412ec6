use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Counts failed connect attempts per client address in a sliding window.
/// Loopback is not exempt, and IPv4-mapped IPv6 addresses share the bucket
/// of their IPv4 address.
pub struct FailureLimiter {
    window: Duration,
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

const MAX_TRACKED_ADDRESSES: usize = 10_000;

impl FailureLimiter {
    pub fn new(window: Duration) -> Self {
        FailureLimiter {
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Err(ms to wait) when `ip` already has `max` failures in the window.
    pub fn check(&self, ip: IpAddr, max: usize) -> Result<(), u64> {
        let now = Instant::now();
        let mut map = self.failures.lock().expect("limiter lock");
        let Some(times) = map.get_mut(&ip.to_canonical()) else {
            return Ok(());
        };
        self.expire(times, now);
        if times.len() < max {
            return Ok(());
        }
        let oldest = times.front().copied().unwrap_or(now);
        let wait = (oldest + self.window).saturating_duration_since(now);
        Err(wait.as_millis().max(1) as u64)
    }

    pub fn record_failure(&self, ip: IpAddr) {
        let now = Instant::now();
        let mut map = self.failures.lock().expect("limiter lock");
        if map.len() >= MAX_TRACKED_ADDRESSES {
            map.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < self.window)
            });
        }
        let times = map.entry(ip.to_canonical()).or_default();
        self.expire(times, now);
        times.push_back(now);
    }

    fn expire(&self, times: &mut VecDeque<Instant>, now: Instant) {
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            times.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_ipv6_shares_the_ipv4_bucket() {
        let limiter = FailureLimiter::new(Duration::from_secs(60));
        let v4: IpAddr = "127.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        limiter.record_failure(v4);
        limiter.record_failure(mapped);
        assert!(limiter.check(v4, 2).is_err());
        assert!(limiter.check(mapped, 3).is_ok());
    }
}
