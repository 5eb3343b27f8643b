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
use crate::vocabulary::HeaderField;

/// RFC 7541 §4.1: an entry's size is its name and value lengths plus 32.
const ENTRY_OVERHEAD: usize = 32;
/// Index of the newest dynamic table entry (after the 61 static ones).
const FIRST_DYNAMIC_INDEX: u64 = 62;
/// The HTTP/2 default of SETTINGS_HEADER_TABLE_SIZE.
pub const DEFAULT_TABLE_SIZE: usize = 4096;

/// RFC 7541 Appendix A.
pub(crate) const STATIC_TABLE: [(&str, &str); 61] = [
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

    /// A decoder for a connection seen from its first byte whose table maximum is exactly
    /// `size` (RFC 7541 examples, or a peer known to have advertised it from the start).
    pub fn with_max_table_size(size: usize) -> Self {
        let mut decoder = Self::new_at_connection_start();
        decoder.table.set_max_size(size);
        decoder
    }

    /// The dynamic table size (RFC 7541 §4.1) when every entry is known.
    pub fn known_table_size(&self) -> Option<usize> {
        self.is_fully_known().then_some(self.table.min_total)
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
        if let Some(DecodeError::InvalidIndex(FIRST_DYNAMIC_INDEX..)) = first_error {
            // The peer referenced an entry this decoder believed evicted or never there: its
            // idea of the older entries was wrong (the known ones stay a correct prefix).
            self.table.older_unknown = true;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    fn fields(pairs: &[(&str, &str)]) -> Vec<HeaderField> {
        pairs
            .iter()
            .map(|(n, v)| HeaderField::new(*n, *v))
            .collect()
    }

    #[test]
    fn rfc_c2_single_representations() {
        let mut decoder = Decoder::new_at_connection_start();
        let block = hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572");
        assert_eq!(
            decoder.decode_block(&block).unwrap(),
            fields(&[("custom-key", "custom-header")])
        );
        assert_eq!(decoder.known_table_size(), Some(55));

        let mut decoder = Decoder::new_at_connection_start();
        let block = hex("040c 2f73 616d 706c 652f 7061 7468");
        assert_eq!(
            decoder.decode_block(&block).unwrap(),
            fields(&[(":path", "/sample/path")])
        );
        assert_eq!(decoder.known_table_size(), Some(0));

        let mut decoder = Decoder::new_at_connection_start();
        let block = hex("1008 7061 7373 776f 7264 0673 6563 7265 74");
        let mut expected = fields(&[("password", "secret")]);
        expected[0].sensitive = true;
        assert_eq!(decoder.decode_block(&block).unwrap(), expected);
        assert_eq!(decoder.known_table_size(), Some(0));

        let mut decoder = Decoder::new_at_connection_start();
        assert_eq!(
            decoder.decode_block(&[0x82]).unwrap(),
            fields(&[(":method", "GET")])
        );
    }

    /// A block in hex, the fields it decodes to, then the table size and entry count after it.
    type Step<'a> = (&'a str, &'a [(&'a str, &'a str)], usize, usize);

    fn check_sequence(decoder: &mut Decoder, blocks: &[Step<'_>]) {
        for (index, (block, expected, table_size, entries)) in blocks.iter().enumerate() {
            assert_eq!(
                decoder.decode_block(&hex(block)).unwrap(),
                fields(expected),
                "block {index}"
            );
            assert_eq!(
                decoder.known_table_size(),
                Some(*table_size),
                "block {index}"
            );
            assert_eq!(decoder.tracked_entries(), *entries, "block {index}");
        }
    }

    const REQ1: &[(&str, &str)] = &[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
    ];
    const REQ2: &[(&str, &str)] = &[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
        ("cache-control", "no-cache"),
    ];
    const REQ3: &[(&str, &str)] = &[
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/index.html"),
        (":authority", "www.example.com"),
        ("custom-key", "custom-value"),
    ];

    #[test]
    fn rfc_c3_requests_without_huffman() {
        check_sequence(
            &mut Decoder::new_at_connection_start(),
            &[
                (
                    "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
                    REQ1,
                    57,
                    1,
                ),
                ("8286 84be 5808 6e6f 2d63 6163 6865", REQ2, 110, 2),
                (
                    "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
                    REQ3,
                    164,
                    3,
                ),
            ],
        );
    }

    #[test]
    fn rfc_c4_requests_with_huffman() {
        check_sequence(
            &mut Decoder::new_at_connection_start(),
            &[
                ("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff", REQ1, 57, 1),
                ("8286 84be 5886 a8eb 1064 9cbf", REQ2, 110, 2),
                (
                    "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
                    REQ3,
                    164,
                    3,
                ),
            ],
        );
    }

    const RESP1: &[(&str, &str)] = &[
        (":status", "302"),
        ("cache-control", "private"),
        ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
        ("location", "https://www.example.com"),
    ];
    const RESP2: &[(&str, &str)] = &[
        (":status", "307"),
        ("cache-control", "private"),
        ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
        ("location", "https://www.example.com"),
    ];
    const RESP3: &[(&str, &str)] = &[
        (":status", "200"),
        ("cache-control", "private"),
        ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
        ("location", "https://www.example.com"),
        ("content-encoding", "gzip"),
        (
            "set-cookie",
            "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
        ),
    ];

    #[test]
    fn rfc_c5_responses_without_huffman_with_eviction() {
        check_sequence(
            &mut Decoder::with_max_table_size(256),
            &[
                (
                    "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
                     2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70
                     6c65 2e63 6f6d",
                    RESP1,
                    222,
                    4,
                ),
                ("4803 3330 37c1 c0bf", RESP2, 222, 4),
                (
                    "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
                     54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
                     5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e
                     3d31",
                    RESP3,
                    215,
                    3,
                ),
            ],
        );
    }

    #[test]
    fn rfc_c6_responses_with_huffman_with_eviction() {
        check_sequence(
            &mut Decoder::with_max_table_size(256),
            &[
                (
                    "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
                     2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
                    RESP1,
                    222,
                    4,
                ),
                ("4883 640e ffc1 c0bf", RESP2, 222, 4),
                (
                    "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
                     77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
                     9587 3160 65c0 03ed 4ee5 b106 3d50 07",
                    RESP3,
                    215,
                    3,
                ),
            ],
        );
    }

    #[test]
    fn joined_late_knows_only_what_it_saw_inserted() {
        // C.3.2 and C.3.3 without C.3.1: ":authority www.example.com" (index 63 in C.3.2) was
        // inserted before the decoder joined.
        let mut decoder = Decoder::new_joined_late();
        let c32 = hex("8286 84be 5808 6e6f 2d63 6163 6865");
        assert_eq!(
            decoder.decode_block(&c32),
            Err(DecodeError::UnknownIndex(62))
        );
        // The block's own insertion (cache-control: no-cache) is still known, as index 62.
        assert_eq!(
            decoder.decode_block(&[0xbe]).unwrap(),
            fields(&[("cache-control", "no-cache")])
        );
        // Index 63 is older than anything seen: unknown, never guessed.
        assert_eq!(
            decoder.decode_block(&[0xbf]),
            Err(DecodeError::UnknownIndex(63))
        );
        assert!(!decoder.is_fully_known());
        // A size update to 0 empties the table: fully known from then on.
        assert_eq!(
            decoder.decode_block(&[0x20, 0x82]).unwrap(),
            fields(&[(":method", "GET")])
        );
        assert!(decoder.is_fully_known());
        assert_eq!(
            decoder.decode_block(&[0xbe]),
            Err(DecodeError::InvalidIndex(62))
        );
        // Such a reference means the decoder's belief was wrong: from now on, unknown.
        assert!(!decoder.is_fully_known());
        assert_eq!(
            decoder.decode_block(&[0xbe]),
            Err(DecodeError::UnknownIndex(62))
        );
    }

    #[test]
    fn unknown_name_still_occupies_its_slot() {
        let mut decoder = Decoder::new_joined_late();
        // Literal with incremental indexing, name from unknown index 62, value "v".
        assert_eq!(
            decoder.decode_block(&[0x7e, 0x01, b'v']),
            Err(DecodeError::UnknownIndex(62))
        );
        // Then a known insertion: it is index 62, the unknown one 63.
        let block = [&[0x40, 0x01, b'a', 0x01, b'b'][..], &[0xbe]].concat();
        assert_eq!(
            decoder.decode_block(&block).unwrap(),
            fields(&[("a", "b"), ("a", "b")])
        );
        assert_eq!(
            decoder.decode_block(&[0xbf]),
            Err(DecodeError::UnknownIndex(63))
        );
    }

    #[test]
    fn known_entries_past_the_maximum_recover_full_knowledge() {
        let mut decoder = Decoder::new_joined_late();
        // A size update makes the maximum known (100); inserting more than 100 bytes of known
        // entries evicts everything older.
        let mut block = vec![0x3f, 0x45]; // size update 100 (31 + 69)
        for value in [b"0123456789", b"abcdefghij"] {
            block.extend_from_slice(&[0x40, 0x05]);
            block.extend_from_slice(b"name0");
            block.push(10);
            block.extend_from_slice(value);
        }
        // Each entry is 5 + 10 + 32 = 47 bytes; two are 94 <= 100, older unknown may remain.
        decoder.decode_block(&block).unwrap();
        assert!(!decoder.is_fully_known());
        decoder
            .decode_block(&[0x40, 0x01, b'x', 0x01, b'y'])
            .unwrap();
        // 47 + 47 + 34 > 100: the oldest known entry and everything before it are gone.
        assert!(decoder.is_fully_known());
        assert_eq!(decoder.known_table_size(), Some(81));
    }

    #[test]
    fn malformed_blocks_lose_positions_but_do_not_panic() {
        let cases: [&[u8]; 6] = [
            &[0x40, 0x05, b'a'],                         // truncated name
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], // integer overflow
            &[0x40, 0x81, 0x00, 0x00],                   // bad huffman padding
            &[0x7f],                                     // truncated integer
            &[0x00, 0x00],                               // truncated value
            &[0x80],                                     // index 0
        ];
        for block in cases {
            let mut decoder = Decoder::new_at_connection_start();
            decoder
                .decode_block(&[0x40, 0x01, b'a', 0x01, b'b'])
                .unwrap();
            assert!(decoder.decode_block(block).is_err(), "{block:?}");
        }
        let mut decoder = Decoder::new_at_connection_start();
        decoder
            .decode_block(&[0x40, 0x01, b'a', 0x01, b'b'])
            .unwrap();
        assert_eq!(
            decoder.decode_block(&[0x40, 0x05, b'a']),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            decoder.decode_block(&[0xbe]),
            Err(DecodeError::UnknownIndex(62))
        );
    }

    #[test]
    fn decoded_list_is_bounded() {
        let mut decoder = Decoder::new_at_connection_start();
        decoder.set_max_decoded_bytes(100);
        let mut block = vec![0x40, 0x01, b'a', 0x7f, 0x00];
        block.extend(std::iter::repeat_n(b'v', 127));
        block.extend([0xbe; 10]);
        assert_eq!(decoder.decode_block(&block), Err(DecodeError::ListTooLarge));
        // The insertion still happened.
        decoder.set_max_decoded_bytes(1000);
        assert_eq!(decoder.decode_block(&[0xbe]).unwrap()[0].value.len(), 127);
    }
}
