//! halb's TLS pieces shared by both sides: the one rustls [`provider`];
//! [`TlsStream`], a TLS session over a tokio socket driven in the readiness
//! style of halb's data path (a listener's client connections and the
//! connections to backends; also `AsyncRead`/`AsyncWrite` for h2 and
//! hyper); and TLS from halb to the servers it connects to (a pool's
//! backends with `[pool] tls = true` / `[pool.tls]`, and their health
//! checks): the rustls client configuration built from the pool's keys.
//!
//! The trust anchors are the file named by `ca`, else the system bundle
//! (`SSL_CERT_FILE`, else [`halb_config::SYSTEM_CA_BUNDLE`]): nothing is
//! downloaded and no roots are compiled in, so the operator's CA updates
//! apply. The crypto provider is ring, as for TLS termination.

pub mod sock;
mod stream;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use halb_config::PoolTls;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

pub use stream::{Handshakes, TlsClientStream, TlsStream, Unobserved};

/// A pool's TLS as last loaded: `Err` says why its files could not be used.
pub type Loaded = Result<BackendTls, Arc<str>>;

/// The slot a pool's snapshots and health checks share: a reload that reads
/// the files again (a renewed CA bundle, a new client certificate) swaps
/// in what it read, and new connections use it.
pub type SharedBackendTls = Arc<arc_swap::ArcSwap<Loaded>>;

/// A new slot holding what `tls` loads now (the error, worded with its
/// key and file, if a file cannot be used).
pub fn shared(tls: &PoolTls) -> SharedBackendTls {
    Arc::new(arc_swap::ArcSwap::from_pointee(
        BackendTls::load(tls).map_err(|e| Arc::from(format!("[pool.tls] {e}"))),
    ))
}

/// A file named by `[pool.tls]` that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {}: {problem}", file.display())]
pub struct BackendTlsError {
    /// The key that named the file (`ca`, `cert`, `key`).
    pub key: &'static str,
    pub file: PathBuf,
    pub problem: String,
}

/// halb's one rustls provider, for both TLS sides: ring, with X25519 as
/// the first key exchange group and then P-256, P-384 (ring's own order
/// puts P-384 first, which costs several times more per handshake than
/// what browsers and OpenSSL clients prefer).
///
/// rustls 0.23.48 deprecates ring's provider for its want of post-quantum
/// key exchange (X25519MLKEM768, which aws-lc-rs has); its classical
/// suites and groups are what clients use today. See docs/tls.md.
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::{default_provider, kx_group};
    Arc::new(CryptoProvider {
        kx_groups: vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1],
        ..default_provider()
    })
}

/// How a pool's backend connections speak TLS: shared by every connection
/// and health check of the pool.
#[derive(Debug, Clone)]
pub struct BackendTls {
    /// Unique per load: idle connections are pooled per backend and per
    /// this, so that pools with other TLS settings never share one.
    pub id: u64,
    config: Arc<ClientConfig>,
    sni: Option<ServerName<'static>>,
}

impl BackendTls {
    /// Build from the pool's `[pool.tls]`, reading its files; the first one
    /// that cannot be used is the error.
    pub fn load(tls: &PoolTls) -> Result<BackendTls, BackendTlsError> {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| BackendTlsError {
                key: "tls",
                file: PathBuf::new(),
                problem: e.to_string(),
            })?;
        let builder = if tls.verify {
            let (key, file) = match &tls.ca {
                Some(ca) => ("ca", ca.clone()),
                None => (
                    "ca",
                    std::env::var_os("SSL_CERT_FILE")
                        .map(PathBuf::from)
                        .unwrap_or_else(|| PathBuf::from(halb_config::SYSTEM_CA_BUNDLE)),
                ),
            };
            builder.with_root_certificates(roots(key, &file)?)
        } else {
            tracing::warn!(
                "[pool.tls] verify = false: backend certificates are not checked; \
                 anyone on the path can pose as a backend"
            );
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider)))
        };
        let mut config = match &tls.client_cert {
            Some((cert, key)) => {
                let chain = certificates("cert", cert)?;
                let pem = read("key", key)?;
                let private = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| BackendTlsError {
                    key: "key",
                    file: key.clone(),
                    problem: format!("no PEM private key in it ({e})"),
                })?;
                builder
                    .with_client_auth_cert(chain, private)
                    .map_err(|e| BackendTlsError {
                        key: "key",
                        file: key.clone(),
                        problem: format!("cannot be used with `cert`: {e}"),
                    })?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let sni = match &tls.sni {
            Some(name) => {
                Some(
                    ServerName::try_from(name.clone()).map_err(|e| BackendTlsError {
                        key: "sni",
                        file: PathBuf::new(),
                        problem: e.to_string(),
                    })?,
                )
            }
            None => None,
        };
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Ok(BackendTls {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            config: Arc::new(config),
            sni,
        })
    }

    /// The name to verify `backend`'s certificate against (and send in SNI
    /// when it is a host name): `sni`, else the backend's IP address.
    pub fn server_name(&self, backend: SocketAddr) -> ServerName<'static> {
        self.sni
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(backend.ip().into()))
    }

    /// A new client session for a connection to `backend`.
    pub fn session(&self, backend: SocketAddr) -> Result<ClientConnection, rustls::Error> {
        ClientConnection::new(self.config.clone(), self.server_name(backend))
    }
}

fn read(key: &'static str, file: &Path) -> Result<Vec<u8>, BackendTlsError> {
    std::fs::read(file).map_err(|e| BackendTlsError {
        key,
        file: file.to_owned(),
        problem: format!("cannot be read: {e}"),
    })
}

fn certificates(
    key: &'static str,
    file: &Path,
) -> Result<Vec<CertificateDer<'static>>, BackendTlsError> {
    let pem = read(key, file)?;
    let certificates: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| BackendTlsError {
            key,
            file: file.to_owned(),
            problem: format!("not PEM: {e}"),
        })?;
    if certificates.is_empty() {
        return Err(BackendTlsError {
            key,
            file: file.to_owned(),
            problem: "holds no PEM certificate".into(),
        });
    }
    Ok(certificates)
}

fn roots(key: &'static str, file: &Path) -> Result<RootCertStore, BackendTlsError> {
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(certificates(key, file)?);
    if added == 0 {
        return Err(BackendTlsError {
            key,
            file: file.to_owned(),
            problem: "holds no usable CA certificate".into(),
        });
    }
    Ok(store)
}

/// `verify = false`: every certificate is taken (signatures are still
/// checked, so the session keys are the peer's).
#[derive(Debug)]
struct AcceptAnything(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(ca: &Path) -> PoolTls {
        PoolTls {
            ca: Some(ca.to_owned()),
            sni: None,
            verify: true,
            client_cert: None,
        }
    }

    #[test]
    fn unusable_ca_files_are_named_with_their_key() {
        let dir = std::env::temp_dir().join(format!("halb-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let error = BackendTls::load(&settings(&missing)).unwrap_err();
        assert_eq!(error.key, "ca");
        assert!(error.to_string().contains("cannot be read"), "{error}");
        let not_pem = dir.join("not.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let error = BackendTls::load(&settings(&not_pem)).unwrap_err();
        assert!(
            error.to_string().contains("holds no PEM certificate"),
            "{error}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn without_sni_the_backend_address_is_verified() {
        let tls = BackendTls::load(&PoolTls {
            ca: None,
            sni: None,
            verify: false,
            client_cert: None,
        })
        .unwrap();
        let backend: SocketAddr = "10.0.0.1:443".parse().unwrap();
        assert_eq!(
            tls.server_name(backend),
            ServerName::IpAddress(backend.ip().into())
        );
    }
}
