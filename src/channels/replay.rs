//! Signed webhook requests already delivered, remembered for as long as
//! their timestamp is acceptable, so a captured request cannot be sent
//! again.

use std::collections::HashMap;

/// At most this many requests are remembered; past it (with none expired)
/// new requests are refused rather than forgotten.
const MAX_REMEMBERED: usize = 100_000;

#[derive(Default)]
pub struct ReplayCache {
    /// (account, timestamp, signature) → when it may be forgotten (unix s).
    seen: HashMap<(String, u64, Vec<u8>), u64>,
}

impl ReplayCache {
    /// Records a request; false if it was delivered before (or cannot be
    /// remembered).
    pub fn first_delivery(
        &mut self,
        account: &str,
        timestamp: u64,
        signature: Vec<u8>,
        forget_at: u64,
        now: u64,
    ) -> bool {
        if self.seen.len() >= MAX_REMEMBERED {
            self.seen.retain(|_, until| *until > now);
            if self.seen.len() >= MAX_REMEMBERED {
                tracing::warn!("webhook replay cache full; refusing requests until entries expire");
                return false;
            }
        }
        self.seen
            .insert((account.to_string(), timestamp, signature), forget_at)
            .is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_delivered_once() {
        let mut cache = ReplayCache::default();
        assert!(cache.first_delivery("a", 100, vec![1, 2], 400, 100));
        assert!(!cache.first_delivery("a", 100, vec![1, 2], 400, 101));
        assert!(cache.first_delivery("b", 100, vec![1, 2], 400, 101));
        assert!(cache.first_delivery("a", 101, vec![1, 2], 401, 101));
    }
}
