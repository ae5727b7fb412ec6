use std::path::{Path, PathBuf};

/// Where the config file is: `--config`, else `CLAWGATE_CONFIG`, else
/// `./clawgate.toml`, else `$XDG_CONFIG_HOME/clawgate/clawgate.toml`.
/// An explicit path must exist; the fallbacks are used only if present.
pub fn resolve_config_path(flag: Option<&Path>) -> Result<Option<PathBuf>, String> {
    let explicit = flag
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("CLAWGATE_CONFIG").map(PathBuf::from));
    if let Some(path) = explicit {
        return if path.is_file() {
            Ok(Some(path))
        } else {
            Err(format!("config file {} does not exist", path.display()))
        };
    }
    let local = PathBuf::from("clawgate.toml");
    if local.is_file() {
        return Ok(Some(local));
    }
    Ok(config_home()
        .map(|dir| dir.join("clawgate").join("clawgate.toml"))
        .filter(|p| p.is_file()))
}

/// Where state lives: `--state-dir`, else `CLAWGATE_STATE_DIR`, else
/// `$XDG_DATA_HOME/clawgate`, else `~/.local/share/clawgate`.
pub fn resolve_state_dir(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| std::env::var_os("CLAWGATE_STATE_DIR").map(PathBuf::from))
        .or_else(|| non_empty_env("XDG_DATA_HOME").map(|d| d.join("clawgate")))
        .or_else(|| home().map(|h| h.join(".local/share/clawgate")))
        .unwrap_or_else(|| PathBuf::from(".clawgate"))
}

fn config_home() -> Option<PathBuf> {
    non_empty_env("XDG_CONFIG_HOME").or_else(|| home().map(|h| h.join(".config")))
}

fn home() -> Option<PathBuf> {
    non_empty_env("HOME")
}

fn non_empty_env(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}
