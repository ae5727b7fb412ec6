//! OpenClaw's gateway protocol v4, served on the same port as the native
//! protocol: its frames, its handshake (with device proofs), and its
//! methods and events, each mapped onto a native method or event by the
//! tables generated from `schema/openclaw/`.

pub use crate::protocol::openclaw::{
    schemas, types, V4Event, V4Method, NODE_MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
};

mod approvals;
mod convert;
mod cron;
mod device;
mod error;
mod events;
mod frames;
mod handshake;
mod methods;
mod nodes;
mod pairing;

pub use device::Challenge;
pub use error::V4Error;
pub use events::frames as event_frames;
pub use frames::{error_frame, is_v4_request, ok_frame, parse, V4Request};
pub use handshake::connect;
pub use methods::{accepted, call, validate};
