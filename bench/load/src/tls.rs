//! The client side of TLS for halb-load: rustls driven by hand over a tokio
//! `TcpStream`, as halb itself does, so no poll-adapter crate is needed.
//!
//! Like wrk and h2load, the client does not check the certificate chain
//! (the bench makes a self-signed one), but it does verify the server's
//! handshake signature, so a full handshake costs the client what it costs
//! a real one.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind, SignatureScheme,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Accepts any certificate chain; checks handshake signatures.
#[derive(Debug)]
struct AnyChain(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyChain {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
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
        verify_tls12_signature(
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
        verify_tls13_signature(
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

/// The client config: ALPN http/1.1; with `resume`, rustls' in-memory
/// session store (tickets) makes later handshakes resumed ones.
// ring's provider is deprecated for its want of post-quantum key exchange;
// halb serves with it, so the client offers the same classical groups.
#[allow(deprecated)]
pub fn client_config(resume: bool) -> Arc<ClientConfig> {
    let mut provider = rustls::crypto::ring::default_provider();
    // X25519 first, as browsers, curl, wrk and h2load (OpenSSL) offer it:
    // rustls' ring provider lists P-384 first, and the key share a client
    // sends first is the group a server ends up computing.
    use rustls::crypto::ring::kx_group::{SECP256R1, SECP384R1, X25519};
    provider.kx_groups = vec![X25519, SECP256R1, SECP384R1];
    let provider = Arc::new(provider);
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyChain(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !resume {
        config.resumption = Resumption::disabled();
    }
    Arc::new(config)
}

/// A TLS connection over TCP; records arrive in `pending` and are fed to
/// rustls as its buffer allows.
pub struct TlsStream {
    tcp: TcpStream,
    tls: ClientConnection,
    pending: Vec<u8>,
    offset: usize,
    end: usize,
    out: Vec<u8>,
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl TlsStream {
    /// Connects; the handshake happens with the first exchange.
    pub async fn connect(
        tcp: TcpStream,
        addr: SocketAddr,
        config: Arc<ClientConfig>,
    ) -> io::Result<Self> {
        let name = ServerName::IpAddress(addr.ip().into());
        let tls = ClientConnection::new(config, name).map_err(tls_error)?;
        Ok(Self {
            tcp,
            tls,
            pending: vec![0; 256 * 1024],
            offset: 0,
            end: 0,
            out: Vec::new(),
        })
    }

    /// Whether the handshake resumed a session.
    pub fn resumed(&self) -> bool {
        self.tls.handshake_kind() == Some(HandshakeKind::Resumed)
    }

    async fn flush(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            self.out.clear();
            self.tls.write_tls(&mut self.out)?;
            self.tcp.write_all(&self.out).await?;
        }
        Ok(())
    }

    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.tls.writer().write_all(data)?;
        self.flush().await
    }

    /// Reads plaintext; 0 at the end of the stream.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if self.offset == self.end {
                self.offset = 0;
                self.end = self.tcp.read(&mut self.pending).await?;
                if self.end == 0 {
                    return Ok(0);
                }
            }
            let mut records = &self.pending[self.offset..self.end];
            let before = records.len();
            self.tls.read_tls(&mut records)?;
            self.offset += before - records.len();
            self.tls.process_new_packets().map_err(tls_error)?;
            self.flush().await?;
        }
    }
}
