//! Presence: who is connected — operator clients, device nodes and
//! channel accounts — and who left in the last five minutes. Every change
//! moves the presence version and is published as `presence.changed`
//! (under the lock, so versions arrive in order).

use crate::bus::Bus;
use crate::clock::now_ms;
use crate::protocol::types::{
    ChannelKind, ChannelStatus, ClientInfo, PresenceChangedEvent, PresenceChangedEventChange,
    PresenceEntry, PresenceKind, PresenceSnapshot, Scope,
};
use crate::protocol::{ErrorCode, Event, RpcError};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// How long an entry that went away is kept.
pub const TTL_MS: u64 = 5 * 60 * 1000;
/// The most entries kept; past it, the entry that left first goes, and
/// with none gone a new one is not tracked.
pub const MAX_ENTRIES: usize = 200;

pub struct Presence {
    bus: Bus,
    version: Arc<AtomicU64>,
    entries: Mutex<HashMap<String, Tracked>>,
    /// Whether "presence is full" was logged since it last had room.
    told_full: std::sync::atomic::AtomicBool,
}

/// A client reports its activity at most this often.
pub const REPORT_EVERY_MS: u64 = 1000;

struct Tracked {
    entry: PresenceEntry,
    /// When the connection last sent a request (ms), kept by the
    /// connection itself so requests take no lock.
    activity: Option<Arc<AtomicU64>>,
    /// When the client last reported its activity.
    reported_at_ms: u64,
}

impl Tracked {
    fn current(&self) -> PresenceEntry {
        let mut entry = self.entry.clone();
        if let Some(activity) = &self.activity {
            entry.last_activity_at_ms = entry
                .last_activity_at_ms
                .max(activity.load(Ordering::Relaxed));
        }
        entry
    }
}

/// A connection that completed connect.
pub struct Joining<'a> {
    pub conn_id: &'a str,
    pub kind: PresenceKind,
    pub client: &'a ClientInfo,
    pub scopes: Vec<Scope>,
    pub remote: IpAddr,
    pub activity: Arc<AtomicU64>,
}

impl Presence {
    /// `version` is the counter the health snapshot shows.
    pub fn new(bus: Bus, version: Arc<AtomicU64>) -> Self {
        Presence {
            bus,
            version,
            entries: Mutex::default(),
            told_full: Default::default(),
        }
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Relaxed)
    }

    /// Every entry, most recently active first (those gone too long
    /// removed first).
    pub fn snapshot(&self) -> PresenceSnapshot {
        self.prune(now_ms());
        let entries = self.entries.lock().expect("presence");
        let mut list: Vec<PresenceEntry> = entries.values().map(Tracked::current).collect();
        list.sort_by(|a, b| {
            b.last_activity_at_ms
                .cmp(&a.last_activity_at_ms)
                .then_with(|| a.key.cmp(&b.key))
        });
        PresenceSnapshot {
            version: self.version(),
            entries: list,
        }
    }

    pub fn join(&self, joining: Joining<'_>) {
        let now = now_ms();
        let client = joining.client;
        let entry = PresenceEntry {
            key: conn_key(joining.conn_id),
            kind: joining.kind,
            online: true,
            client_name: Some(client.name.clone()),
            client_version: Some(client.version.clone()),
            platform: client.platform.clone(),
            instance_id: client.instance_id.clone(),
            scopes: joining.scopes,
            address: Some(mask(joining.remote)),
            channel: None,
            account_id: None,
            status: None,
            connected_at_ms: now,
            last_activity_at_ms: now,
            last_input_seconds: None,
            text: None,
            left_at_ms: None,
            gateway: None,
        };
        let mut entries = self.entries.lock().expect("presence");
        if let Some(instance) = &entry.instance_id {
            let replaced: Vec<String> = entries
                .iter()
                .filter(|(_, t)| !t.entry.online && t.entry.instance_id.as_ref() == Some(instance))
                .map(|(key, _)| key.clone())
                .collect();
            for key in replaced {
                if let Some(old) = entries.remove(&key) {
                    self.changed(PresenceChangedEventChange::Expired, old.entry);
                }
            }
        }
        if !self.make_room(&mut entries) {
            if !self.told_full.swap(true, Ordering::Relaxed) {
                tracing::warn!("presence is full ({MAX_ENTRIES} entries online): connections past it are not listed");
            }
            return;
        }
        self.told_full.store(false, Ordering::Relaxed);
        self.changed(PresenceChangedEventChange::Joined, entry.clone());
        let activity = Some(joining.activity);
        let tracked = Tracked {
            entry,
            activity,
            reported_at_ms: 0,
        };
        entries.insert(tracked.entry.key.clone(), tracked);
    }

    /// The connection closed: its entry stays, offline, for TTL_MS.
    pub fn leave(&self, conn_id: &str) {
        let mut entries = self.entries.lock().expect("presence");
        let Some(tracked) = entries.get_mut(&conn_key(conn_id)) else {
            return;
        };
        tracked.entry = tracked.current();
        tracked.activity = None;
        tracked.entry.online = false;
        tracked.entry.left_at_ms = Some(now_ms());
        let entry = tracked.entry.clone();
        self.changed(PresenceChangedEventChange::Left, entry);
    }

    /// A client's report of its own activity.
    pub fn report(
        &self,
        conn_id: &str,
        last_input_seconds: Option<u64>,
        text: Option<String>,
    ) -> Result<u64, RpcError> {
        let mut entries = self.entries.lock().expect("presence");
        let tracked = entries.get_mut(&conn_key(conn_id)).ok_or_else(|| {
            RpcError::new(
                ErrorCode::Unavailable,
                format!("presence is full ({MAX_ENTRIES} entries); this connection is not listed"),
            )
        })?;
        let now = now_ms();
        if let Some(wait) = (tracked.reported_at_ms + REPORT_EVERY_MS)
            .checked_sub(now)
            .filter(|w| *w > 0)
        {
            return Err(RpcError::new(
                ErrorCode::RateLimited,
                format!("report presence at most once a second; retry in {wait} ms"),
            )
            .with_retry_after(wait));
        }
        tracked.reported_at_ms = now;
        if last_input_seconds.is_some() {
            tracked.entry.last_input_seconds = last_input_seconds;
        }
        if let Some(text) = text {
            tracked.entry.text = (!text.is_empty()).then(|| text.parse().ok()).flatten();
        }
        tracked.entry.last_activity_at_ms = now;
        let entry = tracked.current();
        Ok(self.changed(PresenceChangedEventChange::Updated, entry))
    }

    /// A channel account's status; None when the account was removed.
    pub fn channel(&self, kind: &ChannelKind, account: &str, status: Option<ChannelStatus>) {
        let key = format!("channel:{kind}:{account}");
        let now = now_ms();
        let mut entries = self.entries.lock().expect("presence");
        let Some(status) = status else {
            if let Some(tracked) = entries.get_mut(&key) {
                tracked.entry.online = false;
                tracked.entry.status = Some(ChannelStatus::Disconnected);
                tracked.entry.left_at_ms = Some(now);
                let entry = tracked.entry.clone();
                self.changed(PresenceChangedEventChange::Left, entry);
            }
            return;
        };
        let online = status == ChannelStatus::Connected;
        if let Some(tracked) = entries.get_mut(&key) {
            if tracked.entry.status == Some(status) {
                return;
            }
            let joined = !tracked.entry.online && online;
            let entry = &mut tracked.entry;
            entry.status = Some(status);
            entry.online = online;
            entry.last_activity_at_ms = now;
            // A configured account stays listed whatever its status.
            entry.left_at_ms = None;
            if joined {
                entry.connected_at_ms = now;
            }
            let entry = entry.clone();
            self.changed(PresenceChangedEventChange::Updated, entry);
            return;
        }
        if !self.make_room(&mut entries) {
            return;
        }
        let entry = PresenceEntry {
            key: key.clone(),
            kind: PresenceKind::Channel,
            online,
            client_name: None,
            client_version: None,
            platform: None,
            instance_id: None,
            scopes: Vec::new(),
            address: None,
            channel: Some(kind.clone()),
            account_id: Some(account.to_string()),
            status: Some(status),
            connected_at_ms: now,
            last_activity_at_ms: now,
            last_input_seconds: None,
            text: None,
            left_at_ms: None,
            gateway: None,
        };
        self.changed(PresenceChangedEventChange::Joined, entry.clone());
        entries.insert(
            key,
            Tracked {
                entry,
                activity: None,
                reported_at_ms: 0,
            },
        );
    }

    /// Removes entries gone longer than TTL_MS; returns how many.
    pub fn prune(&self, now: u64) -> usize {
        let mut entries = self.entries.lock().expect("presence");
        let expired: Vec<String> = entries
            .iter()
            .filter(|(_, t)| t.entry.left_at_ms.is_some_and(|at| at + TTL_MS <= now))
            .map(|(key, _)| key.clone())
            .collect();
        for key in &expired {
            if let Some(old) = entries.remove(key) {
                self.changed(PresenceChangedEventChange::Expired, old.entry);
            }
        }
        expired.len()
    }

    /// Room for one more entry: the one that left first goes if need be.
    fn make_room(&self, entries: &mut HashMap<String, Tracked>) -> bool {
        if entries.len() < MAX_ENTRIES {
            return true;
        }
        let oldest = entries
            .iter()
            .filter_map(|(key, t)| t.entry.left_at_ms.map(|at| (at, key.clone())))
            .min();
        match oldest.and_then(|(_, key)| entries.remove(&key)) {
            Some(old) => {
                self.changed(PresenceChangedEventChange::Expired, old.entry);
                true
            }
            None => false,
        }
    }

    /// A new version, published with the entry (called under the lock).
    fn changed(&self, change: PresenceChangedEventChange, entry: PresenceEntry) -> u64 {
        let version = self.version.fetch_add(1, Ordering::Relaxed) + 1;
        self.bus
            .publish(Event::PresenceChanged(PresenceChangedEvent {
                version,
                change,
                entry,
            }));
        version
    }
}

fn conn_key(conn_id: &str) -> String {
    format!("conn:{conn_id}")
}

/// An address as presence shows it: loopback, or its network part.
pub fn mask(ip: IpAddr) -> String {
    if ip.is_loopback() {
        return "loopback".to_string();
    }
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.x")
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => mask(IpAddr::V4(v4)),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::x", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presence() -> (Presence, crate::bus::Subscription) {
        let bus = Bus::local();
        let events = bus.subscribe();
        (Presence::new(bus, Arc::default()), events)
    }

    fn client(instance: Option<&str>) -> ClientInfo {
        ClientInfo {
            name: "it".into(),
            version: "1".into(),
            platform: Some("linux".into()),
            instance_id: instance.map(String::from),
        }
    }

    fn join(p: &Presence, conn: &str, instance: Option<&str>) {
        let client = client(instance);
        p.join(Joining {
            conn_id: conn,
            kind: PresenceKind::Operator,
            client: &client,
            scopes: vec![],
            remote: "192.168.7.42".parse().unwrap(),
            activity: Arc::default(),
        });
    }

    #[test]
    fn addresses_are_masked() {
        assert_eq!(mask("127.0.0.1".parse().unwrap()), "loopback");
        assert_eq!(mask("::1".parse().unwrap()), "loopback");
        assert_eq!(mask("192.168.1.77".parse().unwrap()), "192.168.1.x");
        assert_eq!(
            mask("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "2001:db8:1:2::x"
        );
        assert_eq!(mask("::ffff:10.0.0.9".parse().unwrap()), "10.0.0.x");
    }

    #[test]
    fn entries_leave_expire_and_are_replaced_by_their_instance() {
        let (p, _events) = presence();
        join(&p, "c1", Some("laptop"));
        join(&p, "c2", None);
        p.leave("c1");
        let snapshot = p.snapshot();
        assert_eq!(snapshot.version, 3);
        let c1 = snapshot
            .entries
            .iter()
            .find(|e| e.key == "conn:c1")
            .unwrap();
        assert!(!c1.online && c1.left_at_ms.is_some());
        // The same instance comes back: its old entry goes.
        join(&p, "c3", Some("laptop"));
        let keys: Vec<String> = p.snapshot().entries.into_iter().map(|e| e.key).collect();
        assert!(
            !keys.contains(&"conn:c1".to_string()) && keys.len() == 2,
            "{keys:?}"
        );
        p.leave("c2");
        assert_eq!(p.prune(now_ms() + TTL_MS - 1000), 0);
        assert_eq!(p.prune(now_ms() + TTL_MS + 1000), 1);
        assert_eq!(p.snapshot().entries.len(), 1);
    }

    #[test]
    fn the_roster_is_bounded_and_gives_way_to_online_entries() {
        let (p, _events) = presence();
        for i in 0..MAX_ENTRIES {
            join(&p, &format!("c{i}"), None);
        }
        join(&p, "late", None);
        assert_eq!(p.snapshot().entries.len(), MAX_ENTRIES);
        assert!(
            p.report("late", Some(1), None).is_err(),
            "late is not listed"
        );
        p.leave("c0");
        join(&p, "later", None);
        let keys: Vec<String> = p.snapshot().entries.into_iter().map(|e| e.key).collect();
        assert!(keys.contains(&"conn:later".to_string()) && !keys.contains(&"conn:c0".to_string()));
    }
}
