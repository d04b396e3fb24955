//! TLS termination with rustls and its `ring` provider: the certificates of
//! a listener (`[listener.tls]`, and `[[listener.tls.sni]]` picked by the
//! name the client asks for), read from their files when the config is
//! applied and again when a file changes on disk; the rustls server
//! configuration new handshakes use; and the handshake metrics.
//!
//! `ring` rather than `aws-lc-rs`: both are maintained providers with the
//! same TLS 1.2/1.3 suites for a server, but ring builds in seconds with
//! only a C compiler, while aws-lc-rs needs CMake (and for some targets
//! NASM and bindgen) and builds for minutes; nothing halb does needs the
//! FIPS module or the post-quantum key exchange aws-lc-rs adds.

mod expiry;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use halb_config::ListenerTls;
use halb_metrics::Counter;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, ServerConnection};

/// How often the certificate and key files are looked at for changes.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);
/// TLS 1.2 sessions remembered for resumption by session ID, per listener.
const SESSION_CACHE: usize = 16 * 1024;

/// Why a handshake failed, as the metrics label it (in [`TlsMetrics::failures`] order).
pub const TLS_FAILURES: [&str; 6] = [
    "closed",
    "no_shared_version_or_cipher",
    "malformed",
    "alert",
    "decrypt",
    "other",
];

/// A listener's TLS counters, for its whole life.
#[derive(Debug, Default)]
pub struct TlsMetrics {
    /// Handshakes completed, by protocol version: TLS 1.2, TLS 1.3.
    pub handshakes: [Counter; 2],
    /// Of those, the ones that resumed a session (ticket or session ID).
    pub resumed: Counter,
    /// Handshakes that failed, by reason ([`TLS_FAILURES`]).
    pub failures: [Counter; TLS_FAILURES.len()],
}

/// The protocol versions [`TlsMetrics::handshakes`] counts, in its order.
pub const TLS_VERSIONS: [&str; 2] = ["TLSv1.2", "TLSv1.3"];

impl TlsMetrics {
    pub(crate) fn established(&self, session: &ServerConnection) {
        let version = match session.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_2) => 0,
            _ => 1,
        };
        self.handshakes[version].inc();
        if session.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
            self.resumed.inc();
        }
    }

    pub(crate) fn closed_in_handshake(&self) {
        self.failures[0].inc();
    }

    pub(crate) fn failed(&self, error: &rustls::Error) {
        let reason = match error {
            rustls::Error::PeerIncompatible(_) | rustls::Error::NoApplicationProtocol => 1,
            rustls::Error::InvalidMessage(_)
            | rustls::Error::InappropriateMessage { .. }
            | rustls::Error::InappropriateHandshakeMessage { .. }
            | rustls::Error::PeerMisbehaved(_) => 2,
            rustls::Error::AlertReceived(_) => 3,
            rustls::Error::DecryptError => 4,
            _ => 5,
        };
        self.failures[reason].inc();
    }
}

/// A certificate or key file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", file.display())]
pub struct TlsFileError {
    pub file: PathBuf,
    pub problem: String,
}

fn file_error(file: &Path, problem: impl Into<String>) -> TlsFileError {
    TlsFileError {
        file: file.to_owned(),
        problem: problem.into(),
    }
}

/// The provider the backend side uses too (ring, X25519 first).
fn provider() -> Arc<CryptoProvider> {
    halb_tls::provider()
}

/// A listener's certificates: the default, and those chosen by SNI.
#[derive(Debug)]
pub(crate) struct Certificates {
    default: Arc<CertifiedKey>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` as `.example.com`.
    wildcard: Vec<(String, Arc<CertifiedKey>)>,
    /// Every file read, with its modification time then.
    files: Vec<(PathBuf, Option<SystemTime>)>,
}

impl Certificates {
    /// Read every file `tls` names; the first unusable one is the error.
    pub(crate) fn load(tls: &ListenerTls) -> Result<Certificates, TlsFileError> {
        let provider = provider();
        let mut files = Vec::new();
        let default = Arc::new(certified_key(&provider, &tls.cert, &tls.key, &mut files)?);
        let mut exact = HashMap::new();
        let mut wildcard = Vec::new();
        for sni in &tls.sni {
            let key = Arc::new(certified_key(&provider, &sni.cert, &sni.key, &mut files)?);
            match sni.name.strip_prefix('*') {
                Some(suffix) => wildcard.push((suffix.to_owned(), key)),
                None => {
                    exact.insert(sni.name.clone(), key);
                }
            }
        }
        Ok(Certificates {
            default,
            exact,
            wildcard,
            files,
        })
    }

    fn pick(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = name else {
            return self.default.clone();
        };
        let name = name.to_ascii_lowercase();
        if let Some(key) = self.exact.get(&name) {
            return key.clone();
        }
        for (suffix, key) in &self.wildcard {
            // One label only: `*.example.com` covers `a.example.com`.
            if let Some(label) = name.strip_suffix(suffix.as_str()) {
                if !label.is_empty() && !label.contains('.') {
                    return key.clone();
                }
            }
        }
        self.default.clone()
    }

    /// Whether a file read has changed on disk since.
    fn changed_on_disk(&self) -> bool {
        self.files
            .iter()
            .any(|(path, mtime)| modified(path) != *mtime)
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// A certificate chain and its key, checked to belong together.
fn certified_key(
    provider: &CryptoProvider,
    cert_path: &Path,
    key_path: &Path,
    files: &mut Vec<(PathBuf, Option<SystemTime>)>,
) -> Result<CertifiedKey, TlsFileError> {
    files.push((cert_path.to_owned(), modified(cert_path)));
    files.push((key_path.to_owned(), modified(key_path)));
    let pem = std::fs::read(cert_path)
        .map_err(|e| file_error(cert_path, format!("cannot be read: {e}")))?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(cert_path, format!("is not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(file_error(
            cert_path,
            "holds no PEM certificate (no -----BEGIN CERTIFICATE----- block)",
        ));
    }
    let pem = std::fs::read(key_path)
        .map_err(|e| file_error(key_path, format!("cannot be read: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        file_error(
            key_path,
            format!("holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
        )
    })?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| file_error(key_path, format!("is not a usable private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(file_error(
                key_path,
                format!(
                    "does not match the certificate in {} (the key of another certificate?)",
                    cert_path.display()
                ),
            ))
        }
        Err(e) => {
            return Err(file_error(
                cert_path,
                format!("its first certificate cannot be parsed: {e}"),
            ))
        }
    }
    if let Some(expired) = expiry::expired_since(&certified.cert[0]) {
        tracing::warn!(
            file = %cert_path.display(),
            "the certificate expired {expired} ago; clients will refuse it"
        );
    }
    Ok(certified)
}

/// Picks the certificate for each handshake from the current set, which a
/// reload or a file change swaps.
#[derive(Debug)]
struct Resolver(ArcSwap<Certificates>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load().pick(hello.server_name()))
    }
}

/// A listener's TLS side: the rustls configuration every new handshake
/// uses. Its certificates change in place (a reload, a file changed); its
/// ticket keys and session cache stay, so sessions resume across reloads.
#[derive(Debug)]
pub(crate) struct TlsTerminator {
    config: Arc<ServerConfig>,
    resolver: Arc<Resolver>,
    /// The settings the certificates were read by (reread on change).
    settings: Mutex<ListenerTls>,
}

impl TlsTerminator {
    pub(crate) fn new(settings: &ListenerTls, certificates: Certificates) -> Result<Self, String> {
        let resolver = Arc::new(Resolver(ArcSwap::from_pointee(certificates)));
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        // HTTP/2 first: a client that speaks both gets multiplexing.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // Tickets (TLS 1.3 and 1.2) under keys rustls rotates every 6 hours,
        // and a session cache for TLS 1.2 clients that resume by ID.
        config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| e.to_string())?;
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
        Ok(TlsTerminator {
            config: Arc::new(config),
            resolver,
            settings: Mutex::new(settings.clone()),
        })
    }

    /// Serve `certificates` (read by `settings`) to new handshakes.
    pub(crate) fn replace(&self, settings: &ListenerTls, certificates: Certificates) {
        self.resolver.0.store(Arc::new(certificates));
        *self.settings.lock().unwrap_or_else(|e| e.into_inner()) = settings.clone();
    }

    /// A new server-side session for an accepted connection.
    pub(crate) fn session(&self) -> Result<ServerConnection, rustls::Error> {
        ServerConnection::new(self.config.clone())
    }

    /// Reread the files if one changed on disk; a file that cannot be used
    /// is reported and the certificates in use stay.
    pub(crate) fn reload_if_changed(&self, listener: &str) {
        if !self.resolver.0.load().changed_on_disk() {
            return;
        }
        let settings = self
            .settings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match Certificates::load(&settings) {
            Ok(certificates) => {
                tracing::info!(
                    listener,
                    "certificate files changed; new handshakes use them"
                );
                self.resolver.0.store(Arc::new(certificates));
            }
            Err(error) => {
                tracing::warn!(
                    listener,
                    %error,
                    "certificate files changed but cannot be used; the ones in use stay"
                );
                // Not again until the files change once more.
                let current = self.resolver.0.load_full();
                let files = current
                    .files
                    .iter()
                    .map(|(path, _)| (path.clone(), modified(path)))
                    .collect();
                self.resolver.0.store(Arc::new(Certificates {
                    default: current.default.clone(),
                    exact: current.exact.clone(),
                    wildcard: current.wildcard.clone(),
                    files,
                }));
            }
        }
    }
}

/// Read the certificates of every listener that terminates TLS, by
/// listener name; the first file that cannot be used is the error (and
/// nothing changes).
pub(crate) fn load_all(
    listeners: &[halb_config::Listener],
) -> Result<HashMap<String, Certificates>, crate::StartError> {
    let mut loaded = HashMap::new();
    for listener in listeners {
        if let Some(tls) = &listener.tls {
            let certificates =
                Certificates::load(tls).map_err(|source| crate::StartError::Tls {
                    listener: listener.name.clone(),
                    source,
                })?;
            loaded.insert(listener.name.clone(), certificates);
        }
    }
    Ok(loaded)
}

/// Look at the certificate and key files of every TLS listener every
/// [`WATCH_INTERVAL`], and reload those that changed, for as long as the
/// topology lives.
pub(crate) fn watch_files(topology: std::sync::Weak<ArcSwap<crate::Topology>>) {
    let spawned = std::thread::Builder::new()
        .name("halb-tls-watch".into())
        .spawn(move || loop {
            std::thread::sleep(WATCH_INTERVAL);
            let Some(topology) = topology.upgrade() else {
                return;
            };
            for listener in &topology.load().listeners {
                if let Some(tls) = listener.tls.load_full() {
                    tls.reload_if_changed(&listener.name());
                }
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot watch certificate files; reload to pick up new ones");
    }
}

#[cfg(test)]
mod tests;
