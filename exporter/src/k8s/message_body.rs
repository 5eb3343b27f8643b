//! The bodies of one exchange as the k8s stage read them, handed on to the capture policy so a
//! gzip body is inflated once: by whichever of the two needs its bytes first.

use std::borrow::Cow;
use std::cell::OnceCell;

use crate::exchange::Message;
use crate::k8s::body::{Unreadable, inflate};

/// One message's body: what was sent and kept, and its bytes with the content-encoding undone
/// (on first use, at most `max_decoded_bytes` of them).
pub struct MessageBody<'a> {
    message: &'a Message,
    max_decoded_bytes: usize,
    inflated: OnceCell<Result<Cow<'a, [u8]>, Unreadable>>,
}

impl<'a> MessageBody<'a> {
    pub fn new(message: &'a Message, max_decoded_bytes: usize) -> MessageBody<'a> {
        MessageBody {
            message,
            max_decoded_bytes,
            inflated: OnceCell::new(),
        }
    }

    pub fn content_type(&self) -> &'a str {
        self.message.header("content-type").unwrap_or_default()
    }

    pub fn content_encoding(&self) -> &'a str {
        self.message.header("content-encoding").unwrap_or_default()
    }

    /// The message had a body (kept or not).
    pub fn exists(&self) -> bool {
        self.message.body_bytes > 0 || !self.message.body.is_empty()
    }

    /// Length as sent.
    pub fn size(&self) -> u64 {
        self.message.body_bytes.max(self.message.body.len() as u64)
    }

    /// Bytes as sent that the capture kept (still content-encoded).
    pub fn kept(&self) -> &'a [u8] {
        &self.message.body
    }

    /// Bytes as sent the capture did not copy or keep.
    pub fn missing(&self) -> u64 {
        self.message.body_missing
    }

    /// The kept bytes with the content-encoding undone; inflated on the first call only.
    pub fn inflated(&self) -> Result<&[u8], &Unreadable> {
        self.inflated
            .get_or_init(|| {
                inflate(
                    self.content_encoding(),
                    &self.message.body,
                    self.max_decoded_bytes,
                )
            })
            .as_deref()
    }

    /// The body was inflated already (for tests of the decode-once promise).
    #[cfg(test)]
    pub(crate) fn is_inflated(&self) -> bool {
        self.inflated.get().is_some()
    }
}

/// The two bodies of an exchange, and whether the response is a stream (a watch) that is
/// summarised, never kept whole.
pub struct ExchangeBodies<'a> {
    pub request: MessageBody<'a>,
    pub response: MessageBody<'a>,
    pub response_is_stream: bool,
}
