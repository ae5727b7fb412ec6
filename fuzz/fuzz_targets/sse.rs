//! The upstream server-sent-events line splitter, fed one stream cut into
//! chunks at arbitrary points.
//!
//! Input: one byte `k` (mod 16), then `k` chunk sizes (one byte each, used
//! in turn and cyclically; 0 pushes an empty chunk), then the stream.
#![no_main]

use clawgate::fuzzing::sse_push;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let k = (k % 16) as usize;
    if rest.len() < k {
        return;
    }
    let (sizes, stream) = rest.split_at(k);
    let mut chunks: Vec<&[u8]> = Vec::new();
    let mut left = stream;
    if sizes.iter().any(|&s| s > 0) {
        let mut i = 0;
        while !left.is_empty() {
            let n = (sizes[i % k] as usize).min(left.len());
            let (chunk, tail) = left.split_at(n);
            chunks.push(chunk);
            left = tail;
            i += 1;
        }
    } else {
        chunks.extend(sizes.iter().map(|_| &[][..]));
        chunks.push(left);
    }
    let chunked = sse_push(&chunks);
    let whole = sse_push(&[stream]);
    // Where the transport cuts the stream must not change the events.
    if let (Ok(chunked), Ok(whole)) = (&chunked, &whole) {
        assert_eq!(chunked, whole, "payloads depend on the chunking");
        let newlines = stream.iter().filter(|&&b| b == b'\n').count();
        assert!(whole.len() <= newlines, "more payloads than lines");
        assert!(
            whole.iter().all(|p| !p.contains('\n')),
            "a payload spans lines"
        );
    }
});
