//! HTTP/1.1 proxying with halb's own codec, in three layers: the codec
//! ([`codec`]: heads, fields, framing; no proxy logic), connections over a
//! transport ([`server`] for clients over plain TCP or TLS, [`client`] for
//! backends, whose keep-alive connections each worker pools in
//! [`upstream`]), and the proxy logic between them ([`proxy`]).

mod arena;
mod client;
mod codec;
pub(crate) mod codec_entry;
mod proxy;
mod server;
mod upstream;

pub use client::BackendError;
pub(crate) use codec::BodyError;
pub(crate) use proxy::hash_key::ip_key;
pub(crate) use proxy::serve;
pub use server::{Http2Metrics, GOAWAY_REASONS};
pub(crate) use upstream::UpstreamPool;
