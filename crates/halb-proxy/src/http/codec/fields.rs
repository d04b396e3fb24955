//! A message's header fields as they arrived: offsets into the head's
//! bytes, each name classified once, so that forwarding a head is one pass
//! that copies what goes on and skips what stops here, with no header map
//! built, searched or encoded again.

use bytes::{BufMut, Bytes, BytesMut};

use super::span::Span;

/// The header names halb acts on; everything else is [`Known::Other`] and
/// passes through as it came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Known {
    Other,
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    KeepAlive,
    ProxyConnection,
    Te,
    Trailer,
    Upgrade,
    Expect,
    XForwardedFor,
    XForwardedProto,
    Forwarded,
    Cookie,
    Date,
    /// Removed: named by `Connection`, or a Content-Length that a
    /// Transfer-Encoding overrides. Not forwarded.
    Dropped,
}

impl Known {
    /// The class of a header name (names are case-insensitive).
    pub(crate) fn of(name: &[u8]) -> Known {
        let is = |known: &[u8]| name.eq_ignore_ascii_case(known);
        // Length and first letter pick the one name to compare.
        let first = name.first().map_or(0, |b| b.to_ascii_lowercase());
        match (name.len(), first) {
            (2, b't') if is(b"te") => Known::Te,
            (4, b'h') if is(b"host") => Known::Host,
            (4, b'd') if is(b"date") => Known::Date,
            (6, b'c') if is(b"cookie") => Known::Cookie,
            (6, b'e') if is(b"expect") => Known::Expect,
            (7, b't') if is(b"trailer") => Known::Trailer,
            (7, b'u') if is(b"upgrade") => Known::Upgrade,
            (9, b'f') if is(b"forwarded") => Known::Forwarded,
            (10, b'c') if is(b"connection") => Known::Connection,
            (10, b'k') if is(b"keep-alive") => Known::KeepAlive,
            (14, b'c') if is(b"content-length") => Known::ContentLength,
            (15, b'x') if is(b"x-forwarded-for") => Known::XForwardedFor,
            (16, b'p') if is(b"proxy-connection") => Known::ProxyConnection,
            (17, b't') if is(b"transfer-encoding") => Known::TransferEncoding,
            (17, b'x') if is(b"x-forwarded-proto") => Known::XForwardedProto,
            _ => Known::Other,
        }
    }

    /// Whether the header stops at the proxy (RFC 9110 §7.6.1): Connection
    /// and the headers it names, Keep-Alive, Proxy-Connection, TE, Trailer,
    /// Transfer-Encoding (halb frames each message itself), Upgrade (kept
    /// for a real upgrade by the caller), and Expect (halb answers it).
    pub(crate) fn is_hop_by_hop(self) -> bool {
        matches!(
            self,
            Known::Connection
                | Known::KeepAlive
                | Known::ProxyConnection
                | Known::Te
                | Known::Trailer
                | Known::TransferEncoding
                | Known::Upgrade
                | Known::Expect
                | Known::Dropped
        )
    }

    /// Headers a `Connection` header may not remove: they carry the
    /// message's framing or identity, or what halb itself adds.
    fn is_protected(self) -> bool {
        matches!(
            self,
            Known::Host
                | Known::ContentLength
                | Known::XForwardedFor
                | Known::XForwardedProto
                | Known::Forwarded
        )
    }
}

#[derive(Debug, Clone, Copy)]
struct Field {
    name: Span,
    value: Span,
    known: Known,
}

/// A head's header fields, in order, over the bytes they were read from.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fields {
    bytes: Bytes,
    list: Vec<Field>,
}

/// Gathers the fields of a head while it is still in the read buffer;
/// [`FieldsBuilder::finish`] attaches the head's bytes once split off.
pub(crate) struct FieldsBuilder {
    list: Vec<Field>,
}

impl FieldsBuilder {
    pub(crate) fn with_capacity(count: usize) -> Self {
        FieldsBuilder {
            list: Vec::with_capacity(count),
        }
    }

    /// Add a field whose name and value lie in `base`; returns its class.
    pub(crate) fn push(&mut self, base: &[u8], name: &[u8], value: &[u8]) -> Known {
        let known = Known::of(name);
        self.list.push(Field {
            name: Span::of(base, name),
            value: Span::of(base, value),
            known,
        });
        known
    }

    /// The fields over `bytes`, which must start where `base` did.
    pub(crate) fn finish(self, bytes: Bytes) -> Fields {
        Fields {
            bytes,
            list: self.list,
        }
    }
}

impl Fields {
    /// These fields and one more at the end (a header halb adds to a
    /// backend's answer, such as a sticky cookie).
    pub(crate) fn with_field(self, name: &str, value: &str) -> Fields {
        let mut bytes = BytesMut::with_capacity(self.bytes.len() + name.len() + value.len());
        bytes.put_slice(&self.bytes);
        let at = bytes.len();
        bytes.put_slice(name.as_bytes());
        bytes.put_slice(value.as_bytes());
        let bytes = bytes.freeze();
        let mut list = self.list;
        let name_end = at + name.len();
        list.push(Field {
            name: Span::of(&bytes, &bytes[at..name_end]),
            value: Span::of(&bytes, &bytes[name_end..]),
            known: Known::of(name.as_bytes()),
        });
        Fields { bytes, list }
    }

    /// Fields halb writes itself (its own responses), from name-value pairs.
    pub(crate) fn from_pairs(pairs: &[(&str, &str)]) -> Fields {
        let mut bytes = BytesMut::with_capacity(pairs.iter().map(|(n, v)| n.len() + v.len()).sum());
        for (name, value) in pairs {
            bytes.put_slice(name.as_bytes());
            bytes.put_slice(value.as_bytes());
        }
        let bytes = bytes.freeze();
        let mut builder = FieldsBuilder::with_capacity(pairs.len());
        let mut at = 0;
        for (name, value) in pairs {
            let name_end = at + name.len();
            let end = name_end + value.len();
            builder.push(&bytes, &bytes[at..name_end], &bytes[name_end..end]);
            at = end;
        }
        builder.finish(bytes)
    }

    /// Every field in order: name as received, value, class.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8], Known)> + '_ {
        self.list.iter().map(|field| {
            (
                field.name.bytes(&self.bytes),
                field.value.bytes(&self.bytes),
                field.known,
            )
        })
    }

    /// The values of every field of one class, in order.
    pub(crate) fn values(&self, known: Known) -> impl Iterator<Item = &[u8]> + '_ {
        self.list
            .iter()
            .filter(move |field| field.known == known)
            .map(|field| field.value.bytes(&self.bytes))
    }

    /// The first value of a class.
    pub(crate) fn get(&self, known: Known) -> Option<&[u8]> {
        self.values(known).next()
    }

    pub(crate) fn contains(&self, known: Known) -> bool {
        self.list.iter().any(|field| field.known == known)
    }

    /// The first value of the header `name` (any case).
    pub(crate) fn get_named(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(field, _, known)| {
                *known != Known::Dropped && field.eq_ignore_ascii_case(name.as_bytes())
            })
            .map(|(_, value, _)| value)
    }

    /// Drop the headers the `Connection` headers name, but for those it may
    /// not remove. Tokens that name hop-by-hop headers (`keep-alive`,
    /// `upgrade`) or none (`close`) cost no search: the encoders decide on
    /// those (`Upgrade` goes on for a real upgrade).
    pub(crate) fn drop_connection_named(&mut self) {
        let Fields { bytes, list } = self;
        for at in 0..list.len() {
            if list[at].known != Known::Connection {
                continue;
            }
            let value = list[at].value;
            for token in value.bytes(bytes).split(|b| *b == b',') {
                let token = token.trim_ascii();
                let known = Known::of(token);
                if token.is_empty()
                    || token.eq_ignore_ascii_case(b"close")
                    || known.is_protected()
                    || known.is_hop_by_hop()
                {
                    continue;
                }
                for field in list.iter_mut() {
                    if field.known == known && field.name.bytes(bytes).eq_ignore_ascii_case(token) {
                        field.known = Known::Dropped;
                    }
                }
            }
        }
    }

    /// Bytes an encoding of every field needs at most.
    pub(crate) fn encoded_len(&self) -> usize {
        self.bytes.len() + 4 * self.list.len()
    }
}

/// Whether a comma-separated header value holds `token` (any case).
pub(crate) fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Write one header line.
pub(crate) fn put_field(dst: &mut BytesMut, name: &[u8], value: &[u8]) {
    dst.put_slice(name);
    dst.put_slice(b": ");
    dst.put_slice(value);
    dst.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_classified_in_any_case() {
        assert_eq!(Known::of(b"Content-Length"), Known::ContentLength);
        assert_eq!(Known::of(b"TRANSFER-ENCODING"), Known::TransferEncoding);
        assert_eq!(Known::of(b"x-forwarded-proto"), Known::XForwardedProto);
        assert_eq!(Known::of(b"X-Forwarded-For"), Known::XForwardedFor);
        assert_eq!(Known::of(b"te"), Known::Te);
        assert_eq!(Known::of(b"tf"), Known::Other);
        assert_eq!(Known::of(b"content-lengths"), Known::Other);
        assert_eq!(Known::of(b"hostx"), Known::Other);
        assert_eq!(Known::of(b"DATE"), Known::Date);
        assert_eq!(Known::of(b"Keep-Alive"), Known::KeepAlive);
        assert_eq!(Known::of(b"content-type"), Known::Other);
        assert_eq!(Known::of(b"connectiom"), Known::Other);
        assert_eq!(Known::of(b""), Known::Other);
    }

    #[test]
    fn connection_drops_what_it_names_but_protected_headers() {
        let mut fields = Fields::from_pairs(&[
            ("Connection", "x-secret, Host, upgrade"),
            ("connection", "content-length"),
            ("X-Secret", "1"),
            ("host", "a"),
            ("content-length", "0"),
            ("upgrade", "websocket"),
            ("x-kept", "2"),
        ]);
        fields.drop_connection_named();
        let kept: Vec<&[u8]> = fields
            .iter()
            .filter(|(_, _, known)| *known != Known::Dropped)
            .map(|(name, _, _)| name)
            .collect();
        assert_eq!(
            kept,
            [
                &b"Connection"[..],
                b"connection",
                b"host",
                b"content-length",
                b"upgrade",
                b"x-kept"
            ]
        );
        assert_eq!(fields.get_named("X-KEPT"), Some(&b"2"[..]));
        assert_eq!(fields.get_named("x-secret"), None);
    }

    #[test]
    fn values_of_a_class_in_order() {
        let fields = Fields::from_pairs(&[("cookie", "a=1"), ("x", "y"), ("Cookie", "b=2")]);
        let cookies: Vec<&[u8]> = fields.values(Known::Cookie).collect();
        assert_eq!(cookies, [&b"a=1"[..], b"b=2"]);
        assert!(has_token(b"keep-alive, Upgrade", b"upgrade"));
        assert!(!has_token(b"keep-alive, upgraded", b"upgrade"));
    }
}
