//! HPACK header block decoder (RFC 7541) for a passive observer.
//!
//! The observer may have joined a connection late, or lost a header block to a capture gap, so
//! it does not always know the encoder's dynamic table. It never guesses. The key fact that
//! keeps partial knowledge exact: the encoder's dynamic table is always a prefix (newest first)
//! of the sequence of all insertions, because eviction only drops the oldest entries and an
//! entry too large for the table empties it. So dynamic index `k` always names the `k`-th most
//! recent insertion, whatever the (possibly unknown) maximum size is. The decoder records the
//! insertions it saw, newest first; an index past them is "unknown" (the block then fails with
//! [`DecodeError::UnknownIndex`]) and nothing else is ever wrong. Sizes only serve to forget
//! entries that certainly were evicted (bounded memory, and the table becomes fully known
//! again once the known entries alone exceed the maximum size).

use std::collections::VecDeque;

use super::huffman::{self, HuffmanError};
use crate::http::HeaderField;

/// RFC 7541 §4.1: an entry's size is its name and value lengths plus 32.
const ENTRY_OVERHEAD: usize = 32;
/// The HTTP/2 default of SETTINGS_HEADER_TABLE_SIZE.
pub const DEFAULT_TABLE_SIZE: usize = 4096;

/// RFC 7541 Appendix A.
const STATIC_TABLE: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// Why a header block could not be decoded exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// A dynamic index past the entries this decoder knows (joined late, or a lost block).
    UnknownIndex(u64),
    /// Index 0, or a dynamic index past the table when the whole table is known.
    InvalidIndex(u64),
    /// The block ended inside a representation.
    Truncated,
    /// An integer does not fit in 32 bits.
    IntegerOverflow,
    Huffman(HuffmanError),
    /// The decoded header list passed [`Decoder::set_max_decoded_bytes`].
    ListTooLarge,
}

impl DecodeError {
    /// Whether the block could be parsed to its end (so its insertions were applied as far as
    /// known); otherwise the table positions became unknown.
    pub fn parsed_to_end(self) -> bool {
        matches!(
            self,
            DecodeError::UnknownIndex(_) | DecodeError::InvalidIndex(_) | DecodeError::ListTooLarge
        )
    }

    pub fn describe(self) -> &'static str {
        match self {
            DecodeError::UnknownIndex(_) => "hpack: reference to a dynamic table entry not seen",
            DecodeError::InvalidIndex(_) => "hpack: invalid table index",
            DecodeError::Truncated => "hpack: truncated header block",
            DecodeError::IntegerOverflow => "hpack: integer overflow",
            DecodeError::Huffman(_) => "hpack: invalid huffman string",
            DecodeError::ListTooLarge => "hpack: decoded header list too large",
        }
    }
}

/// One dynamic table entry; `field` is `None` when its content is unknown (its name came from
/// an unknown index) but its position is still known.
#[derive(Clone, Debug)]
struct Entry {
    field: Option<(Vec<u8>, Vec<u8>)>,
    /// Exact size when `field` is known, a lower bound otherwise.
    min_size: usize,
}

/// The insertions this decoder saw, newest first; see the module docs.
#[derive(Clone, Debug)]
struct DynamicTable {
    entries: VecDeque<Entry>,
    /// Sum of `min_size` over `entries`.
    min_total: usize,
    /// Whether the encoder's table may hold entries older than `entries`.
    older_unknown: bool,
    /// Upper bound of the encoder's current maximum table size, if known.
    size_bound: Option<usize>,
    /// Memory cap of `entries` when `size_bound` is unknown (or larger).
    max_history_bytes: usize,
}

enum Lookup<'a> {
    Known(&'a [u8], &'a [u8]),
    Unknown,
    Invalid,
}

impl DynamicTable {
    fn get(&self, index: u64) -> Lookup<'_> {
        // `index` is 1-based within the dynamic table.
        let position = usize::try_from(index.saturating_sub(1)).unwrap_or(usize::MAX);
        match self.entries.get(position) {
            Some(Entry {
                field: Some((name, value)),
                ..
            }) => Lookup::Known(name, value),
            Some(Entry { field: None, .. }) => Lookup::Unknown,
            None if self.older_unknown => Lookup::Unknown,
            None => Lookup::Invalid,
        }
    }

    fn insert(&mut self, entry: Entry) {
        if self.size_bound.is_some_and(|bound| entry.min_size > bound) {
            // Certainly larger than the table: RFC 7541 §4.4 empties the table and does not
            // add the entry.
            self.clear_known_empty();
            return;
        }
        self.min_total = self.min_total.saturating_add(entry.min_size);
        self.entries.push_front(entry);
        self.trim();
    }

    /// Drops entries that certainly were evicted, then entries over the memory cap.
    fn trim(&mut self) {
        if let Some(bound) = self.size_bound {
            let mut evicted = false;
            while self.min_total > bound {
                self.pop_oldest();
                evicted = true;
            }
            if evicted {
                // Everything older than an evicted entry is gone too.
                self.older_unknown = false;
            }
        }
        while self.min_total > self.max_history_bytes {
            self.pop_oldest();
            self.older_unknown = true;
        }
    }

    fn pop_oldest(&mut self) {
        match self.entries.pop_back() {
            Some(entry) => self.min_total = self.min_total.saturating_sub(entry.min_size),
            None => self.min_total = 0,
        }
    }

    fn clear_known_empty(&mut self) {
        self.entries.clear();
        self.min_total = 0;
        self.older_unknown = false;
    }

    fn set_max_size(&mut self, size: usize) {
        self.size_bound = Some(size);
        if size == 0 {
            self.clear_known_empty();
        }
        self.trim();
    }
}

/// Decodes the header blocks of one direction of one connection.
#[derive(Clone, Debug)]
pub struct Decoder {
    table: DynamicTable,
    max_decoded_bytes: usize,
    /// Whether a block was ever decoded or lost (the table is then no longer pristine).
    touched: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new_joined_late()
    }
}

impl Decoder {
    /// A decoder for a connection seen from its first byte: the table is known to be empty.
    pub fn new_at_connection_start() -> Self {
        let mut decoder = Self::new_joined_late();
        decoder.table.older_unknown = false;
        decoder.table.size_bound = Some(DEFAULT_TABLE_SIZE);
        decoder
    }

    /// A decoder that joined a connection at an unknown point: the table is unknown.
    pub fn new_joined_late() -> Self {
        Decoder {
            table: DynamicTable {
                entries: VecDeque::new(),
                min_total: 0,
                older_unknown: true,
                size_bound: None,
                max_history_bytes: 64 * 1024,
            },
            max_decoded_bytes: 1024 * 1024,
            touched: false,
        }
    }

    /// Bounds the decoded header list (names + values + 32 per field); `decode_block` fails
    /// with `ListTooLarge` past it (small blocks can reference large entries many times).
    pub fn set_max_decoded_bytes(&mut self, bytes: usize) {
        self.max_decoded_bytes = bytes;
    }

    /// Whether no block was decoded or lost yet.
    pub fn is_pristine(&self) -> bool {
        !self.touched
    }

    /// Whether every entry the encoder may reference is known.
    pub fn is_fully_known(&self) -> bool {
        !self.table.older_unknown && self.table.entries.iter().all(|e| e.field.is_some())
    }

    /// Number of dynamic entries this decoder tracks (known or not).
    pub fn tracked_entries(&self) -> usize {
        self.table.entries.len()
    }

    /// The peer that decodes this direction advertised SETTINGS_HEADER_TABLE_SIZE `size`: the
    /// encoder's maximum can become at most that (it signals lowering it inside a block).
    pub fn settings_table_size(&mut self, size: u32) {
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if let Some(bound) = self.table.size_bound {
            self.table.size_bound = Some(bound.max(size));
        }
    }

    /// A header block of this direction was not seen (or not completely): it may have inserted
    /// any number of entries, so every position is unknown from now on.
    pub fn lose_block(&mut self) {
        self.touched = true;
        self.table.entries.clear();
        self.table.min_total = 0;
        self.table.older_unknown = true;
    }

    /// Decodes one complete header block. Insertions are applied as far as known even when the
    /// block fails; a block that cannot be parsed to its end loses the table positions.
    pub fn decode_block(&mut self, block: &[u8]) -> Result<Vec<HeaderField>, DecodeError> {
        self.touched = true;
        let mut reader = Reader { input: block };
        let mut fields = Vec::new();
        let mut decoded_bytes = 0usize;
        let mut first_error: Option<DecodeError> = None;
        while !reader.input.is_empty() {
            match self.representation(&mut reader) {
                Ok(Some(field)) => {
                    decoded_bytes = decoded_bytes
                        .saturating_add(field.name.len() + field.value.len() + ENTRY_OVERHEAD);
                    if decoded_bytes > self.max_decoded_bytes {
                        first_error.get_or_insert(DecodeError::ListTooLarge);
                    }
                    if first_error.is_none() {
                        fields.push(field);
                    }
                }
                Ok(None) => {}
                Err(error) if error.parsed_to_end() => {
                    first_error.get_or_insert(error);
                }
                Err(error) => {
                    self.lose_block();
                    return Err(first_error.unwrap_or(error));
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(fields),
        }
    }

    /// Decodes one representation: `Ok(None)` for a table size update; errors that still let
    /// parsing go on (`parsed_to_end`) come after the representation was fully consumed.
    fn representation(
        &mut self,
        reader: &mut Reader<'_>,
    ) -> Result<Option<HeaderField>, DecodeError> {
        let first = reader.peek()?;
        if first & 0x80 != 0 {
            let index = reader.integer(7)?;
            let (name, value) = self.lookup(index)?;
            return Ok(Some(field(name, value, false)));
        }
        if first & 0xe0 == 0x20 {
            let size = reader.integer(5)?;
            self.table
                .set_max_size(usize::try_from(size).unwrap_or(usize::MAX));
            return Ok(None);
        }
        let (prefix_bits, incremental, sensitive) = if first & 0xc0 == 0x40 {
            (6, true, false)
        } else if first & 0xf0 == 0x10 {
            (4, false, true)
        } else {
            (4, false, false)
        };
        let name_index = reader.integer(prefix_bits)?;
        // The name may come from an unknown entry; parse the value regardless to stay in step.
        let name = if name_index == 0 {
            Ok(reader.string(self.max_decoded_bytes)?)
        } else {
            self.lookup(name_index).map(|(name, _)| name)
        };
        let value = reader.string(self.max_decoded_bytes)?;
        match name {
            Ok(name) => {
                if incremental {
                    self.table.insert(Entry {
                        min_size: name.len() + value.len() + ENTRY_OVERHEAD,
                        field: Some((name.clone(), value.clone())),
                    });
                }
                Ok(Some(field(name, value, sensitive)))
            }
            Err(error) => {
                if incremental {
                    self.table.insert(Entry {
                        min_size: value.len() + ENTRY_OVERHEAD,
                        field: None,
                    });
                }
                Err(error)
            }
        }
    }

    fn lookup(&self, index: u64) -> Result<(Vec<u8>, Vec<u8>), DecodeError> {
        if index == 0 {
            return Err(DecodeError::InvalidIndex(0));
        }
        if let Some((name, value)) = usize::try_from(index - 1)
            .ok()
            .and_then(|position| STATIC_TABLE.get(position))
        {
            return Ok((name.as_bytes().to_vec(), value.as_bytes().to_vec()));
        }
        match self.table.get(index - STATIC_TABLE.len() as u64) {
            Lookup::Known(name, value) => Ok((name.to_vec(), value.to_vec())),
            Lookup::Unknown => Err(DecodeError::UnknownIndex(index)),
            Lookup::Invalid => Err(DecodeError::InvalidIndex(index)),
        }
    }
}

fn field(name: Vec<u8>, value: Vec<u8>, sensitive: bool) -> HeaderField {
    HeaderField {
        name: String::from_utf8_lossy(&name).into_owned(),
        value: String::from_utf8_lossy(&value).into_owned(),
        sensitive,
    }
}

struct Reader<'a> {
    input: &'a [u8],
}

impl Reader<'_> {
    fn peek(&self) -> Result<u8, DecodeError> {
        self.input.first().copied().ok_or(DecodeError::Truncated)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let (&first, rest) = self.input.split_first().ok_or(DecodeError::Truncated)?;
        self.input = rest;
        Ok(first)
    }

    /// RFC 7541 §5.1 integer with an N-bit prefix; values above u32::MAX are refused.
    fn integer(&mut self, prefix_bits: u32) -> Result<u64, DecodeError> {
        let max_prefix = (1u8 << prefix_bits) - 1;
        let prefix = self.byte()? & max_prefix;
        if prefix < max_prefix {
            return Ok(u64::from(prefix));
        }
        let mut value = u64::from(max_prefix);
        let mut shift = 0u32;
        loop {
            let byte = self.byte()?;
            value += u64::from(byte & 0x7f) << shift;
            if value > u64::from(u32::MAX) {
                return Err(DecodeError::IntegerOverflow);
            }
            if byte & 0x80 == 0 {
                return Ok(value);
            }
            shift += 7;
            if shift > 28 {
                return Err(DecodeError::IntegerOverflow);
            }
        }
    }

    /// RFC 7541 §5.2 string literal.
    fn string(&mut self, max_len: usize) -> Result<Vec<u8>, DecodeError> {
        let huffman_coded = self.peek()? & 0x80 != 0;
        let len = usize::try_from(self.integer(7)?).map_err(|_| DecodeError::IntegerOverflow)?;
        if len > self.input.len() {
            return Err(DecodeError::Truncated);
        }
        let (raw, rest) = self.input.split_at(len);
        self.input = rest;
        if huffman_coded {
            let mut out = Vec::with_capacity(len.saturating_mul(8) / 5);
            huffman::decode(raw, max_len, &mut out).map_err(DecodeError::Huffman)?;
            Ok(out)
        } else {
            Ok(raw.to_vec())
        }
    }
}
