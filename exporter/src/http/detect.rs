//! Protocol detection at a piece start: HTTP/2 client preface, HTTP/1.x start line, or a
//! plausible HTTP/2 frame (a connection joined in the middle).
//!
//! The three cannot be confused: the preface is a fixed string ("PRI" is no HTTP/1.1 method
//! accepted here), a start line is ASCII text that must end in CRLF with a valid version, and a
//! frame header carries a type code 0..=9 in its fourth byte, which text never has (text bytes
//! are >= 0x20).

use super::http2::frame::{self, CLIENT_PREFACE};

/// HTTP/1.1 methods recognised in a request line.
pub const HTTP1_METHODS: [&[u8]; 9] = [
    b"GET", b"HEAD", b"POST", b"PUT", b"PATCH", b"DELETE", b"OPTIONS", b"CONNECT", b"TRACE",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    Http2Preface,
    /// A plausible HTTP/2 frame (the decoder joined a connection in the middle).
    Http2Frame,
    Http1Request,
    Http1Response,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detection {
    Found(Start),
    /// A prefix of something recognisable: wait for more bytes of the same run.
    NeedMore,
    NotRecognized,
}

impl Detection {
    /// The first `Found`, else `NeedMore` if either wants more, else `NotRecognized`.
    fn or(self, other: Detection) -> Detection {
        match (self, other) {
            (Detection::Found(start), _) | (_, Detection::Found(start)) => Detection::Found(start),
            (Detection::NeedMore, _) | (_, Detection::NeedMore) => Detection::NeedMore,
            _ => Detection::NotRecognized,
        }
    }
}

/// Classifies the bytes from a piece start of one direction. `max_line` bounds an HTTP/1.x
/// head, `max_frame_payload` a candidate frame.
pub fn classify(
    bytes: &[u8],
    is_request_direction: bool,
    max_line: usize,
    max_frame_payload: u32,
) -> Detection {
    let preface = if is_request_direction {
        let n = bytes.len().min(CLIENT_PREFACE.len());
        if bytes.get(..n) == CLIENT_PREFACE.get(..n) {
            if n == CLIENT_PREFACE.len() {
                Detection::Found(Start::Http2Preface)
            } else {
                Detection::NeedMore
            }
        } else {
            Detection::NotRecognized
        }
    } else {
        Detection::NotRecognized
    };
    let frames = match frame::plausible_frames_at(bytes, max_frame_payload) {
        Some(true) => Detection::Found(Start::Http2Frame),
        Some(false) => Detection::NotRecognized,
        None => Detection::NeedMore,
    };
    // A start line alone could be the start of a body that happens to hold HTTP text: the
    // whole head must be there too.
    let http1 = match http1_start_line(bytes, is_request_direction, max_line) {
        Detection::Found(start) => {
            if bytes.windows(4).any(|w| w == b"\r\n\r\n") {
                Detection::Found(start)
            } else if bytes.len() <= max_line {
                Detection::NeedMore
            } else {
                Detection::NotRecognized
            }
        }
        other => other,
    };
    preface.or(http1).or(frames)
}

/// Whether `bytes` begin with an HTTP/1.x request line (request direction) or status line.
pub fn http1_start_line(bytes: &[u8], is_request_direction: bool, max_line: usize) -> Detection {
    let line_end = bytes.windows(2).position(|pair| pair == b"\r\n");
    let line = match line_end {
        Some(end) => bytes.get(..end).unwrap_or_default(),
        // An unfinished line may end with the CR of its CRLF.
        None => bytes.strip_suffix(b"\r").unwrap_or(bytes),
    };
    if line.len() > max_line {
        return Detection::NotRecognized;
    }
    let valid = if is_request_direction {
        request_line_ok(line, line_end.is_some())
    } else {
        status_line_ok(line, line_end.is_some())
    };
    match (valid, line_end) {
        (false, _) => Detection::NotRecognized,
        (true, Some(_)) if is_request_direction => Detection::Found(Start::Http1Request),
        (true, Some(_)) => Detection::Found(Start::Http1Response),
        (true, None) => Detection::NeedMore,
    }
}

/// `complete`: the line ended (CRLF seen); otherwise `line` only needs to be a valid prefix.
fn request_line_ok(line: &[u8], complete: bool) -> bool {
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    let target = parts.next();
    let version = parts.next();
    if parts.next().is_some() {
        return false;
    }
    let method_ok = if target.is_some() {
        HTTP1_METHODS.contains(&method)
    } else {
        HTTP1_METHODS.iter().any(|m| m.starts_with(method))
    };
    let target_ok = match target {
        Some(target) => {
            target.iter().all(|&b| b.is_ascii_graphic())
                && (!target.is_empty() || version.is_none())
        }
        None => true,
    };
    let version_ok = match version {
        Some(version) if complete => version == b"HTTP/1.1" || version == b"HTTP/1.0",
        Some(version) => b"HTTP/1.1".starts_with(version) || b"HTTP/1.0".starts_with(version),
        None => !complete,
    };
    method_ok && target_ok && version_ok
}

fn status_line_ok(line: &[u8], complete: bool) -> bool {
    // "HTTP/1.x NNN" then optionally " reason".
    const TEMPLATE: &[u8] = b"HTTP/1.? ###";
    for (index, &byte) in line.iter().enumerate() {
        let ok = match TEMPLATE.get(index) {
            Some(b'?') => byte == b'0' || byte == b'1',
            Some(b'#') => byte.is_ascii_digit(),
            Some(&expected) => byte == expected,
            None if index == TEMPLATE.len() => byte == b' ',
            None => byte != b'\r' && byte != b'\n',
        };
        if !ok {
            return false;
        }
    }
    !complete || line.len() >= TEMPLATE.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_LINE: usize = 8192;
    const MAX_FRAME: u32 = 1 << 20;

    #[test]
    fn detection_table() {
        let settings = [0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100];
        let headers_frame = [0, 0, 1, 1, 5, 0, 0, 0, 1, 0x82];
        let cases: Vec<(&[u8], bool, Detection)> = vec![
            (
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
                true,
                Detection::Found(Start::Http2Preface),
            ),
            (b"PRI * HTTP/2.0\r\n", true, Detection::NeedMore),
            // The preface is only sent by clients.
            (
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
                false,
                Detection::NotRecognized,
            ),
            (
                b"GET /api HTTP/1.1\r\n\r\n",
                true,
                Detection::Found(Start::Http1Request),
            ),
            (
                b"DELETE /api/v1/pods/x HTTP/1.0\r\nHost: a\r\n\r\n",
                true,
                Detection::Found(Start::Http1Request),
            ),
            (b"GE", true, Detection::NeedMore),
            (b"GET /api HT", true, Detection::NeedMore),
            (
                b"GET /api HTTP/1.1\r\nHost: a\r\n",
                true,
                Detection::NeedMore,
            ),
            (b"GET /api HTTP/1.1\r", true, Detection::NeedMore),
            (b"HTTP/1.1 200 OK\r", false, Detection::NeedMore),
            (b"GET /api HTTP/2.0\r\n", true, Detection::NotRecognized),
            (b"FETCH /api HTTP/1.1\r\n", true, Detection::NotRecognized),
            (b"GET  /api HTTP/1.1\r\n", true, Detection::NotRecognized),
            (b"GET /api HTTP/1.1\r\n", false, Detection::NotRecognized),
            (
                b"HTTP/1.1 200 OK\r\nA: b\r\n\r\n",
                false,
                Detection::Found(Start::Http1Response),
            ),
            (
                b"HTTP/1.1 101\r\n\r\n",
                false,
                Detection::Found(Start::Http1Response),
            ),
            (b"HTTP/1.1 2", false, Detection::NeedMore),
            (b"HTTP/1.1 20x OK\r\n", false, Detection::NotRecognized),
            (b"HTTP/1.1 200 OK\r\n", true, Detection::NotRecognized),
            (&settings, false, Detection::Found(Start::Http2Frame)),
            (&settings, true, Detection::Found(Start::Http2Frame)),
            (&headers_frame, true, Detection::Found(Start::Http2Frame)),
            // HEADERS on an even stream, DATA with an undefined flag, reserved bit set.
            (
                &[0, 0, 1, 1, 5, 0, 0, 0, 2, 0x82],
                true,
                Detection::NotRecognized,
            ),
            (
                &[0, 0, 1, 0, 2, 0, 0, 0, 1, 0],
                true,
                Detection::NotRecognized,
            ),
            (
                &[0, 0, 1, 0, 0, 0x80, 0, 0, 1, 0],
                true,
                Detection::NotRecognized,
            ),
            // PING must be 8 bytes; a CONTINUATION cannot start decoding.
            (
                &[0, 0, 4, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4],
                false,
                Detection::NotRecognized,
            ),
            (
                &[0, 0, 1, 9, 4, 0, 0, 0, 1, 0x82],
                false,
                Detection::NotRecognized,
            ),
            // A plausible first frame followed by an impossible one in the same piece.
            (
                &[0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 8, 6, 0, 0, 0, 0, 1],
                false,
                Detection::NotRecognized,
            ),
            (&[0, 0, 0, 4], false, Detection::NeedMore),
            (b"{\"kind\":\"Pod\"}", false, Detection::NotRecognized),
            (
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc",
                true,
                Detection::NotRecognized,
            ),
        ];
        for (bytes, request, expected) in cases {
            assert_eq!(
                classify(bytes, request, MAX_LINE, MAX_FRAME),
                expected,
                "{:?} request={request}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}
