//! Validation of `[pool.sticky]`.

use super::checker::{duration, int_in, one_of, Checker};
use super::pool::is_token_char;
use crate::raw::{RawSticky, Slot};
use crate::{
    HashKey, Sticky, StickyKind, DEFAULT_STICKY_COOKIE, DEFAULT_STICKY_SIZE, DEFAULT_STICKY_TTL,
    MIN_PEER_SECRET,
};

const KINDS: [&str; 2] = ["cookie", "table"];
const MAX_SIZE: i64 = 100_000_000;

pub(super) fn sticky(c: &mut Checker, raw: RawSticky) -> Option<Sticky> {
    let at = &raw.at;
    let kind = c.required(at, "kind", raw.kind, one_of("kind", &KINDS, |k| k))?;
    let only_for = |c: &mut Checker, key: &str, set: bool, other: &str| {
        if set {
            c.error(
                at.path_of(key),
                at.line,
                format!(
                    "`{key}` is for kind = \"{other}\"; this one is kind = \"{}\"",
                    kind.value
                ),
            );
        }
    };
    let secret_set = matches!(raw.secret, Slot::Set(_));
    let secret = match raw.secret {
        Slot::Missing => Some(None),
        Slot::Invalid => None,
        Slot::Set(field) => c
            .check(at.path_of("secret"), field, |s| {
                if s.chars().count() < MIN_PEER_SECRET {
                    Err(format!(
                        "the secret must be at least {MIN_PEER_SECRET} characters"
                    ))
                } else {
                    Ok(Some(s))
                }
            })
            .map(|f| f.value),
    };
    let kind = if kind.value == "cookie" {
        only_for(c, "key", matches!(raw.key, Slot::Set(_)), "table");
        only_for(c, "ttl", matches!(raw.ttl, Slot::Set(_)), "table");
        only_for(c, "size", matches!(raw.size, Slot::Set(_)), "table");
        let name = c.optional(
            at,
            "cookie",
            raw.cookie,
            DEFAULT_STICKY_COOKIE.to_owned(),
            |s| match s.chars().find(|&ch| !is_token_char(ch)) {
                _ if s.is_empty() => Err("expected a cookie name such as \"HALB\"".to_owned()),
                Some(bad) => Err(format!("cookie name {s:?} contains {bad:?}")),
                None => Ok(s),
            },
        )?;
        StickyKind::Cookie { name: name.value }
    } else {
        only_for(c, "cookie", matches!(raw.cookie, Slot::Set(_)), "cookie");
        only_for(c, "secret", secret_set, "cookie");
        let key = c.optional(at, "key", raw.key, HashKey::ClientIp, |s| {
            if s == "path" {
                return Err(
                    "expected \"client_ip\", \"header:NAME\" or \"cookie:NAME\" (a path is not a session)"
                        .to_owned(),
                );
            }
            super::pool::hash_key(s).map_err(|e| e.replace(", \"path\"", ""))
        });
        let ttl = c.optional(at, "ttl", raw.ttl, DEFAULT_STICKY_TTL, |s| {
            let d = duration(s)?;
            if d.is_zero() {
                Err("ttl must be more than 0".to_owned())
            } else {
                Ok(d)
            }
        });
        let size = c.optional(
            at,
            "size",
            raw.size,
            DEFAULT_STICKY_SIZE,
            int_in(1, MAX_SIZE),
        );
        StickyKind::Table {
            key: key?.value,
            ttl: ttl?.value,
            size: size?.value,
        }
    };
    Some(Sticky {
        kind,
        secret: secret?,
    })
}
