//! `clawgate plugin check MANIFEST`: whether the gateway would accept a
//! plugin's manifest, with every problem located.

use crate::plugins::Manifest;
use serde_json::Value;
use std::path::Path;

/// Exit 0 when the manifest is accepted (printing what it adds), 1 when
/// it is refused, 2 when it cannot be read.
pub fn check(path: &Path) -> u8 {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("clawgate: {}: {e}", path.display());
            return 2;
        }
    };
    let value: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            eprintln!(
                "clawgate: {}: the manifest is not JSON: {e}",
                path.display()
            );
            return 1;
        }
    };
    let name = value["name"].as_str().unwrap_or("plugin");
    match Manifest::parse(name, &value) {
        Ok(manifest) => {
            println!("{}: accepted ({name} {})", path.display(), manifest.version);
            for (method, def) in &manifest.methods {
                println!("  method {method} (scope {})", def.scope);
            }
            for def in manifest.events.values() {
                println!("  event  {} (scope {})", def.kind.name, def.kind.scope);
            }
            0
        }
        Err(e) => {
            eprintln!("clawgate: {}: {e}", path.display());
            1
        }
    }
}

/// The client additions `clawgate gen --plugin` writes, for each
/// `[NAME=]MANIFEST`; a manifest the gateway would refuse is an error.
pub fn client_files(
    root: &Path,
    out: &str,
    plugins: &[String],
) -> Result<Vec<(String, String)>, String> {
    let mut files = Vec::new();
    for arg in plugins {
        let (name, path) = match arg.split_once('=') {
            Some((name, path)) => (Some(name), path),
            None => (None, arg.as_str()),
        };
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| format!("{path}: the manifest is not JSON: {e}"))?;
        let name = name
            .or(value["name"].as_str())
            .unwrap_or("plugin")
            .to_string();
        Manifest::parse(&name, &value).map_err(|e| format!("{path}: {e}"))?;
        files.extend(crate::sdk::plugin_files(root, out, &name, &value)?);
    }
    Ok(files)
}
