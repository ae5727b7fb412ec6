//! Line-precise config errors: every file in tests/config_corpus is
//! validated by the real CLI and its report is pinned by a snapshot.

use crate::schema::settings;
use crate::support::bin;
use std::process::Command;

const SECRET: &str = "hunter2-secret-value";

#[test]
fn every_bad_config_gets_a_located_error_and_never_shows_a_secret() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut files: Vec<_> = std::fs::read_dir(format!("{root}/tests/config_corpus"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert!(files.len() >= 10);
    for file in files {
        let relative = format!("tests/config_corpus/{file}");
        let mut cmd = Command::new(bin());
        cmd.args(["config", "validate", &relative])
            .current_dir(root);
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("CLAWGATE_")) {
            cmd.env_remove(key);
        }
        let out = cmd.output().unwrap();
        let report = format!(
            "exit: {}\n{}{}",
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            out.status.code(),
            Some(1),
            "{file} should be invalid:\n{report}"
        );
        assert!(
            report.contains(&relative),
            "{file}: the report names the file:\n{report}"
        );
        assert!(
            !report.contains(SECRET),
            "{file}: a secret was printed:\n{report}"
        );
        settings().bind(|| insta::assert_snapshot!(format!("config_error_{file}"), report));
    }
}

#[test]
fn a_valid_file_validates_with_exit_zero() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(bin())
        .args(["config", "validate", "examples/lan.toml"])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("is valid"));
}

#[test]
fn config_schema_prints_the_json_schema() {
    let out = Command::new(bin())
        .args(["config", "schema"])
        .output()
        .unwrap();
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(schema["title"], "clawgate configuration");
    assert!(schema["properties"]["gateway"].is_object());
}
