//! MySQL and MariaDB: log in (`mysql_native_password`, or
//! `caching_sha2_password` without TLS by the server's RSA key) and ask
//! `SELECT @@global.read_only`: 0 on a primary, 1 on a replica.
//!
//! `super_read_only` is not asked: on MySQL it forces `read_only` on, so a
//! server with it already reads as a replica, and MariaDB has no such
//! variable (asking for it would fail there).
//!
//! The client crate opens the connection itself (it cannot take one that
//! is open already), so the check makes no bare TCP connect first: MySQL
//! counts a connection closed before its handshake as an error of the
//! client's host and blocks the host after `max_connect_errors` of them.

use std::net::SocketAddr;

use halb_config::{DatabaseCheck, DEFAULT_MYSQL_USER};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, DriverError, Error, OptsBuilder, Value};

use super::ServerRole;
use crate::probe::CheckFailure;

/// Server errors of a refused login: access denied (1045), to the
/// database (1044), without a password (1698), host not allowed (1130),
/// auth method not supported (1251), password expired (1862), account
/// locked (MySQL 3118, MariaDB 4151).
const AUTH_ERRORS: [u16; 8] = [1044, 1045, 1130, 1251, 1698, 1862, 3118, 4151];

pub(super) async fn role(
    db: &DatabaseCheck,
    password: Option<String>,
    target: SocketAddr,
) -> Result<ServerRole, CheckFailure> {
    let opts = OptsBuilder::default()
        .ip_or_hostname(target.ip().to_string())
        .tcp_port(target.port())
        .user(Some(db.user.as_deref().unwrap_or(DEFAULT_MYSQL_USER)))
        .pass(password)
        .db_name(db.database.clone())
        .tcp_nodelay(true)
        // Stay on the address being checked: by default the client asks
        // for the server's Unix socket and moves to it when on loopback.
        .prefer_socket(false)
        // Known here, so the client does not ask the server for them
        // (one query per check, the role's, and no more).
        .max_allowed_packet(Some(64 * 1024))
        .wait_timeout(Some(60))
        .stmt_cache_size(0);
    let mut conn = Conn::new(opts).await.map_err(failure)?;
    let answer: Result<Option<Value>, Error> = conn.query_first("SELECT @@global.read_only").await;
    // A polite COM_QUIT, so the server counts no aborted connection.
    let _ = conn.disconnect().await;
    match answer.map_err(failure)? {
        Some(value) => read_only(&value),
        None => Err(CheckFailure::Protocol(
            "SELECT @@global.read_only returned no row".to_owned(),
        )),
    }
}

/// The role a `@@global.read_only` value means: an integer (text or
/// binary, as servers send it), or `ON`/`OFF`.
fn read_only(value: &Value) -> Result<ServerRole, CheckFailure> {
    let on = match value {
        Value::Int(n) => Some(*n != 0),
        Value::UInt(n) => Some(*n != 0),
        Value::Bytes(text) => match text.to_ascii_uppercase().as_slice() {
            b"0" | b"OFF" => Some(false),
            b"1" | b"ON" => Some(true),
            _ => None,
        },
        _ => None,
    };
    match on {
        Some(false) => Ok(ServerRole::Primary),
        Some(true) => Ok(ServerRole::Replica),
        None => Err(CheckFailure::Protocol(format!(
            "unexpected @@global.read_only value {value:?}"
        ))),
    }
}

fn failure(error: Error) -> CheckFailure {
    match error {
        Error::Server(server) if AUTH_ERRORS.contains(&server.code) => {
            CheckFailure::Auth(format!("{} (error {})", server.message, server.code))
        }
        Error::Server(server) => {
            CheckFailure::Protocol(format!("{} (error {})", server.message, server.code))
        }
        Error::Driver(DriverError::UnknownAuthPlugin { name }) => CheckFailure::Auth(format!(
            "the server asks for the authentication plugin {name}, which the check does not \
             speak; give the check's user mysql_native_password or caching_sha2_password"
        )),
        Error::Driver(DriverError::CleartextPluginDisabled) => CheckFailure::Auth(
            "the server asks for mysql_clear_password, which the check never sends over a \
             connection without TLS"
                .to_owned(),
        ),
        Error::Io(mysql_async::IoError::Io(io)) if is_connect_error(&io) => {
            CheckFailure::Refused(io.kind().to_string())
        }
        Error::Io(io) => CheckFailure::Protocol(format!("connection lost: {io}")),
        other => CheckFailure::Protocol(other.to_string()),
    }
}

fn is_connect_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionRefused | HostUnreachable | NetworkUnreachable | AddrNotAvailable
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_values_name_the_role() {
        assert_eq!(read_only(&Value::Int(0)), Ok(ServerRole::Primary));
        assert_eq!(read_only(&Value::UInt(1)), Ok(ServerRole::Replica));
        assert_eq!(
            read_only(&Value::Bytes(b"0".to_vec())),
            Ok(ServerRole::Primary)
        );
        assert_eq!(
            read_only(&Value::Bytes(b"1".to_vec())),
            Ok(ServerRole::Replica)
        );
        assert_eq!(
            read_only(&Value::Bytes(b"on".to_vec())),
            Ok(ServerRole::Replica)
        );
        assert!(read_only(&Value::NULL).is_err());
    }
}
