//! When a certificate expires: its `notAfter`, read from the DER by hand
//! (the few tags on the way to it), so that loading an expired
//! certificate can be warned about without an X.509 parser.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long ago the certificate expired; `None` if it has not (or its
/// date cannot be read: rustls has parsed it already, so that is rare).
pub(super) fn expired_since(cert: &[u8]) -> Option<String> {
    let not_after = not_after(cert)?;
    let ago = SystemTime::now().duration_since(not_after).ok()?;
    Some(format!("{}s", ago.as_secs()))
}

/// One DER element: its tag, its contents, and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = rest.get(..n)?;
        rest = &rest[n..];
        bytes.iter().fold(0, |len, &b| len << 8 | usize::from(b))
    };
    Some((tag, rest.get(..len)?, &rest[len..]))
}

/// `tbsCertificate.validity.notAfter`.
fn not_after(cert: &[u8]) -> Option<SystemTime> {
    let (_, certificate, _) = element(cert)?;
    let (_, tbs, _) = element(certificate)?;
    // [0] version (optional), serialNumber, signature, issuer, validity.
    let (tag, _, mut rest) = element(tbs)?;
    if tag == 0xa0 {
        rest = element(rest)?.2;
    }
    rest = element(rest)?.2;
    rest = element(rest)?.2;
    let (_, validity, _) = element(rest)?;
    let (_, _, after) = element(validity)?;
    let (tag, time, _) = element(after)?;
    let text = std::str::from_utf8(time).ok()?;
    let (year, rest) = match tag {
        // UTCTime: YYMMDDHHMMSSZ, 1950-2049.
        0x17 => {
            let yy: i64 = text.get(..2)?.parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, text.get(2..)?)
        }
        // GeneralizedTime: YYYYMMDDHHMMSSZ.
        0x18 => (text.get(..4)?.parse().ok()?, text.get(4..)?),
        _ => return None,
    };
    let two = |at: usize| -> Option<i64> { rest.get(at..at + 2)?.parse().ok() };
    let (month, day, hour, minute, second) = (two(0)?, two(2)?, two(4)?, two(6)?, two(8)?);
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).ok()?))
}

/// Days since 1970-01-01 of a civil date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expiry_date_is_read_from_the_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["a.example".into()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 3, 4);
        let cert = params.clone().self_signed(&key).unwrap();
        let when = not_after(cert.der()).unwrap();
        let seconds = when.duration_since(UNIX_EPOCH).unwrap().as_secs();
        // 2031-03-04T00:00:00Z
        assert_eq!(seconds, 1_930_348_800);
        assert!(expired_since(cert.der()).is_none());

        params.not_before = rcgen::date_time_ymd(2001, 1, 1);
        params.not_after = rcgen::date_time_ymd(2002, 1, 1);
        let old = params.self_signed(&key).unwrap();
        assert!(expired_since(old.der()).is_some());
    }
}
