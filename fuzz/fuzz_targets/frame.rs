//! WebSocket request frames: `parse_request` on any UTF-8 text, and the
//! error frame sent back for a frame it refuses.
#![no_main]

use clawgate::protocol::{error_frame, parse_request};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_request(text) {
        Ok(request) => {
            std::hint::black_box((&request.id, &request.method, &request.params));
        }
        Err((id, error)) => {
            let frame = error_frame(id.as_deref(), &error);
            // The client must be able to read the error frame and match
            // it to its request.
            let value: Value = serde_json::from_str(&frame).expect("an error frame is JSON");
            assert_eq!(value["id"].as_str(), id.as_deref(), "error frame id");
            assert!(
                value["error"].is_object(),
                "error frame without error: {frame}"
            );
        }
    }
});
