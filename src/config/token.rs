//! The gateway token generated at first start when auth mode is token and
//! the config names none. It lives in `<state dir>/gateway.token` (mode
//! 0600), where the local CLI finds it: a local process needs read access
//! to the owner's state dir to get any power.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const TOKEN_FILE: &str = "gateway.token";

pub fn token_path(state_dir: &Path) -> PathBuf {
    state_dir.join(TOKEN_FILE)
}

/// The stored token, if there is one.
pub fn read_token(state_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(token_path(state_dir)).ok()?;
    let token = text.trim();
    (!token.is_empty()).then(|| token.to_string())
}

/// The stored token, created (244 random bits) when missing.
pub fn load_or_create_token(state_dir: &Path) -> std::io::Result<String> {
    load_or_create_secret(state_dir, TOKEN_FILE, || {
        format!(
            "cgt_{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        )
    })
}

/// The secret in `<state dir>/<name>`, created with `make` when missing.
/// The file (mode 0600) is written whole under a temporary name and
/// renamed, so a reader never sees half a secret.
pub fn load_or_create_secret(
    state_dir: &Path,
    name: &str,
    make: impl FnOnce() -> String,
) -> std::io::Result<String> {
    let path = state_dir.join(name);
    super::remove_stale_temp_files(&path);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let secret = text.trim();
        if !secret.is_empty() {
            let mode = std::fs::metadata(&path)?.permissions().mode();
            if mode & 0o077 != 0 {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            }
            return Ok(secret.to_string());
        }
    }
    let secret = make();
    let tmp = state_dir.join(format!(".{name}.tmp-{}", uuid::Uuid::new_v4().simple()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(format!("{secret}\n").as_bytes())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, &path)?;
    Ok(secret)
}
