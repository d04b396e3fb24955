//! Validation of `[listener.tls]` and `[[listener.tls.sni]]`: the keys and
//! names. The files themselves are read when the config is applied (the
//! data path reports an unreadable file, a file that is not PEM, or a key
//! that does not match its certificate, naming the file).

use std::collections::HashMap;

use super::checker::{at_line, file_path, is_dns_name, Checker};
use crate::raw::{Header, RawListenerTls, RawSniCertificate, Slot};
use crate::{ListenerTls, Protocol, SniCertificate};

/// The listener's TLS settings: `Some(None)` without `[listener.tls]`,
/// `None` when an error was reported.
pub(super) fn listener_tls(
    c: &mut Checker,
    slot: Slot<RawListenerTls>,
    listener: &Header,
    protocol: Option<Protocol>,
) -> Option<Option<ListenerTls>> {
    let raw = match slot {
        Slot::Missing => return Some(None),
        Slot::Invalid => return None,
        Slot::Set(field) => field.value,
    };
    if protocol == Some(Protocol::Tcp) {
        c.error(
            listener.path_of("tls"),
            raw.at.line,
            "[listener.tls] needs protocol = \"http\": a TCP listener passes TLS through \
             untouched (the backends terminate it)",
        );
        return None;
    }
    let at = &raw.at;
    let cert = c.required(at, "cert", raw.cert, file_path);
    let key = c.required(at, "key", raw.key, file_path);
    let sni = match raw.sni {
        Slot::Missing => Some(Vec::new()),
        Slot::Invalid => None,
        Slot::Set(field) => {
            let mut seen: HashMap<String, (String, Option<usize>)> = HashMap::new();
            let checked: Vec<Option<SniCertificate>> = field
                .value
                .into_iter()
                .map(|raw| sni_certificate(c, raw, &mut seen))
                .collect();
            checked.into_iter().collect()
        }
    };
    Some(Some(ListenerTls {
        cert: cert?.value,
        key: key?.value,
        sni: sni?,
    }))
}

fn sni_certificate(
    c: &mut Checker,
    raw: RawSniCertificate,
    seen: &mut HashMap<String, (String, Option<usize>)>,
) -> Option<SniCertificate> {
    let at = &raw.at;
    let name = c.required(at, "name", raw.name, server_name);
    if let Some(name) = &name {
        let path = at.path_of("name");
        if let Some((first_path, first_line)) = seen.get(&name.value) {
            let message = format!(
                "duplicate SNI name {:?}; already given by {first_path}{}",
                name.value,
                at_line(*first_line)
            );
            c.error(path, name.line, message);
        } else {
            seen.insert(name.value.clone(), (path, name.line));
        }
    }
    let cert = c.required(at, "cert", raw.cert, file_path);
    let key = c.required(at, "key", raw.key, file_path);
    Some(SniCertificate {
        name: name?.value,
        cert: cert?.value,
        key: key?.value,
    })
}

/// A DNS name a client may send in SNI, or `*.` and one: stored lower-case.
fn server_name(name: String) -> Result<String, String> {
    let name = name.to_ascii_lowercase();
    let bare = name.strip_prefix("*.").unwrap_or(&name);
    if !is_dns_name(bare) {
        return Err(format!(
            "{name:?} is not a host name (like \"api.example.com\") or a wildcard of one \
             (like \"*.example.com\")"
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    #[test]
    fn tls_keys_are_checked_with_their_paths() {
        let base = "[[pool]]\nname = \"app\"\n[[pool.backend]]\naddress = \"127.0.0.1:1\"\n\
                    [[listener]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\npool = \"app\"\n";
        let good = format!(
            "{base}[listener.tls]\ncert = \"/a.pem\"\nkey = \"/a.key\"\n\
             [[listener.tls.sni]]\nname = \"API.example.com\"\ncert = \"/b.pem\"\nkey = \"/b.key\"\n"
        );
        let config = crate::parse(&good).unwrap();
        let tls = config.listeners[0].tls.as_ref().unwrap();
        assert_eq!(tls.cert, std::path::PathBuf::from("/a.pem"));
        assert_eq!(tls.sni[0].name, "api.example.com");

        let bad = format!(
            "{base}[listener.tls]\ncert = \"/a.pem\"\ncolour = 1\n\
             [[listener.tls.sni]]\nname = \"a b\"\ncert = \"/b.pem\"\nkey = \"/b.key\"\n\
             [[listener.tls.sni]]\nname = \"x.example\"\ncert = \"/b.pem\"\nkey = \"/b.key\"\n\
             [[listener.tls.sni]]\nname = \"x.example\"\ncert = \"/c.pem\"\nkey = \"/c.key\"\n"
        );
        let errors = crate::parse(&bad).unwrap_err().to_string();
        for wanted in [
            "listener[0].tls.key",
            "listener[0].tls.colour",
            "listener[0].tls.sni[0].name",
            "duplicate SNI name \"x.example\"",
        ] {
            assert!(errors.contains(wanted), "{wanted} not in {errors}");
        }

        let tcp = format!(
            "{}protocol = \"tcp\"\n[listener.tls]\ncert = \"/a.pem\"\nkey = \"/a.key\"\n",
            base
        );
        let errors = crate::parse(&tcp).unwrap_err().to_string();
        assert!(errors.contains("needs protocol = \"http\""), "{errors}");
    }
}
