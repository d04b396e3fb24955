//! End-to-end tests of halb's single-node balancer (issue 2): the real
//! `halb` binary, started with a config file, in front of real backends on
//! 127.0.0.1, driven by real clients. One test binary, one module per area.

mod support;

mod algorithms;
mod bad_requests;
mod cli;
mod failures;
mod http_semantics;
mod streaming;
mod tcp;
mod websocket;
