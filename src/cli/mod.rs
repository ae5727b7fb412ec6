//! The operator commands of the `clawgate` binary that talk to a running
//! gateway: where to connect and with which credential, and the terminal
//! chat.

pub mod chat;
mod connect;
mod discover;
pub mod import;
pub mod plugin;
pub mod protocol;
mod screen;
pub mod upgrade;

pub use connect::{local_fingerprint, ConnectArgs, Target};
pub use discover::discover;

use crate::client::ClientError;
use crate::protocol::ErrorCode;

/// Prints a failed call the way every command does: the error's name,
/// code and message, then its data.
pub fn report(e: &ClientError) {
    match e {
        ClientError::Rpc(e) => {
            eprintln!(
                "clawgate: {} ({}): {}",
                error_name(e.code),
                e.code,
                e.message
            );
            if let Some(data) = &e.data {
                eprintln!("{}", serde_json::to_string_pretty(data).expect("JSON"));
            }
        }
        ClientError::Transport(m) => eprintln!("clawgate: {m}"),
    }
}

/// The name of an error code, as in schema/protocol.json.
pub fn error_name(code: i64) -> &'static str {
    ErrorCode::ALL
        .iter()
        .find(|c| c.code() == code)
        .map_or("error", |c| c.name())
}
