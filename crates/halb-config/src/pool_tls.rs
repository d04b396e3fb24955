//! `[pool] tls = true` / `[pool.tls]`: TLS from halb to a pool's backends.
//! The files named here are read when the config is applied (the data path
//! reports an unreadable or non-PEM file, naming the key and the file).

use std::path::PathBuf;

/// The system's CA bundle, used when `[pool.tls] ca` is not set (Debian,
/// Ubuntu, Alpine, Arch; `SSL_CERT_FILE` overrides it).
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// How halb speaks TLS to a pool's backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolTls {
    /// `ca`: PEM file of the authorities a backend's certificate must chain
    /// to; `None` = the system bundle ([`SYSTEM_CA_BUNDLE`]).
    pub ca: Option<PathBuf>,
    /// `sni`: the name sent in SNI and verified in the certificate. Unset,
    /// it is the host name when every backend is given by that one name;
    /// `None` = no SNI, and the certificate must name the backend's IP.
    pub sni: Option<String>,
    /// `verify`: check the backend's certificate (false: anything goes,
    /// for tests and migrations only; a warning is logged).
    pub verify: bool,
    /// `cert` and `key`: a client certificate for backends that ask for
    /// one (mutual TLS).
    pub client_cert: Option<(PathBuf, PathBuf)>,
}
