//! Config loading (TOML or JSON syntax, `${VAR}` references, schema and
//! cross-field validation) and the line/column location of each problem.
//!
//! Input: one byte choosing the syntax (odd: JSON, even: TOML), then the
//! file text.
#![no_main]

use clawgate::config::{format_problem, load_text, LoadOptions};
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let path = if kind % 2 == 1 {
        "fuzz.json"
    } else {
        "fuzz.toml"
    };
    let opts = LoadOptions {
        path: Some(PathBuf::from(path)),
        env: vec![],
        overrides: vec![],
        state_dir: None,
    };
    match load_text(&opts, Some(text)) {
        Ok(loaded) => {
            std::hint::black_box(&loaded.effective);
        }
        Err(error) => {
            for problem in error.problems() {
                std::hint::black_box(format_problem(&problem));
            }
            std::hint::black_box((error.summary(), error.to_string()));
        }
    }
});
