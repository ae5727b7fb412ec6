//! The wire protocol: generated types and method table, frames, errors and
//! the schema validators. Everything here derives from `schema/`.
//!
//! Every method in `schema/methods.json` is a method of the generated
//! [`Handlers`] trait, so a method without a handler does not compile
//! (error E0046, trait items missing):
//!
//! ```compile_fail,E0046
//! struct NoHandlers;
//! impl clawgate::protocol::Handlers for NoHandlers {}
//! ```

pub mod types {
    #![allow(clippy::all, clippy::pedantic)]
    include!(concat!(env!("OUT_DIR"), "/types.rs"));
}

mod generated {
    #![allow(clippy::all, unreachable_patterns)]
    include!(concat!(env!("OUT_DIR"), "/dispatch.rs"));
}

mod context;
mod error;
mod frames;
pub mod openclaw;
mod patch;
mod schemas;
mod strict;

pub use context::{CallContext, Grant, Kick, ServeClaim};
pub use error::RpcError;
pub use frames::{
    challenge_frame, error_frame, event_frame, parse_request, result_frame, Request,
    CHALLENGE_EVENT,
};
pub use generated::*;
pub use patch::Patch;
pub use schemas::{closest, SchemaViolation, Schemas, ViolationKind};

/// Validates `params` against the method's schema, then decodes them.
/// Missing or null params are read as `{}`.
pub fn decode_params<T: serde::de::DeserializeOwned>(
    method: Method,
    params: serde_json::Value,
) -> Result<T, RpcError> {
    let params = match params {
        serde_json::Value::Null => serde_json::Value::Object(Default::default()),
        other => other,
    };
    if let Err(violations) = Schemas::get().validate(method.params_def(), &params) {
        return Err(RpcError::invalid_params(method, violations));
    }
    let mut params = params;
    patch::mark_cleared(method.params_def(), &mut params);
    serde_json::from_value(params).map_err(|e| {
        RpcError::new(
            ErrorCode::InvalidParams,
            format!("invalid params for {}: {e}", method.name()),
        )
    })
}

/// Encodes a handler's typed result as JSON text.
pub fn encode_result<T: serde::Serialize>(result: T) -> Result<String, RpcError> {
    serde_json::to_string(&result).map_err(|e| {
        RpcError::new(
            ErrorCode::InternalError,
            format!("cannot encode result: {e}"),
        )
    })
}

/// The protocol versions this server speaks, as an inclusive range.
pub const SUPPORTED_PROTOCOL: (u32, u32) = (PROTOCOL_MIN_VERSION, PROTOCOL_VERSION);

/// Whether a grant of `held` covers `needed`, following x-scope-implies.
pub fn scope_covers(held: types::Scope, needed: types::Scope) -> bool {
    held == needed || implied_scopes(held).contains(&needed)
}
