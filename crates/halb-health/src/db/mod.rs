//! Database checks: log in over the database's own protocol (through its
//! well-kept client crate), ask the server its role, and pass only while
//! it has the role the pool wants.
//!
//! Each check opens a connection of its own and closes it when done, as
//! HAProxy's `pgsql-check`, `redis-check` and `mysql-check` do: a role
//! change or a broken login is seen at the next check, never hidden behind
//! a connection that was opened before it, and an idle check holds no
//! server slot.

mod mysql;
mod postgres;
mod redis;

use std::net::SocketAddr;

use halb_config::{DatabaseCheck, HealthCheck, HealthCheckKind, Password, Role};
use tokio::net::TcpStream;

use crate::probe::CheckFailure;

/// The role a server said it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerRole {
    Primary,
    Replica,
}

impl ServerRole {
    fn as_str(self) -> &'static str {
        match self {
            ServerRole::Primary => "primary",
            ServerRole::Replica => "replica",
        }
    }
}

/// Run a database check against `target`, the backend (or its check
/// port). PostgreSQL's and Redis's clients are handed a connection opened
/// here; MySQL's opens its own.
pub(crate) async fn check(check: &HealthCheck, target: SocketAddr) -> Result<(), CheckFailure> {
    let (db, password) = credentials(check)?;
    let have = match check.kind {
        HealthCheckKind::Postgres => postgres::role(db, password, connect(target).await?).await?,
        HealthCheckKind::Redis => redis::role(db, password, connect(target).await?).await?,
        HealthCheckKind::Mysql => mysql::role(db, password, target).await?,
        HealthCheckKind::Http | HealthCheckKind::Tcp | HealthCheckKind::None => return Ok(()),
    };
    judge(have, db.role)
}

async fn connect(target: SocketAddr) -> Result<TcpStream, CheckFailure> {
    let stream = TcpStream::connect(target)
        .await
        .map_err(|e| CheckFailure::Refused(e.kind().to_string()))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// The check's database keys (defaults when the table has none) and its
/// password, read now.
fn credentials(check: &HealthCheck) -> Result<(&DatabaseCheck, Option<String>), CheckFailure> {
    static DEFAULT: std::sync::OnceLock<DatabaseCheck> = std::sync::OnceLock::new();
    let db = match &check.database {
        Some(db) => db,
        None => DEFAULT.get_or_init(DatabaseCheck::default),
    };
    Ok((db, password(&db.password)?))
}

/// Whether a server with role `have` serves a pool that wants `want`.
fn judge(have: ServerRole, want: Role) -> Result<(), CheckFailure> {
    let passes = match want {
        Role::Any => true,
        Role::Primary => have == ServerRole::Primary,
        Role::Replica => have == ServerRole::Replica,
    };
    if passes {
        Ok(())
    } else {
        Err(CheckFailure::Role {
            have: have.as_str(),
            want,
        })
    }
}

/// The password to log in with, read from the environment at each check
/// when `password_env` names a variable.
fn password(password: &Password) -> Result<Option<String>, CheckFailure> {
    match password {
        Password::None => Ok(None),
        Password::Literal(password) => Ok(Some(password.clone())),
        Password::Env(name) => match std::env::var(name) {
            Ok(password) => Ok(Some(password)),
            Err(_) => Err(CheckFailure::Setup(format!(
                "password_env {name} is not set in halb's environment"
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_judged_against_the_wanted_one() {
        assert_eq!(judge(ServerRole::Primary, Role::Primary), Ok(()));
        assert_eq!(judge(ServerRole::Replica, Role::Any), Ok(()));
        let wrong = judge(ServerRole::Replica, Role::Primary).unwrap_err();
        assert_eq!(wrong.to_string(), "role is replica, want primary");
        let wrong = judge(ServerRole::Primary, Role::Replica).unwrap_err();
        assert_eq!(wrong.to_string(), "role is primary, want replica");
    }

    #[test]
    fn a_missing_password_variable_is_named() {
        let name = "HALB_TEST_SURELY_UNSET_PASSWORD";
        let failure = password(&Password::Env(name.into())).unwrap_err();
        assert_eq!(
            failure.to_string(),
            format!("password_env {name} is not set in halb's environment")
        );
    }
}
