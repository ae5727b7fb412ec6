//! gateway.tls.autoGenerate: a self-signed certificate for this machine,
//! made once and kept in the state directory.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub const GENERATED_CERT: &str = "gateway-cert.pem";
pub const GENERATED_KEY: &str = "gateway-key.pem";
/// How long a generated certificate is valid. Clients pin it rather
/// than check it against a CA, so a short life would only break them.
const VALID_DAYS: u64 = 5 * 365;

/// The generated pair in `<state_dir>/tls/`: made for `names` (host names
/// and addresses) when neither file exists, else the files there. An
/// existing file is never overwritten. Returns (cert, key, created).
pub fn generated_pair(
    state_dir: &Path,
    names: &[String],
) -> Result<(PathBuf, PathBuf, bool), String> {
    let dir = state_dir.join("tls");
    let cert = dir.join(GENERATED_CERT);
    let key = dir.join(GENERATED_KEY);
    match (cert.exists(), key.exists()) {
        (true, true) => return Ok((cert, key, false)),
        (false, false) => {}
        (has_cert, _) => {
            let (present, missing) = if has_cert {
                (&cert, &key)
            } else {
                (&key, &cert)
            };
            return Err(format!(
                "gateway.tls.autoGenerate: {} exists but {} does not; it is not overwritten: \
                 remove it to generate a new pair, or set gateway.tls.certPath and keyPath",
                present.display(),
                missing.display()
            ));
        }
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let (cert_pem, key_pem) = self_signed(names)?;
    // The key first: a certificate is never published without its key.
    publish(&key, key_pem.as_bytes(), 0o600)?;
    publish(&cert, cert_pem.as_bytes(), 0o644)?;
    if let Ok(dir) = std::fs::File::open(&dir) {
        let _ = dir.sync_all();
    }
    Ok((cert, key, true))
}

fn self_signed(names: &[String]) -> Result<(String, String), String> {
    let failed = |e: rcgen::Error| format!("cannot generate a self-signed certificate: {e}");
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(failed)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("clawgate gateway on {}", crate::discovery::host_name()),
    );
    use chrono::Datelike;
    let day = |d: chrono::NaiveDate| rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8);
    let today = chrono::Utc::now().date_naive();
    params.not_before = day(today - chrono::Days::new(1));
    params.not_after = day(today + chrono::Days::new(VALID_DAYS));
    let key = rcgen::KeyPair::generate().map_err(failed)?;
    let cert = params.self_signed(&key).map_err(failed)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes `bytes` to `path` without ever replacing a file there: a
/// temporary file is filled and synced, then linked into place (which
/// fails if `path` exists).
fn publish(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    let temp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::hard_link(&temp, path)
    })();
    let _ = std::fs::remove_file(&temp);
    written.map_err(|e| {
        format!(
            "cannot write {} (through {}): {e}",
            path.display(),
            temp.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_pair_is_generated_once_with_a_private_key_and_never_overwritten() {
        let dir = std::env::temp_dir().join(format!("clawgate-tls-{}", uuid::Uuid::new_v4()));
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let (cert, key, created) = generated_pair(&dir, &names).unwrap();
        assert!(created);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&key), 0o600);
        assert_eq!(mode(&dir.join("tls")), 0o700);
        let first = std::fs::read(&cert).unwrap();
        let (_, _, created) = generated_pair(&dir, &names).unwrap();
        assert!(!created);
        assert_eq!(std::fs::read(&cert).unwrap(), first);

        std::fs::remove_file(&cert).unwrap();
        let error = generated_pair(&dir, &names).unwrap_err();
        assert!(error.contains("exists but"), "{error}");
        assert!(
            !cert.exists(),
            "a lone key is not paired with a new certificate"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
