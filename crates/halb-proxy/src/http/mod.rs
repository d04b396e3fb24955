//! HTTP/1.1 proxying with halb's own codecs on both sides: the server side
//! for clients ([`server`]), and the client side for backends ([`client`]),
//! whose keep-alive connections each worker pools ([`upstream`]).

mod body;
mod client;
pub(crate) mod codec_entry;
mod exchange;
mod fields;
mod forward;
mod framing;
mod hash_key;
mod headers;
mod select;
mod server;
mod span;
mod upstream;

pub use client::BackendError;
pub(crate) use hash_key::ip_key;
pub(crate) use server::serve;
pub(crate) use server::BodyError;
pub(crate) use upstream::UpstreamPool;
