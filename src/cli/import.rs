//! `clawgate config import-openclaw`: an OpenClaw config (openclaw.json,
//! JSON5, with its cron/jobs.json) written as a clawgate.toml, and the
//! list of what could not be carried over.

use crate::config::json5;
use crate::config::openclaw::{self, Left};
use std::path::{Path, PathBuf};

pub struct Converted {
    pub toml: String,
    pub left: Vec<Left>,
    /// The jobs file read, if any.
    pub jobs: Option<PathBuf>,
}

/// Reads `path` (and `jobs`, default `cron/jobs.json` beside it when
/// present) and writes the clawgate config as TOML.
pub fn convert(path: &Path, jobs: Option<&Path>) -> Result<Converted, String> {
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    let parse =
        |p: &Path, text: &str| json5::parse(text).map_err(|e| format!("{}:{e}", p.display()));
    let config = parse(path, &read(path)?)?;
    let beside = path.parent().map(|d| d.join("cron").join("jobs.json"));
    let jobs_path = match jobs {
        Some(p) => Some(p.to_path_buf()),
        None => beside.filter(|p| p.is_file()),
    };
    let jobs_value = match &jobs_path {
        Some(p) => Some(parse(p, &read(p)?)?),
        None => None,
    };
    let home = std::env::var("HOME").ok();
    let imported = openclaw::import(&config, jobs_value.as_ref(), home.as_deref());
    let mut body =
        toml::to_string(&imported.config).map_err(|e| format!("cannot write TOML: {e}"))?;
    if !body.ends_with('\n') {
        body.push('\n');
    }
    let mut toml = format!(
        "# Imported from {} by clawgate config import-openclaw.\n\
         # Secrets stay ${{VAR}} references: set them where clawgate runs.\n\n{body}",
        path.display()
    );
    if !imported.left.is_empty() {
        toml.push_str("\n# Not carried over:\n");
        for left in &imported.left {
            toml.push_str(&format!("#   {}: {}\n", left.key, left.why));
        }
    }
    Ok(Converted {
        toml,
        left: imported.left,
        jobs: jobs_path,
    })
}
