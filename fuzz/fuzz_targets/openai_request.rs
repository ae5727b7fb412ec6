//! The OpenAI-compatible `POST /v1/chat/completions` body parser.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = std::hint::black_box(clawgate::fuzzing::openai_request(data));
});
