use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Who a limit applies to. A local process can pick any source address in
/// 127.0.0.0/8 and a LAN host usually owns a whole IPv6 /64, so those
/// count as one client each.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ClientKey {
    Loopback,
    V4(Ipv4Addr),
    /// The upper 64 bits of an IPv6 address.
    V6Net(u64),
}

pub fn client_key(ip: IpAddr) -> ClientKey {
    match ip.to_canonical() {
        ip if ip.is_loopback() => ClientKey::Loopback,
        IpAddr::V4(v4) => ClientKey::V4(v4),
        IpAddr::V6(v6) => ClientKey::V6Net((u128::from(v6) >> 64) as u64),
    }
}

/// Counts failed authentication attempts in a sliding window, per client
/// and in total. Every failure is one entry in a time-ordered log, so
/// expiry is O(1) per entry and memory is bounded by the total budget.
pub struct FailureLimiter {
    window: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Every failure in the window, oldest first.
    log: VecDeque<(Instant, ClientKey)>,
    /// Each client's failures in the window, oldest first.
    per_client: HashMap<ClientKey, VecDeque<Instant>>,
}

/// Why an attempt is refused before the credential is even looked at.
#[derive(Debug, PartialEq)]
pub struct Limited {
    pub retry_after_ms: u64,
    /// True when the limit hit is the one for all clients together.
    pub global: bool,
}

impl FailureLimiter {
    pub fn new(window: Duration) -> Self {
        FailureLimiter {
            window,
            state: Mutex::new(State::default()),
        }
    }

    /// Refuses when `ip`'s client already has `per_client` failures in the
    /// window, or all clients together have `total`.
    pub fn check(&self, ip: IpAddr, per_client: usize, total: usize) -> Result<(), Limited> {
        let now = Instant::now();
        let mut state = self.state.lock().expect("limiter lock");
        self.expire(&mut state, now);
        let wait = |oldest: Instant| {
            let wait = (oldest + self.window).saturating_duration_since(now);
            wait.as_millis().max(1) as u64
        };
        if let Some(times) = state.per_client.get(&client_key(ip)) {
            if times.len() >= per_client {
                return Err(Limited {
                    retry_after_ms: wait(times[0]),
                    global: false,
                });
            }
        }
        if state.log.len() >= total {
            return Err(Limited {
                retry_after_ms: wait(state.log[0].0),
                global: true,
            });
        }
        Ok(())
    }

    /// Records a failure. `hard_cap` bounds the log whatever the budget:
    /// past it the oldest failures are forgotten first.
    pub fn record_failure(&self, ip: IpAddr, hard_cap: usize) {
        let now = Instant::now();
        let key = client_key(ip);
        let mut state = self.state.lock().expect("limiter lock");
        self.expire(&mut state, now);
        while state.log.len() >= hard_cap.max(1) {
            forget_oldest(&mut state);
        }
        state.log.push_back((now, key));
        state.per_client.entry(key).or_default().push_back(now);
    }

    fn expire(&self, state: &mut State, now: Instant) {
        while state
            .log
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) >= self.window)
        {
            forget_oldest(state);
        }
    }
}

fn forget_oldest(state: &mut State) {
    let Some((_, key)) = state.log.pop_front() else {
        return;
    };
    if let Some(times) = state.per_client.get_mut(&key) {
        times.pop_front();
        if times.is_empty() {
            state.per_client.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn all_loopback_is_one_client() {
        let limiter = FailureLimiter::new(Duration::from_secs(60));
        for i in 1..=3 {
            limiter.record_failure(ip(&format!("127.0.0.{i}")), 100);
        }
        limiter.record_failure(ip("::1"), 100);
        limiter.record_failure(ip("::ffff:127.9.9.9"), 100);
        let limited = limiter.check(ip("127.1.2.3"), 5, 100).unwrap_err();
        assert!(!limited.global);
        assert!(limiter.check(ip("10.0.0.1"), 5, 100).is_ok());
    }

    #[test]
    fn ipv6_counts_per_64() {
        let limiter = FailureLimiter::new(Duration::from_secs(60));
        limiter.record_failure(ip("2001:db8:1:2::1"), 100);
        limiter.record_failure(ip("2001:db8:1:2:ffff::9"), 100);
        assert!(limiter.check(ip("2001:db8:1:2::77"), 2, 100).is_err());
        assert!(limiter.check(ip("2001:db8:1:3::1"), 2, 100).is_ok());
    }

    #[test]
    fn the_total_budget_covers_every_address() {
        let limiter = FailureLimiter::new(Duration::from_secs(60));
        for i in 1..=4 {
            limiter.record_failure(ip(&format!("10.0.0.{i}")), 100);
        }
        let limited = limiter.check(ip("10.9.9.9"), 10, 4).unwrap_err();
        assert!(limited.global);
    }

    #[test]
    fn the_log_never_outgrows_its_hard_cap() {
        let limiter = FailureLimiter::new(Duration::from_secs(60));
        for i in 0..1000u32 {
            limiter.record_failure(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), 50);
        }
        let state = limiter.state.lock().unwrap();
        assert_eq!(state.log.len(), 50);
        assert_eq!(state.per_client.len(), 50);
    }
}
