//! Database health checks and fencing: `[pool.health_check] kind =
//! "postgres" | "redis" | "mysql"` with a `role` the server must have, the
//! credentials the check logs in with, and `[pool] on_down`, which closes
//! the open connections to a backend the moment it is marked down.

/// The role a database server must have for its backend to count as up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Writable: PostgreSQL not in recovery, a Redis master, MySQL or
    /// MariaDB with `read_only` off.
    Primary,
    /// Read-only copy: PostgreSQL in recovery (a standby), a Redis replica,
    /// MySQL or MariaDB with `read_only` on.
    Replica,
    /// Either: the server only has to answer its query.
    Any,
}

impl Role {
    /// Every role, in the order the docs list them.
    pub const ALL: [Role; 3] = [Role::Primary, Role::Replica, Role::Any];

    /// The name used in the config file and in check reasons.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
            Role::Any => "any",
        }
    }
}

/// Where the check's password comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum Password {
    /// No password: the server trusts the check's address or user.
    None,
    /// `password`, written in the file.
    Literal(String),
    /// `password_env`: the name of an environment variable of the halb
    /// process, read at each check (so a config pushed from another machine
    /// need not carry it, and a missing variable shows in the state reason).
    Env(String),
}

/// Never prints a password written in the file.
impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Password::None => f.write_str("None"),
            Password::Literal(_) => f.write_str("Literal(<redacted>)"),
            Password::Env(name) => write!(f, "Env({name:?})"),
        }
    }
}

/// The database part of a `postgres`, `redis` or `mysql` check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseCheck {
    /// `role`: the backend is up only while the server has it.
    pub role: Role,
    /// `user`: PostgreSQL's login role (default `postgres`); Redis's ACL
    /// user (default none: the `default` user, or a plain `AUTH password`);
    /// MySQL's account (default `root`).
    pub user: Option<String>,
    pub password: Password,
    /// `database`: PostgreSQL (default the user's name, as `psql` does)
    /// and MySQL (default none: the check needs no database).
    pub database: Option<String>,
}

impl Default for DatabaseCheck {
    fn default() -> Self {
        DatabaseCheck {
            role: Role::Any,
            user: None,
            password: Password::None,
            database: None,
        }
    }
}

/// The login role a PostgreSQL check uses when `user` is not set.
pub const DEFAULT_POSTGRES_USER: &str = "postgres";

/// The account a MySQL/MariaDB check logs in as when `user` is not set, as
/// the `mysql` client does for an administrator. Any account will do: the
/// check's query needs no privilege.
pub const DEFAULT_MYSQL_USER: &str = "root";

/// `[pool] on_down`: what happens to the open connections of a backend
/// when its checks mark it down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDown {
    /// Close them at once (HAProxy's `on-marked-down shutdown-sessions`):
    /// no client keeps writing to a demoted primary. The default when the
    /// pool's check has `role = "primary"`.
    Close,
    /// Leave them be; they end when either side closes. The default
    /// otherwise.
    Keep,
}

impl OnDown {
    /// Every choice, in the order the docs list them.
    pub const ALL: [OnDown; 2] = [OnDown::Close, OnDown::Keep];

    /// The name used in the config file.
    pub const fn as_str(self) -> &'static str {
        match self {
            OnDown::Close => "close",
            OnDown::Keep => "keep",
        }
    }
}
