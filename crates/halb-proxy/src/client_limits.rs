//! Per-client-address limits (`[listener.limits]`): open connections and
//! requests per second from one address, in a table of bounded size. It is
//! consulted only when a limit is set, so a listener without limits pays
//! nothing for it.
//!
//! The table holds an entry per address with open connections or a rate
//! bucket not yet full again; when it reaches [`MAX_ENTRIES`] the entries
//! that hold nothing are swept, and if none can go, a new address is let
//! through untracked (the listener's `max_connections` still bounds it):
//! the table never grows past its bound.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use halb_config::ClientLimits;

/// The most addresses tracked at once (about 64 bytes each).
pub(crate) const MAX_ENTRIES: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Entry {
    open: u32,
    /// Requests the address may still make now (a token bucket whose size
    /// and refill per second are `per_ip_rate`).
    tokens: f64,
    refilled: Instant,
}

/// Per-address state of one listener.
#[derive(Debug, Default)]
pub(crate) struct ClientTable {
    entries: Mutex<HashMap<IpAddr, Entry>>,
}

/// An open connection counted against its address until dropped.
pub(crate) struct ClientSlot {
    table: Arc<crate::admission::ListenerAdmission>,
    ip: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut entries = self.table.clients.lock();
        if let Some(entry) = entries.get_mut(&self.ip) {
            entry.open = entry.open.saturating_sub(1);
        }
    }
}

impl ClientTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Entries tracked now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// The entry of `ip`, made if there is room; `None` when the table is
    /// full of live entries.
    fn entry<'a>(
        entries: &'a mut HashMap<IpAddr, Entry>,
        ip: IpAddr,
        limits: &ClientLimits,
        now: Instant,
    ) -> Option<&'a mut Entry> {
        if !entries.contains_key(&ip) && entries.len() >= MAX_ENTRIES {
            entries.retain(|_, entry| {
                refill(entry, limits, now);
                let full = limits
                    .per_ip_rate
                    .is_none_or(|rate| entry.tokens >= f64::from(rate));
                entry.open > 0 || !full
            });
            if entries.len() >= MAX_ENTRIES {
                return None;
            }
        }
        Some(entries.entry(ip).or_insert(Entry {
            open: 0,
            tokens: f64::from(limits.per_ip_rate.unwrap_or(0)),
            refilled: now,
        }))
    }
}

fn refill(entry: &mut Entry, limits: &ClientLimits, now: Instant) {
    if let Some(rate) = limits.per_ip_rate {
        let rate = f64::from(rate);
        let elapsed = now.saturating_duration_since(entry.refilled).as_secs_f64();
        entry.tokens = (entry.tokens + elapsed * rate).min(rate);
        entry.refilled = now;
    }
}

/// What the limits say about a new connection from an address.
pub(crate) enum Admit {
    /// Taken; the slot (if any is tracked) is held while it lives.
    Yes(Option<ClientSlot>),
    /// Over `per_ip_connections` or `per_ip_rate`.
    TooMany,
}

/// Take a new connection from `ip`: counted against `per_ip_connections`
/// and, for TCP listeners (`count_rate`), one of `per_ip_rate`.
pub(crate) fn admit_connection(
    admission: &Arc<crate::admission::ListenerAdmission>,
    ip: IpAddr,
    limits: &ClientLimits,
    count_rate: bool,
) -> Admit {
    if limits.per_ip_connections.is_none() && (!count_rate || limits.per_ip_rate.is_none()) {
        return Admit::Yes(None);
    }
    let now = Instant::now();
    let mut entries = admission.clients.lock();
    let Some(entry) = ClientTable::entry(&mut entries, ip, limits, now) else {
        return Admit::Yes(None);
    };
    if limits
        .per_ip_connections
        .is_some_and(|max| entry.open >= max)
    {
        return Admit::TooMany;
    }
    if count_rate && limits.per_ip_rate.is_some() {
        refill(entry, limits, now);
        if entry.tokens < 1.0 {
            return Admit::TooMany;
        }
        entry.tokens -= 1.0;
    }
    entry.open += 1;
    drop(entries);
    Admit::Yes(Some(ClientSlot {
        table: admission.clone(),
        ip,
    }))
}

/// Whether one more request from `ip` is within `per_ip_rate` (HTTP).
pub(crate) fn allow_request(
    admission: &crate::admission::ListenerAdmission,
    ip: IpAddr,
    limits: &ClientLimits,
) -> bool {
    if limits.per_ip_rate.is_none() {
        return true;
    }
    let now = Instant::now();
    let mut entries = admission.clients.lock();
    let Some(entry) = ClientTable::entry(&mut entries, ip, limits, now) else {
        return true;
    };
    refill(entry, limits, now);
    if entry.tokens < 1.0 {
        return false;
    }
    entry.tokens -= 1.0;
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::ListenerAdmission;

    fn limits(connections: Option<u32>, rate: Option<u32>) -> ClientLimits {
        ClientLimits {
            per_ip_connections: connections,
            per_ip_rate: rate,
        }
    }

    #[test]
    fn connections_per_address_are_capped_and_freed() {
        let admission = Arc::new(ListenerAdmission::default());
        let limits = limits(Some(2), None);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = admit_connection(&admission, a, &limits, false);
        let _second = admit_connection(&admission, a, &limits, false);
        assert!(matches!(
            admit_connection(&admission, a, &limits, false),
            Admit::TooMany
        ));
        assert!(matches!(
            admit_connection(&admission, b, &limits, false),
            Admit::Yes(Some(_))
        ));
        drop(first);
        assert!(matches!(
            admit_connection(&admission, a, &limits, false),
            Admit::Yes(Some(_))
        ));
    }

    #[test]
    fn requests_per_address_follow_a_bucket() {
        let admission = ListenerAdmission::default();
        let limits = limits(None, Some(5));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let allowed = (0..20)
            .filter(|_| allow_request(&admission, a, &limits))
            .count();
        assert_eq!(allowed, 5, "a burst of the rate, then no more");
        assert!(allow_request(
            &admission,
            "192.0.2.9".parse().unwrap(),
            &limits
        ));
        std::thread::sleep(std::time::Duration::from_millis(450));
        assert!(allow_request(&admission, a, &limits), "refilled over time");
    }

    #[test]
    fn the_table_stays_bounded() {
        let admission = ListenerAdmission::default();
        let limits = limits(None, Some(1));
        for i in 0..(MAX_ENTRIES as u32 + 1000) {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            allow_request(&admission, ip, &limits);
        }
        assert!(admission.clients.len() <= MAX_ENTRIES);
    }
}
