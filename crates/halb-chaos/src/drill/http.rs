//! The drill's HTTP/1.1 client: keep-alive connections that reconnect after
//! any failure, for the load and for the nodes' admin APIs. URLs are parsed
//! as everywhere else in halb ([`halb_config::WebhookUrl`]).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Why a request got no answer; the report counts failures by this name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The TCP connection was refused or could not be made.
    Connect,
    /// The connection was reset or closed before a full answer.
    Reset,
    /// No full answer within the timeout.
    Timeout,
}

impl Failure {
    /// The name the report uses.
    pub fn as_str(&self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::Reset => "reset",
            Failure::Timeout => "timeout",
        }
    }
}

/// One keep-alive connection to `authority`, made on first use and made
/// again after a failure.
pub struct Conn {
    authority: String,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    pub fn new(authority: &str) -> Conn {
        Conn {
            authority: authority.to_owned(),
            sender: None,
        }
    }

    /// Sends a request and reads the whole answer within `timeout`.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
        timeout: Duration,
    ) -> Result<(u16, Bytes), Failure> {
        let outcome = tokio::time::timeout(timeout, self.exchange(method, path, headers, body))
            .await
            .unwrap_or(Err(Failure::Timeout));
        if outcome.is_err() {
            self.sender = None;
        }
        outcome
    }

    async fn exchange(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Result<(u16, Bytes), Failure> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = TcpStream::connect(&self.authority)
                .await
                .map_err(|_| Failure::Connect)?;
            let _ = stream.set_nodelay(true);
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|_| Failure::Connect)?;
            tokio::spawn(connection);
            self.sender = Some(sender);
        }
        let sender = self.sender.as_mut().expect("connected above");
        sender.ready().await.map_err(|_| Failure::Reset)?;
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.authority);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|_| Failure::Reset)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|_| Failure::Reset)?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|_| Failure::Reset)?
            .to_bytes();
        Ok((status, body))
    }
}
