//! How a client trusts a gateway over wss:// or https://: the platform's
//! verification, or a pinned certificate fingerprint (for a self-signed
//! gateway, without turning verification off).

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use std::sync::Arc;

/// Which certificates a client accepts.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Trust {
    /// Those the platform's trust store verifies for the host name.
    #[default]
    Platform,
    /// Exactly the certificate with this SHA-256 fingerprint (as
    /// [`super::fingerprint`] prints it), whatever its issuer or names.
    Pinned(String),
}

impl Trust {
    /// A pin as typed by a person (see [`super::parse_fingerprint`]).
    pub fn pinned(text: &str) -> Result<Trust, String> {
        super::parse_fingerprint(text).map(Trust::Pinned)
    }
}

/// A client certificate and its key (PEM files), for a gateway that
/// requires one (gateway.tls.caPath).
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// A rustls client config that trusts as `trust` says and, when given,
/// presents `identity`.
pub fn client_config(
    trust: &Trust,
    identity: Option<&Identity>,
) -> Result<Arc<ClientConfig>, String> {
    let provider = super::provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match trust {
        Trust::Platform => {
            use rustls_platform_verifier::BuilderVerifierExt;
            builder
                .with_platform_verifier()
                .map_err(|e| format!("cannot load the platform's trust store: {e}"))?
        }
        Trust::Pinned(fingerprint) => {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Pinned {
                    fingerprint: fingerprint.clone(),
                    provider: Arc::clone(&provider),
                }))
        }
    };
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(identity) => {
            let (cert_key, key_key) = ("--tls-client-cert", "--tls-client-key");
            let cert = super::pem::read(cert_key, &identity.cert)?;
            let key = super::pem::read(key_key, &identity.key)?;
            // Checked as a pair first, for an error that names the file.
            let pair = super::pem::pair(
                cert_key,
                &identity.cert,
                &cert,
                key_key,
                &identity.key,
                &key,
                &provider,
            )?;
            use rustls::pki_types::pem::PemObject;
            let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(&key)
                .map_err(|e| format!("{key_key}: {e}"))?;
            builder
                .with_client_auth_cert(pair.cert.clone(), key)
                .map_err(|e| format!("{cert_key}: {e}"))?
        }
    };
    Ok(Arc::new(config))
}

/// Accepts the one certificate whose fingerprint is pinned; the
/// handshake's signatures are still checked against it, so only the
/// holder of its key can complete the handshake.
#[derive(Debug)]
struct Pinned {
    fingerprint: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = super::fingerprint(end_entity);
        if presented == self.fingerprint {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the gateway's TLS certificate is {presented}, not the pinned {}",
                self.fingerprint
            )))
        }
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
