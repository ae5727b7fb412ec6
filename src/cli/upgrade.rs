//! `clawgate config upgrade`: a config file brought to the current format
//! version, printed or written in place.

use crate::config::migrate::{self, Moved};
use std::path::Path;

/// What an upgrade did: the new text and what moved.
pub struct Upgraded {
    pub text: String,
    pub moved: Vec<Moved>,
    /// Whether the text differs from the file's.
    pub changed: bool,
}

/// Upgrades the file at `path`; with `write`, replaces it (atomically,
/// keeping its permissions) when anything changed.
pub fn upgrade(path: &Path, write: bool) -> Result<Upgraded, String> {
    let original = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let upgraded = if crate::config::is_json(path) {
        migrate::upgrade_json(&original)
    } else {
        migrate::upgrade_toml(&original)
    };
    let (text, moved) = upgraded.map_err(|e| format!("{}: {e}", path.display()))?;
    let changed = text != original;
    if write && changed {
        crate::config::write_atomic(path, &text)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(Upgraded {
        text,
        moved,
        changed,
    })
}
