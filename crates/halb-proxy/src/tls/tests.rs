use std::path::PathBuf;

use super::*;

/// Certificate files in a directory of their own, removed after the test.
struct Files(PathBuf);

impl Files {
    fn new(test: &str) -> Files {
        let dir = std::env::temp_dir().join(format!("halb-tls-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Files(dir)
    }

    /// A self-signed certificate for `names`: its files, and its DER.
    fn issue(&self, file: &str, names: &[&str]) -> (PathBuf, PathBuf, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (cert_path, key_path) = (
            self.0.join(format!("{file}.pem")),
            self.0.join(format!("{file}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path, cert.der().to_vec())
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sni(name: &str, cert: &Path, key: &Path) -> halb_config::SniCertificate {
    halb_config::SniCertificate {
        name: name.into(),
        cert: cert.into(),
        key: key.into(),
    }
}

#[test]
fn sni_picks_the_exact_name_then_a_one_label_wildcard_then_the_default() {
    let files = Files::new("pick");
    let (default_cert, default_key, default_der) = files.issue("default", &["default.test"]);
    let (api_cert, api_key, api_der) = files.issue("api", &["api.test"]);
    let (wild_cert, wild_key, wild_der) = files.issue("wild", &["*.wild.test"]);
    let (exact_cert, exact_key, exact_der) = files.issue("exact", &["x.wild.test"]);
    let tls = ListenerTls {
        cert: default_cert,
        key: default_key,
        sni: vec![
            sni("*.wild.test", &wild_cert, &wild_key),
            sni("api.test", &api_cert, &api_key),
            sni("x.wild.test", &exact_cert, &exact_key),
        ],
    };
    let certificates = Certificates::load(&tls).unwrap();
    for (name, der) in [
        (Some("api.test"), &api_der),
        (Some("API.Test"), &api_der),
        (Some("a.wild.test"), &wild_der),
        (Some("x.wild.test"), &exact_der),
        (Some("a.b.wild.test"), &default_der),
        (Some("wild.test"), &default_der),
        (Some("other.test"), &default_der),
        (None, &default_der),
    ] {
        let picked = certificates.pick(name);
        assert_eq!(picked.cert[0].as_ref(), der.as_slice(), "{name:?}");
    }
    assert!(!certificates.changed_on_disk());
}

#[test]
fn unusable_files_are_named_with_what_is_wrong() {
    let files = Files::new("errors");
    let (cert, key, _) = files.issue("a", &["a.test"]);
    let (other_cert, _, _) = files.issue("b", &["b.test"]);
    let not_pem = files.0.join("not.pem");
    std::fs::write(&not_pem, "hello\n").unwrap();
    let missing = files.0.join("missing.pem");
    let tls = |cert: &Path, key: &Path| ListenerTls {
        cert: cert.into(),
        key: key.into(),
        sni: Vec::new(),
    };
    for (settings, file, problem) in [
        (tls(&missing, &key), &missing, "cannot be read"),
        (tls(&not_pem, &key), &not_pem, "holds no PEM certificate"),
        (tls(&cert, &not_pem), &not_pem, "holds no PEM private key"),
        (
            tls(&other_cert, &key),
            &key,
            "does not match the certificate",
        ),
    ] {
        let error = Certificates::load(&settings).unwrap_err();
        assert_eq!(&error.file, file, "{error}");
        let text = error.to_string();
        assert!(text.starts_with(&file.display().to_string()), "{text}");
        assert!(text.contains(problem), "{text}");
    }
}
