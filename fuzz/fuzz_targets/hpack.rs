//! Arbitrary header blocks into one HPACK decoder, in each starting state.
#![no_main]

use apiscope::http::http2::hpack::Decoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&mode, mut rest)) = input.split_first() else {
        return;
    };
    let mut decoder = match mode % 3 {
        0 => Decoder::new_at_connection_start(),
        1 => Decoder::new_joined_late(),
        _ => Decoder::with_max_table_size(usize::from(mode)),
    };
    decoder.set_max_decoded_bytes(16 * 1024);
    // Blocks are length-prefixed by one byte; a zero length loses a block instead.
    while let Some((&len, tail)) = rest.split_first() {
        if len == 0 {
            decoder.lose_block();
            rest = tail;
            continue;
        }
        let len = usize::from(len).min(tail.len());
        let (block, tail) = tail.split_at(len);
        rest = tail;
        if let Ok(fields) = decoder.decode_block(block) {
            let size: usize = fields.iter().map(|f| f.name.len() + f.value.len() + 32).sum();
            assert!(size <= 16 * 1024);
        }
        assert!(decoder.tracked_entries() <= 64 * 1024 / 32);
    }
});
