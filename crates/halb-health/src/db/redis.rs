//! Redis: log in (`HELLO`/`AUTH` with the ACL user and password, when set)
//! and ask `ROLE`: `master` on a primary, `slave` on a replica.

use halb_config::DatabaseCheck;
use redis::aio::MultiplexedConnection;
use redis::{ErrorKind, RedisConnectionInfo, Value};
use tokio::net::TcpStream;

use super::ServerRole;
use crate::probe::CheckFailure;

pub(super) async fn role(
    db: &DatabaseCheck,
    password: Option<String>,
    stream: TcpStream,
) -> Result<ServerRole, CheckFailure> {
    let info = RedisConnectionInfo {
        username: db.user.clone(),
        password,
        ..RedisConnectionInfo::default()
    };
    let (mut connection, driver) = MultiplexedConnection::new(&info, stream)
        .await
        .map_err(failure)?;
    let driver = tokio::spawn(driver);
    let answer: Result<Value, _> = redis::cmd("ROLE").query_async(&mut connection).await;
    driver.abort();
    let answer = answer.map_err(failure)?;
    let role = match &answer {
        Value::Array(items) => match items.first() {
            Some(Value::BulkString(word)) => String::from_utf8_lossy(word).into_owned(),
            Some(Value::SimpleString(word)) => word.clone(),
            _ => String::new(),
        },
        _ => String::new(),
    };
    match role.as_str() {
        "master" => Ok(ServerRole::Primary),
        "slave" | "replica" => Ok(ServerRole::Replica),
        "sentinel" => Err(CheckFailure::Protocol(
            "this is a Sentinel, not a data server".to_owned(),
        )),
        _ => Err(CheckFailure::Protocol(format!(
            "unexpected ROLE answer {answer:?}"
        ))),
    }
}

fn failure(error: redis::RedisError) -> CheckFailure {
    let auth = error.kind() == ErrorKind::AuthenticationFailed
        || matches!(error.code(), Some("NOAUTH" | "WRONGPASS"));
    if auth {
        return CheckFailure::Auth(error.to_string());
    }
    if error.is_io_error() {
        return CheckFailure::Protocol(format!("connection lost: {error}"));
    }
    CheckFailure::Protocol(error.to_string())
}
