//! HPACK static Huffman code (RFC 7541 Appendix B), decoding only.
//!
//! The code is canonical: within one code length, codes are consecutive and ordered by symbol.
//! So the table below lists only the code length of each symbol (0..=255 and EOS = 256) and the
//! codes follow from it; a test checks a few codes against the RFC.

/// Code length in bits of every symbol, RFC 7541 Appendix B, 16 symbols a row; the last entry
/// is EOS (256).
const CODE_LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, // 0x00
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, // 0x10
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, // 0x20 ' ' .. '/'
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, // 0x30 '0' .. '?'
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, // 0x40 '@' .. 'O'
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, // 0x50 'P' .. '_'
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, // 0x60 '`' .. 'o'
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, // 0x70 'p' .. DEL
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, // 0x80
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, // 0x90
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, // 0xa0
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, // 0xb0
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, // 0xc0
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, // 0xd0
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, // 0xe0
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, // 0xf0
    30, // EOS
];

const MAX_CODE_LEN: usize = 30;
const EOS: u16 = 256;

/// Canonical decoding tables: for each length, the first code of that length, how many codes
/// have it, and where its symbols start in `symbols` (which is sorted by (length, symbol)).
struct Canonical {
    first_code: [u32; MAX_CODE_LEN + 1],
    count: [u32; MAX_CODE_LEN + 1],
    offset: [u16; MAX_CODE_LEN + 1],
    symbols: [u16; 257],
}

const fn build() -> Canonical {
    let mut count = [0u32; MAX_CODE_LEN + 1];
    let mut symbol = 0;
    while symbol < 257 {
        count[CODE_LENGTHS[symbol] as usize] += 1;
        symbol += 1;
    }
    let mut first_code = [0u32; MAX_CODE_LEN + 1];
    let mut offset = [0u16; MAX_CODE_LEN + 1];
    let mut code = 0u32;
    let mut placed = 0u16;
    let mut len = 1;
    while len <= MAX_CODE_LEN {
        code <<= 1;
        first_code[len] = code;
        offset[len] = placed;
        code += count[len];
        placed += count[len] as u16;
        len += 1;
    }
    let mut symbols = [0u16; 257];
    let mut next = offset;
    let mut symbol = 0;
    while symbol < 257 {
        let len = CODE_LENGTHS[symbol] as usize;
        symbols[next[len] as usize] = symbol as u16;
        next[len] += 1;
        symbol += 1;
    }
    Canonical {
        first_code,
        count,
        offset,
        symbols,
    }
}

static TABLE: Canonical = build();

/// Why a Huffman string could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HuffmanError {
    /// The EOS symbol appeared inside the string.
    EosInString,
    /// More than 7 bits of padding, padding that is not a prefix of EOS, or a code longer than
    /// 30 bits.
    BadPadding,
    /// The decoded string would exceed the caller's bound.
    TooLong,
}

/// Decodes a Huffman-coded string literal, appending to `out`; stops with `TooLong` once `out`
/// would pass `max_len` bytes.
pub fn decode(input: &[u8], max_len: usize, out: &mut Vec<u8>) -> Result<(), HuffmanError> {
    let mut code = 0u32;
    let mut len = 0usize;
    // Whether every bit of the pending code is 1 (padding must be a prefix of EOS).
    let mut all_ones = true;
    for &byte in input {
        for shift in (0..8).rev() {
            let bit = u32::from((byte >> shift) & 1);
            code = (code << 1) | bit;
            len += 1;
            all_ones &= bit == 1;
            if len > MAX_CODE_LEN {
                return Err(HuffmanError::BadPadding);
            }
            let first = TABLE.first_code[len];
            let index = code.wrapping_sub(first);
            if code >= first && index < TABLE.count[len] {
                let position = usize::from(TABLE.offset[len]) + index as usize;
                let symbol = TABLE.symbols.get(position).copied().unwrap_or(EOS);
                if symbol == EOS {
                    return Err(HuffmanError::EosInString);
                }
                if out.len() >= max_len {
                    return Err(HuffmanError::TooLong);
                }
                out.push(symbol as u8);
                code = 0;
                len = 0;
                all_ones = true;
            }
        }
    }
    if len > 7 || !all_ones {
        return Err(HuffmanError::BadPadding);
    }
    Ok(())
}

/// The code of `symbol` as (bits, length); used by the test encoder.
#[cfg(test)]
pub(crate) fn code_of(symbol: u16) -> (u32, u8) {
    let len = CODE_LENGTHS[usize::from(symbol)];
    let start = usize::from(TABLE.offset[usize::from(len)]);
    let rank = TABLE.symbols[start..]
        .iter()
        .position(|&s| s == symbol)
        .expect("every symbol has a code");
    (TABLE.first_code[usize::from(len)] + rank as u32, len)
}

/// Huffman-encodes `input` (test helper for building realistic header blocks).
#[cfg(test)]
pub(crate) fn encode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut acc: u64 = 0;
    let mut bits = 0u32;
    for &byte in input {
        let (code, len) = code_of(u16::from(byte));
        acc = (acc << len) | u64::from(code);
        bits += u32::from(len);
        while bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    if bits > 0 {
        let pad = 8 - bits;
        out.push(((acc << pad) as u8) | ((1u8 << pad) - 1));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_rfc_spot_checks() {
        // RFC 7541 Appendix B rows.
        assert_eq!(code_of(u16::from(b'0')), (0x0, 5));
        assert_eq!(code_of(u16::from(b'a')), (0x3, 5));
        assert_eq!(code_of(u16::from(b' ')), (0x14, 6));
        assert_eq!(code_of(u16::from(b'/')), (0x18, 6));
        assert_eq!(code_of(u16::from(b'A')), (0x21, 6));
        assert_eq!(code_of(u16::from(b'z')), (0x7b, 7));
        assert_eq!(code_of(u16::from(b'~')), (0x1ffd, 13));
        assert_eq!(code_of(0), (0x1ff8, 13));
        assert_eq!(code_of(1), (0x7fffd8, 23));
        assert_eq!(code_of(10), (0x3ffffffc, 30));
        assert_eq!(code_of(0x80), (0xfffe6, 20));
        assert_eq!(code_of(0xff), (0x3ffffee, 26));
        assert_eq!(code_of(EOS), (0x3fffffff, 30));
    }

    #[test]
    fn code_is_complete() {
        // Kraft sum of a complete prefix code is exactly 1.
        let sum: u64 = CODE_LENGTHS.iter().map(|&l| 1u64 << (30 - l)).sum();
        assert_eq!(sum, 1 << 30);
    }

    #[test]
    fn rfc_c4_strings() {
        let cases: [(&[u8], &str); 4] = [
            (
                &[
                    0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
                ],
                "www.example.com",
            ),
            (&[0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf], "no-cache"),
            (
                &[0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xa9, 0x7d, 0x7f],
                "custom-key",
            ),
            (
                &[0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xb8, 0xe8, 0xb4, 0xbf],
                "custom-value",
            ),
        ];
        for (coded, text) in cases {
            let mut out = Vec::new();
            decode(coded, 1000, &mut out).unwrap();
            assert_eq!(out, text.as_bytes());
            assert_eq!(encode(text.as_bytes()), coded);
        }
    }

    #[test]
    fn every_byte_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        let mut out = Vec::new();
        decode(&encode(&all), 1000, &mut out).unwrap();
        assert_eq!(out, all);
    }

    #[test]
    fn rejects_bad_padding_eos_and_overlong() {
        let mut out = Vec::new();
        // 'a' (00011) padded with zeros instead of ones.
        assert_eq!(decode(&[0x18], 10, &mut out), Err(HuffmanError::BadPadding));
        // A full byte of padding.
        out.clear();
        assert_eq!(
            decode(&[0x1f, 0xff], 10, &mut out),
            Err(HuffmanError::BadPadding)
        );
        // EOS itself (30 ones) followed by padding.
        out.clear();
        assert_eq!(
            decode(&[0xff, 0xff, 0xff, 0xff], 10, &mut out),
            Err(HuffmanError::EosInString)
        );
        out.clear();
        assert_eq!(
            decode(&encode(b"abc"), 2, &mut out),
            Err(HuffmanError::TooLong)
        );
    }
}
