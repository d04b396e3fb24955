//! What the data path tells the access log about one request or connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// One HTTP request or TCP connection, as it ended.
#[derive(Debug, Clone)]
pub struct AccessRecord {
    /// When the request head arrived (HTTP) or the connection was accepted (TCP).
    pub time: SystemTime,
    pub client: SocketAddr,
    pub listener: Arc<str>,
    pub pool: Arc<str>,
    /// The backend that answered, or the last one tried when none did;
    /// `None` when no backend was tried.
    pub backend: Option<SocketAddr>,
    pub exchange: Exchange,
    /// Bytes sent to the client: the response body (HTTP), everything
    /// relayed from the backend (TCP).
    pub bytes: u64,
    /// From `time` to the end of the response (HTTP) or connection (TCP).
    pub duration: Duration,
    /// From sending the request to the backend's response head (HTTP), or
    /// the time to connect (TCP); `None` when no backend answered.
    pub backend_duration: Option<Duration>,
    /// Attempts beyond the first.
    pub retries: u32,
}

/// The protocol-specific part of a record.
#[derive(Debug, Clone)]
pub enum Exchange {
    Http {
        method: http::Method,
        /// The request target as the client sent it.
        target: http::Uri,
        /// The status sent to the client; 499 when the client went away
        /// before a response head was ready (as nginx logs it).
        status: u16,
    },
    Tcp,
}
