//! TLS: the gateway's certificate (loaded from PEM files or generated
//! self-signed, reloaded when the files change) and the client side's
//! trust (normal verification or a pinned fingerprint).

mod certificates;
pub mod client;
mod generate;
mod pem;

pub use certificates::{Certificates, PairFiles};
pub use generate::{generated_pair, GENERATED_CERT, GENERATED_KEY};
pub use pem::fingerprint;

use std::sync::Arc;

/// The crypto provider of every TLS connection: ring, as for the rest
/// of the gateway's rustls use (no OpenSSL, no aws-lc build).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The fingerprint of the first certificate in a PEM file.
pub fn file_fingerprint(path: &std::path::Path) -> Result<String, String> {
    let shown = path.display().to_string();
    let bytes = pem::read(&shown, path)?;
    let certs = pem::certificates(&shown, path, &bytes)?;
    Ok(fingerprint(&certs[0]))
}

/// A fingerprint as typed by people: hex digits with or without colons,
/// any case. Normalized to the form [`fingerprint`] prints.
pub fn parse_fingerprint(text: &str) -> Result<String, String> {
    let hex: String = text
        .trim()
        .trim_start_matches("sha256:")
        .trim_start_matches("SHA256:")
        .chars()
        .filter(|c| *c != ':')
        .collect();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "{text:?} is not a SHA-256 fingerprint: expected 64 hex digits (colons allowed), as `openssl x509 -noout -fingerprint -sha256` or `clawgate status` prints it"
        ));
    }
    let upper = hex.to_ascii_uppercase();
    Ok(upper
        .as_bytes()
        .chunks(2)
        .map(|pair| std::str::from_utf8(pair).expect("ascii"))
        .collect::<Vec<_>>()
        .join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_read_in_any_usual_form() {
        let colons = fingerprint(b"certificate");
        let plain = colons.replace(':', "").to_ascii_lowercase();
        assert_eq!(parse_fingerprint(&plain).unwrap(), colons);
        assert_eq!(parse_fingerprint(&colons).unwrap(), colons);
        assert_eq!(
            parse_fingerprint(&format!("sha256:{plain}")).unwrap(),
            colons
        );
        assert!(parse_fingerprint("AB:CD")
            .unwrap_err()
            .contains("64 hex digits"));
        assert!(parse_fingerprint(&"zz".repeat(32)).is_err());
    }
}
