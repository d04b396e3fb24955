//! Database checks: log in over the database's own protocol (through its
//! well-kept client crate), ask the server its role, and pass only while
//! it has the role the pool wants.
//!
//! Each check opens a connection of its own and closes it when done, as
//! HAProxy's `pgsql-check` and `redis-check` do: a role change or a broken
//! login is seen at the next check, never hidden behind a connection that
//! was opened before it, and an idle check holds no server slot.

mod postgres;
mod redis;

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

/// Run a database check over `stream`, connected to the backend (or its
/// check port).
pub(crate) async fn check(check: &HealthCheck, stream: TcpStream) -> Result<(), CheckFailure> {
    let _ = stream.set_nodelay(true);
    let default = DatabaseCheck::default();
    let db = check.database.as_ref().unwrap_or(&default);
    let password = password(&db.password)?;
    let have = match check.kind {
        HealthCheckKind::Postgres => postgres::role(db, password, stream).await?,
        HealthCheckKind::Redis => redis::role(db, password, stream).await?,
        HealthCheckKind::Http | HealthCheckKind::Tcp | HealthCheckKind::None => return Ok(()),
    };
    judge(have, db.role)
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
