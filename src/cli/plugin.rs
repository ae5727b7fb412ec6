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
