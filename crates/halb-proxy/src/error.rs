//! Data-path errors. Each says which side it came from and maps, in one
//! place ([`ProxyError::status`]), to the HTTP status the client sees.

use http::StatusCode;

/// Which side of the proxy an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client: a malformed or too-slow request.
    Downstream,
    /// A backend: refused, reset, timed out, or spoke bad HTTP.
    Upstream,
    /// halb itself: no backend to try.
    Internal,
}

/// Why a request or connection could not be proxied.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("the request head is larger than the listener allows")]
    HeadTooLarge,
    /// CONNECT: halb is a reverse proxy and opens no tunnels.
    #[error("method not allowed: halb does not tunnel CONNECT")]
    MethodNotAllowed,
    #[error("not implemented: {0}")]
    NotImplemented(&'static str),
    #[error("request timed out: the client did not send it in time")]
    ClientTimeout,
    #[error("the client is over its request rate ([listener.limits] per_ip_rate)")]
    TooManyRequests,
    #[error("no usable backend in the pool")]
    NoBackend,
    #[error("could not connect to the backend: {0}")]
    Connect(#[source] std::io::Error),
    #[error("connecting to the backend timed out")]
    ConnectTimeout,
    #[error("the backend did not answer within the pool's timeout")]
    ResponseTimeout,
    #[error("the backend failed: {0}")]
    Upstream(#[source] crate::http::BackendError),
    /// An abort fault (`/api/v1/faults`) answered this status.
    #[error("fault injected: answered {0}")]
    Injected(StatusCode),
}

impl ProxyError {
    /// Where the error came from.
    pub fn side(&self) -> Side {
        match self {
            ProxyError::BadRequest(_)
            | ProxyError::HeadTooLarge
            | ProxyError::MethodNotAllowed
            | ProxyError::NotImplemented(_)
            | ProxyError::ClientTimeout
            | ProxyError::TooManyRequests => Side::Downstream,
            ProxyError::NoBackend | ProxyError::Injected(_) => Side::Internal,
            ProxyError::Connect(_)
            | ProxyError::ConnectTimeout
            | ProxyError::ResponseTimeout
            | ProxyError::Upstream(_) => Side::Upstream,
        }
    }

    /// The status a client sees for this error: the one place that maps
    /// errors to HTTP.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ProxyError::ClientTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::NoBackend => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Injected(status) => *status,
            ProxyError::Connect(_) | ProxyError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ProxyError::ConnectTimeout | ProxyError::ResponseTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The short body sent with [`ProxyError::status`].
    pub fn client_message(&self) -> &'static str {
        match self {
            ProxyError::BadRequest(why) | ProxyError::NotImplemented(why) => why,
            ProxyError::HeadTooLarge => "request header fields too large\n",
            ProxyError::MethodNotAllowed => "CONNECT is not supported\n",
            ProxyError::ClientTimeout => "request timed out\n",
            ProxyError::TooManyRequests => "too many requests\n",
            ProxyError::NoBackend => "no backend is available to serve this request\n",
            ProxyError::Injected(_) => "fault injected\n",
            ProxyError::Connect(_) | ProxyError::Upstream(_) => {
                "no backend could be reached or it failed to answer\n"
            }
            ProxyError::ConnectTimeout | ProxyError::ResponseTimeout => {
                "the backend did not answer in time\n"
            }
        }
    }
}

impl From<crate::http::BodyError> for ProxyError {
    /// A client body that stalls is a timeout; any other failure of it a
    /// bad request.
    fn from(error: crate::http::BodyError) -> Self {
        match error {
            crate::http::BodyError::Timeout => ProxyError::ClientTimeout,
            _ => ProxyError::BadRequest("malformed request body\n"),
        }
    }
}
