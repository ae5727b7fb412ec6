//! The pair the gateway serves: loaded at startup, swapped for new
//! connections when its files change, kept when the new files are bad.

use super::pem;
use crate::clock::now_ms;
use crate::config::{dotted, keys};
use crate::health::HealthService;
use crate::protocol::types::TlsInfo;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::watch;

/// Where the served pair comes from.
#[derive(Debug, Clone)]
pub struct PairFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA certificates clients must present a certificate of.
    pub ca: Option<PathBuf>,
    /// The self-signed pair of gateway.tls.autoGenerate.
    pub generated: bool,
}

/// The served pair and what status and health say about it.
pub struct Certificates {
    files: PairFiles,
    provider: Arc<rustls::crypto::CryptoProvider>,
    served: RwLock<Arc<CertifiedKey>>,
    /// What the files held when the served pair was read from them.
    loaded: Contents,
    info: Mutex<TlsInfo>,
    health: Arc<HealthService>,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

/// What the files held when last read: a digest of their bytes, or of
/// why they could not be read.
type Contents = [u8; 32];

impl Certificates {
    /// Loads the pair; the error says why the gateway cannot serve TLS.
    pub fn load(files: PairFiles, health: Arc<HealthService>) -> Result<Arc<Self>, String> {
        let provider = super::provider();
        let (pair, loaded) = read_pair(&files, &provider)?;
        warn_if_readable_by_others(&files.key);
        let info = TlsInfo {
            fingerprint: served_fingerprint(&pair),
            cert_path: files.cert.display().to_string(),
            key_path: files.key.display().to_string(),
            generated: files.generated,
            client_certificates: files.ca.is_some(),
            loaded_at_ms: now_ms(),
            last_error: None,
            last_error_at_ms: None,
        };
        health.set_tls(info.clone());
        Ok(Arc::new(Certificates {
            files,
            provider,
            served: RwLock::new(pair),
            loaded,
            info: Mutex::new(info),
            health,
        }))
    }

    /// The rustls config of every TLS connection: safe default protocol
    /// versions (1.2 and 1.3), this pair, HTTP/1.1 by ALPN, and client
    /// certificates when gateway.tls.caPath is set.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, String> {
        let builder = ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = match &self.files.ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let key = dotted(keys::GATEWAY_TLS_CA_PATH);
                let bytes = pem::read(&key, path)?;
                let mut roots = rustls::RootCertStore::empty();
                for cert in pem::certificates(&key, path, &bytes)? {
                    roots.add(cert).map_err(|e| {
                        format!(
                            "{key} ({}): not a usable CA certificate: {e}",
                            path.display()
                        )
                    })?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    Arc::clone(&self.provider),
                )
                .build()
                .map_err(|e| format!("{key} ({}): {e}", path.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config =
            builder.with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Whether the pair is the generated self-signed one.
    pub fn generated(&self) -> bool {
        self.files.generated
    }

    pub fn info(&self) -> TlsInfo {
        self.info.lock().expect("tls info lock").clone()
    }

    /// Looks at the files every `interval` until `stop` turns true. Files
    /// that changed are read once they stop changing (a renewal writes
    /// the certificate and the key one after the other); a pair that
    /// loads is served to new connections, one that does not is reported
    /// once and the pair in use is kept.
    pub async fn watch(self: Arc<Self>, interval: Duration, mut stop: watch::Receiver<bool>) {
        let mut loaded = self.loaded;
        let mut last_seen = loaded;
        let mut refused: Option<Contents> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
            let files = self.files.clone();
            let Ok((now, read)) = tokio::task::spawn_blocking(move || contents(&files)).await
            else {
                continue;
            };
            if now != last_seen {
                last_seen = now;
                continue;
            }
            if now == loaded {
                if refused.take().is_some() {
                    self.update(|info| {
                        info.last_error = None;
                        info.last_error_at_ms = None;
                    });
                }
                continue;
            }
            if refused == Some(now) {
                continue;
            }
            let attempt = match read {
                Err(e) => Err(e),
                Ok(()) => {
                    let (files, provider) = (self.files.clone(), Arc::clone(&self.provider));
                    tokio::task::spawn_blocking(move || read_pair(&files, &provider))
                        .await
                        .unwrap_or_else(|e| Err(format!("the certificate check failed: {e}")))
                }
            };
            match attempt {
                Ok((pair, contents)) => {
                    loaded = contents;
                    last_seen = contents;
                    refused = None;
                    let fingerprint = served_fingerprint(&pair);
                    *self.served.write().expect("served pair lock") = pair;
                    warn_if_readable_by_others(&self.files.key);
                    tracing::info!(fingerprint, cert = %self.files.cert.display(), "TLS certificate reloaded; new connections get it");
                    self.update(|info| {
                        info.fingerprint = fingerprint;
                        info.loaded_at_ms = now_ms();
                        info.last_error = None;
                        info.last_error_at_ms = None;
                    });
                }
                Err(error) => {
                    refused = Some(now);
                    tracing::warn!(
                        "TLS certificate files refused, the pair in use is kept: {error}"
                    );
                    self.update(|info| {
                        info.last_error = Some(error);
                        info.last_error_at_ms = Some(now_ms());
                    });
                }
            }
        }
    }

    fn update(&self, change: impl FnOnce(&mut TlsInfo)) {
        let mut info = self.info.lock().expect("tls info lock");
        change(&mut info);
        self.health.set_tls(info.clone());
    }
}

/// What the files hold now, and whether they could be read.
fn contents(files: &PairFiles) -> (Contents, Result<(), String>) {
    match read_files(files) {
        Ok((cert, key)) => (digest(&cert, &key), Ok(())),
        Err(e) => (Sha256::digest(e.as_bytes()).into(), Err(e)),
    }
}

/// A private key others can read is no longer private: said, not refused
/// (the owner may have reasons, e.g. a group shared with a renewal agent).
fn warn_if_readable_by_others(key: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(key) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(key = %key.display(), "the TLS private key is readable by others (mode {mode:o}); chmod 600 it");
        }
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.served.read().expect("served pair lock")))
    }
}

fn read_files(files: &PairFiles) -> Result<(Vec<u8>, Vec<u8>), String> {
    let (cert_key, key_key) = config_keys(files);
    Ok((
        pem::read(&cert_key, &files.cert)?,
        pem::read(&key_key, &files.key)?,
    ))
}

fn read_pair(
    files: &PairFiles,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<(Arc<CertifiedKey>, Contents), String> {
    let (cert_key, key_key) = config_keys(files);
    let (cert, key) = read_files(files)?;
    let pair = pem::pair(
        &cert_key,
        &files.cert,
        &cert,
        &key_key,
        &files.key,
        &key,
        provider,
    )?;
    Ok((pair, digest(&cert, &key)))
}

/// The config keys errors name: the generated pair is autoGenerate's.
fn config_keys(files: &PairFiles) -> (String, String) {
    if files.generated {
        let key = dotted(keys::GATEWAY_TLS_AUTO_GENERATE);
        (key.clone(), key)
    } else {
        (
            dotted(keys::GATEWAY_TLS_CERT_PATH),
            dotted(keys::GATEWAY_TLS_KEY_PATH),
        )
    }
}

fn digest(cert: &[u8], key: &[u8]) -> Contents {
    let mut hash = Sha256::new();
    hash.update(Sha256::digest(cert));
    hash.update(Sha256::digest(key));
    hash.finalize().into()
}

fn served_fingerprint(pair: &CertifiedKey) -> String {
    pem::fingerprint(pair.cert.first().map_or(&[][..], |c| c.as_ref()))
}
