//! Validation of the database keys of `[pool.health_check]` (`role`,
//! `user`, `password`, `password_env`, `database`) and of `[pool] on_down`.

use super::checker::{at_line, non_empty, one_of, Checker};
use crate::raw::{Field, Header, Slot};
use crate::{DatabaseCheck, HealthCheck, HealthCheckKind, OnDown, Password, Role};

/// The database keys of a `[pool.health_check]` as read.
pub(super) struct RawDatabaseKeys {
    pub role: Slot<String>,
    pub user: Slot<String>,
    pub password: Slot<String>,
    pub password_env: Slot<String>,
    pub database: Slot<String>,
}

const DATABASE_KINDS: &str = "kind = \"postgres\", \"redis\" or \"mysql\"";

/// The database part of a check: `Some(None)` for a check that is not a
/// database's and has none of its keys, `None` after an error (a bad
/// `kind` included, which is reported already).
pub(super) fn database_check(
    c: &mut Checker,
    at: &Header,
    kind: Option<HealthCheckKind>,
    kind_written: bool,
    raw: RawDatabaseKeys,
) -> Option<Option<DatabaseCheck>> {
    let kind = kind?;
    if !kind.is_database() {
        let default_note = if kind_written {
            ""
        } else {
            ", the default when kind is not set"
        };
        let mut refused = false;
        let keys = [
            ("role", raw.role),
            ("user", raw.user),
            ("password", raw.password),
            ("password_env", raw.password_env),
            ("database", raw.database),
        ];
        for (key, slot) in keys {
            if let Slot::Set(field) = slot {
                let message = format!(
                    "{key} only applies to database checks ({DATABASE_KINDS}); this check is \
                     kind = \"{}\"{default_note} (remove {key} or set {DATABASE_KINDS})",
                    kind.as_str()
                );
                c.error(at.path_of(key), field.line, message);
                refused = true;
            }
        }
        return if refused { None } else { Some(None) };
    }

    let role = c.optional(
        at,
        "role",
        raw.role,
        Role::Any,
        one_of("role", &Role::ALL, Role::as_str),
    );
    let user = c.optional(at, "user", raw.user, None, |s| non_empty(s).map(Some));
    let password = match (raw.password, raw.password_env) {
        (Slot::Set(literal), Slot::Set(env)) => {
            let message = format!(
                "password and password_env are both set (password{}); keep one: \
                 password_env names an environment variable that holds the password",
                at_line(literal.line)
            );
            c.error(at.path_of("password_env"), env.line, message);
            None
        }
        (Slot::Invalid, _) | (_, Slot::Invalid) => None,
        (Slot::Set(literal), Slot::Missing) => c
            .check(at.path_of("password"), literal, non_empty)
            .map(|field| Password::Literal(field.value)),
        (Slot::Missing, Slot::Set(env)) => c
            .check(at.path_of("password_env"), env, env_name)
            .map(|field| Password::Env(field.value)),
        (Slot::Missing, Slot::Missing) => Some(Password::None),
    };
    let database = match (kind, raw.database) {
        (HealthCheckKind::Redis, Slot::Set(field)) => {
            let message = "database only applies to kind = \"postgres\" or \"mysql\"; \
                           Redis's ROLE answers the same in every database (remove database)";
            c.error(at.path_of("database"), field.line, message);
            None
        }
        (_, slot) => c
            .optional(at, "database", slot, None, |s| non_empty(s).map(Some))
            .map(|field: Field<Option<String>>| field.value),
    };
    Some(Some(DatabaseCheck {
        role: role?.value,
        user: user?.value,
        password: password?,
        database: database?,
    }))
}

/// An environment variable's name as shells write them: letters, digits
/// and `_`, not starting with a digit.
fn env_name(s: String) -> Result<String, String> {
    let valid = s
        .chars()
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && s.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
    if valid {
        Ok(s)
    } else {
        Err(format!(
            "expected the name of an environment variable (letters, digits and _, not \
             starting with a digit), such as \"HALB_PG_PASSWORD\", got {s:?}"
        ))
    }
}

/// `on_down`; its default follows the pool's check: `close` when the check
/// wants `role = "primary"`, else `keep`. `health_check` is `None` when the
/// check itself was refused (then `close` cannot be judged and is taken).
pub(super) fn on_down(
    c: &mut Checker,
    at: &Header,
    slot: Slot<String>,
    health_check: Option<&HealthCheck>,
) -> Option<OnDown> {
    let wants_primary = health_check
        .and_then(|check| check.database.as_ref())
        .is_some_and(|db| db.role == Role::Primary);
    let default = if wants_primary {
        OnDown::Close
    } else {
        OnDown::Keep
    };
    let on_down = c.optional(
        at,
        "on_down",
        slot,
        default,
        one_of("on_down", &OnDown::ALL, OnDown::as_str),
    )?;
    let unchecked = health_check.is_some_and(|check| check.kind == HealthCheckKind::None);
    if on_down.value == OnDown::Close && unchecked {
        let message = "on_down = \"close\" acts when active checks mark a backend down, and \
                       this pool has none; add a [pool.health_check] or remove on_down";
        c.error(at.path_of("on_down"), on_down.line, message);
        return None;
    }
    Some(on_down.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_variable_names() {
        assert_eq!(
            env_name("HALB_PG_PASSWORD".into()),
            Ok("HALB_PG_PASSWORD".into())
        );
        assert_eq!(env_name("_x1".into()), Ok("_x1".into()));
        for bad in ["", "1PASS", "PG-PASS", "$PG_PASS", "PG PASS"] {
            assert!(env_name(bad.into()).is_err(), "{bad:?}");
        }
    }
}
