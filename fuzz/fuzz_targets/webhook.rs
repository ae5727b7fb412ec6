//! Signed webhooks: `verify` on headers taken from the input, and the
//! `sign` / `verify` round trip.
//!
//! Input: `<secret>\n<X-Clawgate-Timestamp>\n<X-Clawgate-Signature>\n<body>`;
//! a missing line leaves that header out. The gateway's clock reads
//! `NOW_SECS`.
#![no_main]

use clawgate::channels::webhook::{sign, verify, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

const NOW_SECS: u64 = 1_767_225_600;

fn headers(timestamp: Option<&[u8]>, signature: Option<&[u8]>) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in [(TIMESTAMP_HEADER, timestamp), (SIGNATURE_HEADER, signature)] {
        if let Some(value) = value.and_then(|v| HeaderValue::from_bytes(v).ok()) {
            map.insert(name, value);
        }
    }
    map
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(4, |&b| b == b'\n');
    let secret = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let timestamp = parts.next();
    let signature = parts.next();
    let body = parts.next().unwrap_or_default();

    let _ = verify(&secret, &headers(timestamp, signature), body, NOW_SECS);

    // A body signed with the secret at a time inside the window verifies.
    let t = timestamp
        .and_then(|t| std::str::from_utf8(t).ok())
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|t| (NOW_SECS - 300..=NOW_SECS + 30).contains(t))
        .unwrap_or(NOW_SECS);
    let signed = sign(&secret, t, body);
    let t_text = t.to_string();
    let good = headers(Some(t_text.as_bytes()), Some(signed.as_bytes()));
    assert_eq!(
        verify(&secret, &good, body, NOW_SECS),
        Ok(()),
        "a freshly signed body does not verify"
    );
    // ...and a changed body does not.
    if let Some(&last) = body.last() {
        let mut tampered = body.to_vec();
        *tampered.last_mut().unwrap() = last ^ 1;
        assert_eq!(
            verify(&secret, &good, &tampered, NOW_SECS),
            Err("bad signature"),
            "a changed body verifies"
        );
    }
});
