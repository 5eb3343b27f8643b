//! Arbitrary bodies through gzip (with a small cap), every body decoder and both watch
//! decoders, fed in arbitrary pieces.
#![no_main]

use apiscope::k8s::body::{BodyLimits, decode_body, gunzip_capped};
use apiscope::k8s::watch::WatchDecoder;
use libfuzzer_sys::fuzz_target;

const CONTENT_TYPES: [&str; 6] = [
    "application/json",
    "application/vnd.kubernetes.protobuf",
    "application/apply-patch+yaml",
    "application/merge-patch+json",
    "application/vnd.kubernetes.protobuf;stream=watch",
    "text/plain",
];

fuzz_target!(|input: &[u8]| {
    let Some((&mode, body)) = input.split_first() else {
        return;
    };
    let limits = BodyLimits {
        max_decoded_bytes: 64 * 1024,
        max_watch_frame_bytes: 512,
    };
    let _ = gunzip_capped(body, 64 * 1024);
    let content_type = CONTENT_TYPES[usize::from(mode) % CONTENT_TYPES.len()];
    let encoding = if mode & 0x80 != 0 { "gzip" } else { "" };
    let _ = decode_body(content_type, encoding, body, &limits);
    let mut watch = WatchDecoder::new(content_type, &limits);
    for piece in body.chunks(usize::from(mode % 17) + 1) {
        watch.feed(piece);
        assert!(watch.buffered() <= 64 * 1024);
    }
    watch.finish();
});
