//! PostgreSQL: log in (trust, password, MD5 or SCRAM, as the server asks)
//! and ask `SELECT pg_is_in_recovery()`: false on a primary, true on a
//! standby.

use halb_config::{DatabaseCheck, DEFAULT_POSTGRES_USER};
use tokio::net::TcpStream;
use tokio_postgres::error::SqlState;
use tokio_postgres::{NoTls, SimpleQueryMessage};

use super::ServerRole;
use crate::probe::CheckFailure;

pub(super) async fn role(
    db: &DatabaseCheck,
    password: Option<String>,
    stream: TcpStream,
) -> Result<ServerRole, CheckFailure> {
    let user = db.user.as_deref().unwrap_or(DEFAULT_POSTGRES_USER);
    let mut config = tokio_postgres::Config::new();
    config
        .user(user)
        .dbname(db.database.as_deref().unwrap_or(user))
        .application_name("halb-health-check");
    if let Some(password) = &password {
        config.password(password);
    }
    let (client, connection) = config.connect_raw(stream, NoTls).await.map_err(failure)?;
    let connection = tokio::spawn(connection);
    let answer = client.simple_query("SELECT pg_is_in_recovery()").await;
    // Dropping the client ends the session politely (a Terminate message).
    drop(client);
    let _ = connection.await;
    let in_recovery = answer
        .map_err(failure)?
        .into_iter()
        .find_map(|message| match message {
            SimpleQueryMessage::Row(row) => row.get(0).map(|value| value == "t"),
            _ => None,
        });
    match in_recovery {
        Some(false) => Ok(ServerRole::Primary),
        Some(true) => Ok(ServerRole::Replica),
        None => Err(CheckFailure::Protocol(
            "pg_is_in_recovery() returned no row".to_owned(),
        )),
    }
}

fn failure(error: tokio_postgres::Error) -> CheckFailure {
    if let Some(db) = error.as_db_error() {
        let code = db.code();
        if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            return CheckFailure::Auth(db.message().to_owned());
        }
        return CheckFailure::Protocol(db.message().to_owned());
    }
    let text = error.to_string();
    if text.contains("password missing") {
        return CheckFailure::Auth(
            "the server asks for a password and the check has none (set password or password_env)"
                .to_owned(),
        );
    }
    CheckFailure::Protocol(text)
}
