//! OpenClaw's protocol v4 as clawgate serves it, generated from
//! `schema/openclaw/`: its types, its method and event tables (each v4
//! method and event mapped onto a native one) and its validators. The
//! adapter that serves it is `server::openclaw`.

pub mod types {
    // Generated for every definition; frames are written directly.
    #![allow(clippy::all, clippy::pedantic, dead_code)]
    include!(concat!(env!("OUT_DIR"), "/openclaw_types.rs"));
}

mod table {
    use super::super::types::Scope;
    use super::super::{EventKind, Method};
    include!(concat!(env!("OUT_DIR"), "/openclaw.rs"));
}

pub use table::{V4Event, V4Method, NODE_MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};

use super::Schemas;
use std::sync::OnceLock;

const BUNDLE: &str = include_str!(concat!(env!("OUT_DIR"), "/openclaw_bundle.json"));

/// The validators of `schema/openclaw/`, and its bundle.
pub fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| Schemas::compile(BUNDLE))
}
