//! End-to-end tests of halb's single-node balancer (issue 2): the real
//! `halb` binary, started with a config file, in front of real backends on
//! 127.0.0.1, driven by real clients. One test binary, one module per area.

mod support;

mod access_log;
mod admin_api;
mod alerts;
mod algorithms;
mod backend_protocol;
mod backend_tls;
mod backups;
mod bad_requests;
mod cli;
mod dashboard;
mod databases;
mod dns_backends;
mod drain;
mod drill;
mod edge_connections;
mod etcd_canary;
mod etcd_config;
mod etcd_fleet;
mod failures;
mod faults;
mod flapping;
mod head_limits;
mod health_checks;
mod http2;
mod http_semantics;
mod hung_backend;
mod metrics;
mod mysql;
mod outlier;
mod peers;
mod reload;
mod reload_diff;
mod reload_watch;
mod retry_budget;
mod routing;
mod runtime_weights;
mod service_notify;
mod shutdown;
mod slow_start;
mod smuggling;
mod spliced_bodies;
mod streaming;
mod tcp;
mod tls;
mod vrrp;
mod vrrp_active_active;
mod vrrp_fleet;
mod websocket;
mod zones;
