//! A watch stream: the gateway answers `POST /v3/watch` with one JSON
//! message after another on a response that never ends (until the watch
//! is cancelled or the member goes away).

use bytes::{Buf as _, BytesMut};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;

use super::wire::{WatchMessage, WatchResponse};
use super::{server_error, EtcdError};

/// The messages of one watch, in order.
pub struct WatchStream {
    endpoint: String,
    body: Incoming,
    buffer: BytesMut,
}

impl WatchStream {
    pub(super) fn new(endpoint: String, body: Incoming) -> WatchStream {
        WatchStream {
            endpoint,
            body,
            buffer: BytesMut::new(),
        }
    }

    /// The member this watch is on.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The next message; `Err` when the stream broke or ended (a watch
    /// stream ends only when something went wrong).
    pub async fn next(&mut self) -> Result<WatchResponse, EtcdError> {
        loop {
            if let Some(message) = self.parse_buffered()? {
                return Ok(message);
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => {
                    return Err(EtcdError::Unreachable(format!(
                        "{}: watch broken: {e}",
                        self.endpoint
                    )))
                }
                None => {
                    return Err(EtcdError::Unreachable(format!(
                        "{}: watch stream ended",
                        self.endpoint
                    )))
                }
            }
        }
    }

    /// One whole message from the buffer, if there is one yet.
    fn parse_buffered(&mut self) -> Result<Option<WatchResponse>, EtcdError> {
        let mut messages =
            serde_json::Deserializer::from_slice(&self.buffer).into_iter::<WatchMessage>();
        let parsed = messages.next();
        let used = messages.byte_offset();
        match parsed {
            None => {
                // Only whitespace so far.
                self.buffer.advance(used);
                Ok(None)
            }
            Some(Err(e)) if e.is_eof() => Ok(None),
            Some(Err(e)) => Err(EtcdError::Protocol {
                endpoint: self.endpoint.clone(),
                message: format!("bad watch message: {e}"),
            }),
            Some(Ok(message)) => {
                self.buffer.advance(used);
                if let Some(error) = message.error {
                    let text = serde_json::to_vec(&error).unwrap_or_default();
                    return Err(server_error(&self.endpoint, &text));
                }
                Ok(Some(message.result.unwrap_or_default()))
            }
        }
    }
}
