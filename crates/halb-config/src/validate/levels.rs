//! Validation of priority levels and zones: `[[pool.backend]] priority`
//! and `zone`, `[[pool]] overflow`, `[runtime] zone`. What they mean is in
//! `docs/zones.md`; the shares are computed by `halb_balance::spread`.

use super::checker::{int_in, Checker};
use crate::raw::{Header, Slot};
use crate::{DEFAULT_OVERFLOW, MAX_PRIORITY};

/// `overflow`: the percentage of a level's (or zone's) weight that must be
/// healthy for it to take all the traffic it is offered.
pub(super) fn overflow(c: &mut Checker, at: &Header, raw: Slot<i64>) -> Option<u32> {
    let overflow = c.optional(at, "overflow", raw, DEFAULT_OVERFLOW, int_in(1, 100))?;
    Some(overflow.value)
}

/// A backend's `priority`, 0..=9. `backup = true` is the level after every
/// priority and takes traffic only when no other backend can; it cannot be
/// given a priority as well.
pub(super) fn priority(
    c: &mut Checker,
    at: &Header,
    raw: Slot<i64>,
    backup: Option<bool>,
) -> Option<u8> {
    let set = matches!(raw, Slot::Set(_));
    let line = match &raw {
        Slot::Set(field) => field.line,
        _ => at.line,
    };
    let priority = c.optional(at, "priority", raw, 0, int_in(0, i64::from(MAX_PRIORITY)))?;
    if set && backup == Some(true) {
        c.error(
            at.path_of("priority"),
            line,
            "a backend with backup = true is the last level, after every priority, and takes \
             traffic only when no other backend can; remove `priority`, or remove `backup` \
             and give it the priority of the level it belongs to",
        );
        return None;
    }
    Some(priority.value)
}

/// A `zone` name (a backend's or the node's): 1 to 64 letters, digits,
/// `-`, `_` and `.`, as cloud zone names are (`eu-west-1a`).
pub(super) fn zone(c: &mut Checker, at: &Header, raw: Slot<String>) -> Option<Option<String>> {
    let zone = c.optional(at, "zone", raw.map(|s| Some(s.clone())), None, |zone| {
        let Some(zone) = zone else { return Ok(None) };
        check_zone_name(&zone)?;
        Ok(Some(zone))
    })?;
    Some(zone.value)
}

/// Whether `zone` is a valid zone name: 1 to 64 letters, digits, `-`, `_`
/// and `.`; the error says why not. Backends registered in etcd are held
/// to the same rule.
pub fn check_zone_name(zone: &str) -> Result<(), String> {
    let allowed = |ch: char| ch.is_ascii_alphanumeric() || "-_.".contains(ch);
    if zone.is_empty() || zone.len() > 64 {
        return Err(format!(
            "expected a zone name of 1 to 64 characters, got {zone:?}"
        ));
    }
    if let Some(bad) = zone.chars().find(|&ch| !allowed(ch)) {
        return Err(format!(
            "zone {zone:?} contains {bad:?}; a zone name has letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    fn errors(text: &str) -> Vec<String> {
        match crate::parse(text) {
            Ok(_) => Vec::new(),
            Err(e) => {
                e.0.iter()
                    .map(|e| format!("{}: {}", e.path, e.message))
                    .collect()
            }
        }
    }

    fn pool(backend: &str, pool: &str) -> String {
        format!(
            "[runtime]\nzone = \"a\"\n\
             [[listener]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\npool = \"app\"\n\
             [[pool]]\nname = \"app\"\n{pool}\n\
             [[pool.backend]]\naddress = \"127.0.0.1:1\"\n{backend}\n"
        )
    }

    #[test]
    fn priorities_zones_and_overflow_are_read() {
        let config = crate::parse(&pool("priority = 3\nzone = \"b-1\"", "overflow = 50")).unwrap();
        let app = &config.pools[0];
        assert_eq!(app.overflow, 50);
        assert_eq!(app.backends[0].priority, 3);
        assert_eq!(app.backends[0].zone.as_deref(), Some("b-1"));
        assert_eq!(config.runtime.zone.as_deref(), Some("a"));
        let defaults = crate::parse(&pool("", "")).unwrap();
        assert_eq!(defaults.pools[0].overflow, crate::DEFAULT_OVERFLOW);
        assert_eq!(defaults.pools[0].backends[0].priority, 0);
        assert_eq!(defaults.pools[0].backends[0].zone, None);
    }

    #[test]
    fn bad_values_name_their_key() {
        let errors = errors(&pool("priority = 10\nzone = \"a b\"", "overflow = 0"));
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("pool[0].overflow: "), "{errors:?}");
        assert!(
            errors[1].starts_with("pool[0].backend[0].priority: "),
            "{errors:?}"
        );
        assert!(
            errors[2].starts_with("pool[0].backend[0].zone: "),
            "{errors:?}"
        );
        assert!(errors[2].contains("' '"), "{errors:?}");
    }

    #[test]
    fn backup_and_priority_together_are_refused() {
        let errors = errors(&pool("backup = true\npriority = 1", ""));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("pool[0].backend[0].priority: "));
        assert!(errors[0].contains("backup = true"), "{errors:?}");
        // Spelled out as not a backup, a priority is fine.
        assert_eq!(
            self::errors(&pool("backup = false\npriority = 1", "")),
            [] as [String; 0]
        );
    }
}
