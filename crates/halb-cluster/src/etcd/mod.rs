//! A small etcd v3 client over etcd's JSON gateway (`/v3/...` on the client
//! port, served by every etcd since 3.3), on the HTTP/1.1 client halb
//! already has: key ranges, puts and deletes, a compare-and-put, leases,
//! and watch streams. Each call goes to one member; a member that cannot be
//! reached or answers "unavailable" makes the call move on to the next.

mod watch;
pub mod wire;

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;
use halb_config::EtcdEndpoint;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpStream;

pub use watch::WatchStream;
use wire::{encode, KeyValue};

/// How long one call may take (connect, request and answer).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a watched member may take to answer a probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why an etcd call failed.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// No member could be reached (each one's error, joined).
    #[error("etcd unreachable: {0}")]
    Unreachable(String),
    /// A member answered with an error.
    #[error("etcd {endpoint}: {message} (code {code})")]
    Server {
        endpoint: String,
        code: i64,
        message: String,
    },
    /// A member answered something that is not etcd's JSON.
    #[error("etcd {endpoint}: unexpected answer: {message}")]
    Protocol { endpoint: String, message: String },
}

/// gRPC's code for "lease not found" and friends.
pub const CODE_NOT_FOUND: i64 = 5;
/// gRPC's "unavailable": no leader, member stopping. Another member may do.
const CODE_UNAVAILABLE: i64 = 14;

/// One etcd cluster, by its members' client URLs.
#[derive(Debug)]
pub struct Client {
    endpoints: Vec<EtcdEndpoint>,
    /// The member tried first; it moves on when one fails.
    current: AtomicUsize,
    timeout: Duration,
}

/// Keys and values under a prefix, as of one revision.
#[derive(Debug, Clone)]
pub struct Range {
    pub revision: i64,
    pub kvs: Vec<KeyValue>,
}

impl Client {
    /// A client of the cluster whose members are `endpoints` (at least one).
    pub fn new(endpoints: Vec<EtcdEndpoint>) -> Client {
        assert!(!endpoints.is_empty(), "an etcd client needs an endpoint");
        Client {
            endpoints,
            current: AtomicUsize::new(0),
            timeout: CALL_TIMEOUT,
        }
    }

    /// Parse `http://host:port[,http://host:port…]` (the CLI's `--etcd`).
    pub fn from_urls(urls: &str) -> Result<Client, String> {
        let endpoints = urls
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(EtcdEndpoint::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if endpoints.is_empty() {
            return Err("no etcd endpoint given".to_owned());
        }
        Ok(Client::new(endpoints))
    }

    /// The member calls go to first.
    pub fn endpoint(&self) -> &EtcdEndpoint {
        &self.endpoints[self.current.load(Relaxed) % self.endpoints.len()]
    }

    /// Every key starting with `prefix`.
    pub async fn range_prefix(&self, prefix: &str) -> Result<Range, EtcdError> {
        self.range(prefix.as_bytes(), &prefix_end(prefix.as_bytes()))
            .await
    }

    /// One key (absent: `kvs` empty).
    pub async fn get(&self, key: &str) -> Result<Range, EtcdError> {
        self.range(key.as_bytes(), &[]).await
    }

    async fn range(&self, key: &[u8], range_end: &[u8]) -> Result<Range, EtcdError> {
        let request = wire::RangeRequest {
            key: encode(key),
            range_end: if range_end.is_empty() {
                String::new()
            } else {
                encode(range_end)
            },
        };
        let answer: wire::RangeResponse = self.call("/v3/kv/range", &request).await?;
        Ok(Range {
            revision: answer.header.revision,
            kvs: answer.kvs,
        })
    }

    /// Store `value` at `key`, bound to `lease` (0: none); the new revision.
    pub async fn put(&self, key: &str, value: &[u8], lease: i64) -> Result<i64, EtcdError> {
        let request = wire::PutRequest {
            key: encode(key.as_bytes()),
            value: encode(value),
            lease,
        };
        let answer: wire::HeaderOnly = self.call("/v3/kv/put", &request).await?;
        Ok(answer.header.revision)
    }

    /// Store `value` at `key` only if the key's `mod_revision` is still
    /// `expected` (0: the key must not exist). `Ok(None)` when it changed.
    pub async fn put_if_unchanged(
        &self,
        key: &str,
        value: &[u8],
        expected: i64,
    ) -> Result<Option<i64>, EtcdError> {
        let request = wire::TxnRequest {
            compare: vec![wire::Compare {
                key: encode(key.as_bytes()),
                target: "MOD",
                result: "EQUAL",
                mod_revision: expected,
            }],
            success: vec![wire::RequestOp {
                request_put: wire::PutRequest {
                    key: encode(key.as_bytes()),
                    value: encode(value),
                    lease: 0,
                },
            }],
        };
        let answer: wire::TxnResponse = self.call("/v3/kv/txn", &request).await?;
        Ok(answer.succeeded.then_some(answer.header.revision))
    }

    /// Delete `key`; how many keys went.
    pub async fn delete(&self, key: &str) -> Result<i64, EtcdError> {
        let request = wire::DeleteRequest {
            key: encode(key.as_bytes()),
            range_end: String::new(),
        };
        let answer: wire::DeleteResponse = self.call("/v3/kv/deleterange", &request).await?;
        let _ = answer.header;
        Ok(answer.deleted)
    }

    /// A new lease of `ttl` seconds; its id.
    pub async fn grant(&self, ttl: i64) -> Result<i64, EtcdError> {
        let answer: wire::LeaseGrantResponse = self
            .call("/v3/lease/grant", &wire::LeaseGrantRequest { ttl })
            .await?;
        if !answer.error.is_empty() || answer.id == 0 {
            return Err(EtcdError::Server {
                endpoint: self.endpoint().to_string(),
                code: 0,
                message: format!("lease not granted: {}", answer.error),
            });
        }
        Ok(answer.id)
    }

    /// Renew a lease; `Ok(None)` when it is gone (expired or revoked).
    pub async fn keep_alive(&self, lease: i64) -> Result<Option<i64>, EtcdError> {
        let answer: wire::LeaseKeepAliveResult = self
            .call("/v3/lease/keepalive", &wire::LeaseId { id: lease })
            .await?;
        if let Some(error) = answer.error {
            return Err(EtcdError::Server {
                endpoint: self.endpoint().to_string(),
                code: error.get("code").and_then(|c| c.as_i64()).unwrap_or(0),
                message: error.to_string(),
            });
        }
        Ok(answer.result.map(|r| r.ttl).filter(|ttl| *ttl > 0))
    }

    /// End a lease now: its keys are deleted. A lease already gone is fine.
    pub async fn revoke(&self, lease: i64) -> Result<(), EtcdError> {
        match self
            .call::<_, wire::HeaderOnly>("/v3/lease/revoke", &wire::LeaseId { id: lease })
            .await
        {
            Ok(_) => Ok(()),
            Err(EtcdError::Server { code, .. }) if code == CODE_NOT_FOUND => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Watch every key starting with `prefix` from `start_revision` on.
    pub async fn watch_prefix(
        &self,
        prefix: &str,
        start_revision: i64,
    ) -> Result<WatchStream, EtcdError> {
        let request = wire::WatchRequest {
            create_request: wire::WatchCreateRequest {
                key: encode(prefix.as_bytes()),
                range_end: encode(&prefix_end(prefix.as_bytes())),
                start_revision,
                progress_notify: true,
            },
        };
        let body = serde_json::to_vec(&request).expect("a watch request serializes");
        let (endpoint, response) = self.send("/v3/watch", body).await?;
        if response.status() != StatusCode::OK {
            let bytes = read_body(&endpoint, response.into_body()).await?;
            return Err(server_error(&endpoint, &bytes));
        }
        Ok(WatchStream::new(endpoint, response.into_body()))
    }

    /// Ask the member `endpoint` (as [`WatchStream::endpoint`] names it) a
    /// linearizable question: it fails when the member is gone, slow, or
    /// cut off from its cluster's quorum.
    pub async fn probe(&self, endpoint: &str, key: &str) -> Result<(), EtcdError> {
        let Some(member) = self.endpoints.iter().find(|e| e.to_string() == endpoint) else {
            return Ok(());
        };
        let request = wire::RangeRequest {
            key: encode(key.as_bytes()),
            range_end: String::new(),
        };
        let body = serde_json::to_vec(&request).expect("a range request serializes");
        let unreachable = |why: String| EtcdError::Unreachable(format!("{endpoint}: {why}"));
        let answer = tokio::time::timeout(PROBE_TIMEOUT, async {
            let response = send_to(member, "/v3/kv/range", body).await?;
            let status = response.status();
            let bytes = read_body(endpoint, response.into_body())
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((status, bytes))
        })
        .await
        .map_err(|_| unreachable(format!("no answer in {PROBE_TIMEOUT:?}")))?
        .map_err(unreachable)?;
        match answer {
            (StatusCode::OK, _) => Ok(()),
            (_, bytes) => Err(server_error(endpoint, &bytes)),
        }
    }

    /// POST a JSON request; the JSON answer.
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        request: &Req,
    ) -> Result<Resp, EtcdError> {
        let body = serde_json::to_vec(request).expect("an etcd request serializes");
        let (endpoint, response) = self.send(path, body).await?;
        let status = response.status();
        let bytes = tokio::time::timeout(self.timeout, read_body(&endpoint, response.into_body()))
            .await
            .map_err(|_| EtcdError::Unreachable(format!("{endpoint}: no answer in time")))??;
        if status != StatusCode::OK {
            return Err(server_error(&endpoint, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| EtcdError::Protocol {
            endpoint,
            message: format!("{e}: {}", String::from_utf8_lossy(&bytes)),
        })
    }

    /// Send a request to the current member, else to each other one in
    /// turn; the first member that answers (with a status other than
    /// "unavailable") is kept for the next call.
    async fn send(
        &self,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(String, hyper::Response<Incoming>), EtcdError> {
        let start = self.current.load(Relaxed);
        let mut failures = Vec::new();
        for attempt in 0..self.endpoints.len() {
            let index = (start + attempt) % self.endpoints.len();
            let endpoint = &self.endpoints[index];
            let name = endpoint.to_string();
            let sent = tokio::time::timeout(self.timeout, send_to(endpoint, path, body.clone()));
            match sent.await {
                Ok(Ok(response)) if response.status() == StatusCode::SERVICE_UNAVAILABLE => {
                    let bytes = read_body(&name, response.into_body())
                        .await
                        .unwrap_or_default();
                    failures.push(server_error(&name, &bytes).to_string());
                }
                Ok(Ok(response)) => {
                    self.current.store(index, Relaxed);
                    return Ok((name, response));
                }
                Ok(Err(e)) => failures.push(format!("{name}: {e}")),
                Err(_) => failures.push(format!("{name}: no answer in {:?}", self.timeout)),
            }
        }
        self.current
            .store((start + 1) % self.endpoints.len(), Relaxed);
        Err(EtcdError::Unreachable(failures.join("; ")))
    }
}

/// One request on a connection of its own (the gateway is HTTP/1.1; calls
/// are rare, and a watch keeps its connection for itself).
async fn send_to(
    endpoint: &EtcdEndpoint,
    path: &str,
    body: Vec<u8>,
) -> Result<hyper::Response<Incoming>, String> {
    let authority = endpoint.authority();
    let stream = TcpStream::connect(&authority)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = Request::post(path)
        .header(header::HOST, &authority)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())
}

async fn read_body(endpoint: &str, body: Incoming) -> Result<Bytes, EtcdError> {
    body.collect()
        .await
        .map(|collected| collected.to_bytes())
        .map_err(|e| EtcdError::Unreachable(format!("{endpoint}: answer cut short: {e}")))
}

fn server_error(endpoint: &str, bytes: &[u8]) -> EtcdError {
    match serde_json::from_slice::<wire::ErrorAnswer>(bytes) {
        Ok(answer) if answer.code == CODE_UNAVAILABLE => EtcdError::Unreachable(format!(
            "{endpoint}: {}",
            non_empty(&answer.message, &answer.error)
        )),
        Ok(answer) => EtcdError::Server {
            endpoint: endpoint.to_owned(),
            code: answer.code,
            message: non_empty(&answer.message, &answer.error).to_owned(),
        },
        Err(_) => EtcdError::Protocol {
            endpoint: endpoint.to_owned(),
            message: String::from_utf8_lossy(bytes).into_owned(),
        },
    }
}

fn non_empty<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() {
        b
    } else {
        a
    }
}

/// The end of the range of keys starting with `prefix`: the prefix with
/// its last byte incremented (etcd's `range_end` convention).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff: every key from `prefix` on.
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end(b"/halb/"), b"/halb0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
    }
}
