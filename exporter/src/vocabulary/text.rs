//! Text helpers several stages need the same way.

use std::borrow::Cow;

/// The longest prefix of `text` of at most `max` bytes that ends on a char boundary.
pub fn prefix_on_char_boundary(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`, as in query strings).
/// `None` on an invalid escape. The bytes are returned as decoded: callers decide what a
/// non-UTF-8 result means (Go's `url.PathUnescape` keeps it, header values must be text).
pub fn percent_decode(text: &str, plus_is_space: bool) -> Option<Cow<'_, [u8]>> {
    let bytes = text.as_bytes();
    if !(text.contains('%') || plus_is_space && text.contains('+')) {
        return Some(Cow::Borrowed(bytes));
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|b| hex_value(*b))?;
                let lo = bytes.get(i + 2).and_then(|b| hex_value(*b))?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(Cow::Owned(out))
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_end_on_char_boundaries() {
        assert_eq!(prefix_on_char_boundary("abc", 5), "abc");
        assert_eq!(prefix_on_char_boundary("abc", 2), "ab");
        // 'é' is two bytes: a cut inside it moves back before it.
        assert_eq!(prefix_on_char_boundary("aé", 2), "a");
        assert_eq!(prefix_on_char_boundary("é", 0), "");
    }

    #[test]
    fn percent_escapes() {
        assert_eq!(percent_decode("a%2Fb", false).unwrap().as_ref(), b"a/b");
        assert_eq!(percent_decode("a+b", false).unwrap().as_ref(), b"a+b");
        assert_eq!(percent_decode("a+b", true).unwrap().as_ref(), b"a b");
        assert_eq!(percent_decode("%ff", false).unwrap().as_ref(), [0xff]);
        assert!(percent_decode("%4", false).is_none());
        assert!(percent_decode("%zz", false).is_none());
    }
}
