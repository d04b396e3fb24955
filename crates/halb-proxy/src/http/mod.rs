//! HTTP/1.1 proxying: halb's own server codec on the client side
//! ([`server`]), requests forwarded over the worker's pooled hyper client
//! connections to backends.

mod body;
mod exchange;
mod forward;
mod hash_key;
mod headers;
mod server;
mod upstream;

pub(crate) use hash_key::ip_key;
pub(crate) use server::serve;
pub(crate) use upstream::UpstreamPool;
