//! Reading a certificate chain and its private key from PEM files, with
//! errors that name the file and the config key.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;

/// Largest certificate or key file read (a chain is a few KB).
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// The SHA-256 of a certificate's DER, as `AB:CD:…`.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Reads a file of at most [`MAX_PEM_BYTES`]; the error names `key`.
pub fn read(key: &str, path: &Path) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let size = std::fs::metadata(path)
        .map_err(|e| format!("{key} ({shown}): cannot read: {e}"))?
        .len();
    if size > MAX_PEM_BYTES {
        return Err(format!(
            "{key} ({shown}): {size} bytes, more than a PEM file of certificates or a key can be"
        ));
    }
    std::fs::read(path).map_err(|e| format!("{key} ({shown}): cannot read: {e}"))
}

/// Every certificate in a PEM file, in order.
pub fn certificates(
    key: &str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{key} ({}): not PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{key} ({}): no certificate in the file (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}

/// The certificate chain and key of two files, checked to belong
/// together.
pub fn pair(
    cert_key: &str,
    cert_path: &Path,
    cert_pem: &[u8],
    key_key: &str,
    key_path: &Path,
    key_pem: &[u8],
    provider: &rustls::crypto::CryptoProvider,
) -> Result<Arc<CertifiedKey>, String> {
    let chain = certificates(cert_key, cert_path, cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        format!(
            "{key_key} ({}): no private key found ({e}); expected -----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY",
            key_path.display()
        )
    })?;
    let signing = provider.key_provider.load_private_key(key).map_err(|e| {
        format!(
            "{key_key} ({}): unusable private key: {e}",
            key_path.display()
        )
    })?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(Arc::new(certified))
        }
        Err(rustls::Error::InconsistentKeys(_)) => Err(format!(
            "{key_key} ({}) is not the key of the certificate in {cert_key} ({})",
            key_path.display(),
            cert_path.display()
        )),
        Err(e) => Err(format!(
            "{cert_key} ({}): the certificate cannot be read: {e}",
            cert_path.display()
        )),
    }
}
