//! Certificates made in a test (rcgen): a directory of them, removed when
//! the test ends, with CAs and the certificates they sign.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A directory of certificate files, removed when the test ends.
pub struct CertDir(PathBuf);

impl CertDir {
    pub fn new() -> CertDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("halb-certs-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("make the certificate directory");
        CertDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// A new CA; its certificate goes to `{name}-ca.pem`.
    pub fn ca(&self, name: &str) -> Ca {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("halb test CA {name}"));
        let cert = params.self_signed(&key).expect("CA certificate");
        let path = self.path(&format!("{name}-ca.pem"));
        std::fs::write(&path, cert.pem()).expect("write the CA certificate");
        Ca { cert, key, path }
    }

    /// A certificate for `names` signed by `ca`, written (atomically, as a
    /// deployment tool would) to `{file}.pem` and `{file}.key`.
    pub fn issue(&self, ca: &Ca, file: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().expect("key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let params = rcgen::CertificateParams::new(names).expect("params");
        let cert = params
            .signed_by(&key, &ca.cert, &ca.key)
            .expect("sign the certificate");
        let (cert_path, key_path) = (
            self.path(&format!("{file}.pem")),
            self.path(&format!("{file}.key")),
        );
        write_atomically(&key_path, &key.serialize_pem());
        write_atomically(&cert_path, &cert.pem());
        (cert_path, key_path)
    }
}

impl Drop for CertDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Write `contents` to `path` by a rename, as a deployment tool would.
pub fn write_atomically(path: &Path, contents: &str) {
    let temp = path.with_extension("new");
    std::fs::write(&temp, contents).expect("write");
    std::fs::rename(&temp, path).expect("rename into place");
}

/// A test CA: its certificate and key, and the file holding the certificate.
pub struct Ca {
    pub cert: rcgen::Certificate,
    pub key: rcgen::KeyPair,
    pub path: PathBuf,
}
