//! etcd v3's JSON gateway messages: the gRPC messages in their JSON form,
//! where keys and values are base64 and 64-bit integers are strings.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Bytes as the gateway writes them: base64.
pub(crate) fn encode(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

fn base64_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let text = String::deserialize(d)?;
    BASE64
        .decode(text.as_bytes())
        .map_err(serde::de::Error::custom)
}

/// An int64: the gateway writes a string, accept a number too.
fn int64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int {
        Text(String),
        Number(i64),
    }
    match Int::deserialize(d)? {
        Int::Number(n) => Ok(n),
        Int::Text(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

fn int64_text<S: Serializer>(n: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&n.to_string())
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// Every response's header; `revision` is the store's at the answer.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ResponseHeader {
    #[serde(default, deserialize_with = "int64")]
    pub revision: i64,
}

/// One key and its value.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct KeyValue {
    #[serde(default, deserialize_with = "base64_bytes")]
    pub key: Vec<u8>,
    #[serde(default, deserialize_with = "base64_bytes")]
    pub value: Vec<u8>,
    #[serde(default, deserialize_with = "int64")]
    pub mod_revision: i64,
    #[serde(default, deserialize_with = "int64")]
    pub create_revision: i64,
    #[serde(default, deserialize_with = "int64")]
    pub lease: i64,
}

#[derive(Debug, Serialize)]
pub(crate) struct RangeRequest {
    pub key: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub range_end: String,
}

#[derive(Debug, Deserialize)]
pub struct RangeResponse {
    #[serde(default)]
    pub header: ResponseHeader,
    #[serde(default)]
    pub kvs: Vec<KeyValue>,
}

#[derive(Debug, Serialize)]
pub(crate) struct PutRequest {
    pub key: String,
    pub value: String,
    #[serde(serialize_with = "int64_text", skip_serializing_if = "is_zero")]
    pub lease: i64,
}

#[derive(Debug, Deserialize)]
pub(crate) struct HeaderOnly {
    #[serde(default)]
    pub header: ResponseHeader,
}

#[derive(Debug, Serialize)]
pub(crate) struct DeleteRequest {
    pub key: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub range_end: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct DeleteResponse {
    #[serde(default)]
    pub header: ResponseHeader,
    #[serde(default, deserialize_with = "int64")]
    pub deleted: i64,
}

/// `txn`: compare one key's `mod_revision`, then put or not.
#[derive(Debug, Serialize)]
pub(crate) struct TxnRequest {
    pub compare: Vec<Compare>,
    pub success: Vec<RequestOp>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Compare {
    pub key: String,
    pub target: &'static str,
    pub result: &'static str,
    #[serde(serialize_with = "int64_text")]
    pub mod_revision: i64,
}

#[derive(Debug, Serialize)]
pub(crate) struct RequestOp {
    pub request_put: PutRequest,
}

#[derive(Debug, Deserialize)]
pub(crate) struct TxnResponse {
    #[serde(default)]
    pub header: ResponseHeader,
    #[serde(default)]
    pub succeeded: bool,
}

#[derive(Debug, Serialize)]
pub(crate) struct LeaseGrantRequest {
    #[serde(rename = "TTL", serialize_with = "int64_text")]
    pub ttl: i64,
}

#[derive(Debug, Deserialize)]
pub(crate) struct LeaseGrantResponse {
    #[serde(rename = "ID", default, deserialize_with = "int64")]
    pub id: i64,
    #[serde(default)]
    pub error: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct LeaseId {
    #[serde(rename = "ID", serialize_with = "int64_text")]
    pub id: i64,
}

/// The keep-alive stream's one answer; `TTL` absent (0): the lease is gone.
#[derive(Debug, Deserialize)]
pub(crate) struct LeaseKeepAliveResult {
    #[serde(default)]
    pub result: Option<LeaseKeepAliveResponse>,
    #[serde(default)]
    pub error: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct LeaseKeepAliveResponse {
    #[serde(rename = "TTL", default, deserialize_with = "int64")]
    pub ttl: i64,
}

#[derive(Debug, Serialize)]
pub(crate) struct WatchRequest {
    pub create_request: WatchCreateRequest,
}

#[derive(Debug, Serialize)]
pub(crate) struct WatchCreateRequest {
    pub key: String,
    pub range_end: String,
    #[serde(serialize_with = "int64_text")]
    pub start_revision: i64,
    pub progress_notify: bool,
}

/// One message of the watch stream.
#[derive(Debug, Deserialize)]
pub(crate) struct WatchMessage {
    #[serde(default)]
    pub result: Option<WatchResponse>,
    #[serde(default)]
    pub error: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
pub struct WatchResponse {
    #[serde(default)]
    pub header: ResponseHeader,
    #[serde(default)]
    pub created: bool,
    #[serde(default)]
    pub canceled: bool,
    #[serde(default, deserialize_with = "int64")]
    pub compact_revision: i64,
    #[serde(default)]
    pub cancel_reason: String,
    #[serde(default)]
    pub events: Vec<Event>,
}

/// A put (`type` absent: PUT is the enum's zero) or a delete.
#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    #[serde(rename = "type", default)]
    pub kind: EventKind,
    #[serde(default)]
    pub kv: KeyValue,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum EventKind {
    #[default]
    #[serde(rename = "PUT")]
    Put,
    #[serde(rename = "DELETE")]
    Delete,
}

/// An error answer: `{"error": "...", "message": "...", "code": N}`.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorAnswer {
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub code: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_gateway_forms() {
        let text = r#"{"result":{"header":{"revision":"3"},"events":[
            {"kv":{"key":"L2E=","mod_revision":"2","value":"eA=="}},
            {"type":"DELETE","kv":{"key":"L2E=","mod_revision":"3"}}]}}"#;
        let message: WatchMessage = serde_json::from_str(text).unwrap();
        let result = message.result.unwrap();
        assert_eq!(result.header.revision, 3);
        assert_eq!(result.events[0].kind, EventKind::Put);
        assert_eq!(result.events[0].kv.key, b"/a");
        assert_eq!(result.events[0].kv.value, b"x");
        assert_eq!(result.events[1].kind, EventKind::Delete);
        let put = serde_json::to_string(&PutRequest {
            key: encode(b"/a"),
            value: String::new(),
            lease: 7,
        })
        .unwrap();
        assert_eq!(put, r#"{"key":"L2E=","value":"","lease":"7"}"#);
    }
}
