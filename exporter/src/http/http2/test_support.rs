//! Test-only HTTP/2 writer: frames and an HPACK encoder (indexed, literal with incremental
//! indexing, never-indexed; optional Huffman), to build realistic byte streams.

use super::hpack::STATIC_TABLE;
use super::huffman;

pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

pub struct Encoder {
    /// Newest first.
    table: Vec<(String, String)>,
    size: usize,
    max_size: usize,
    huffman: bool,
}

impl Encoder {
    pub fn new(huffman: bool) -> Self {
        Encoder {
            table: Vec::new(),
            size: 0,
            max_size: 4096,
            huffman,
        }
    }

    pub fn encode(&mut self, fields: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for &(name, value) in fields {
            let exact = self.find(|n, v| n == name && v == value);
            if let Some(index) = exact {
                integer(&mut out, 0x80, 7, index);
                continue;
            }
            let name_index = self.find(|n, _| n == name).unwrap_or(0);
            let sensitive = name == "authorization";
            if sensitive {
                integer(&mut out, 0x10, 4, name_index);
            } else {
                integer(&mut out, 0x40, 6, name_index);
            }
            if name_index == 0 {
                self.string(&mut out, name);
            }
            self.string(&mut out, value);
            if !sensitive {
                self.insert(name, value);
            }
        }
        out
    }

    /// Emits a dynamic table size update and applies it.
    pub fn size_update(&mut self, size: usize, out: &mut Vec<u8>) {
        integer(out, 0x20, 5, size);
        self.max_size = size;
        self.evict();
    }

    fn find(&self, matches: impl Fn(&str, &str) -> bool) -> Option<usize> {
        if let Some(i) = STATIC_TABLE.iter().position(|(n, v)| matches(n, v)) {
            return Some(i + 1);
        }
        self.table
            .iter()
            .position(|(n, v)| matches(n, v))
            .map(|i| i + 1 + STATIC_TABLE.len())
    }

    fn insert(&mut self, name: &str, value: &str) {
        self.table.insert(0, (name.to_string(), value.to_string()));
        self.size += name.len() + value.len() + 32;
        self.evict();
    }

    fn evict(&mut self) {
        while self.size > self.max_size {
            let (n, v) = self.table.pop().unwrap();
            self.size -= n.len() + v.len() + 32;
        }
    }

    fn string(&self, out: &mut Vec<u8>, text: &str) {
        if self.huffman {
            let coded = huffman::encode(text.as_bytes());
            integer(out, 0x80, 7, coded.len());
            out.extend_from_slice(&coded);
        } else {
            integer(out, 0, 7, text.len());
            out.extend_from_slice(text.as_bytes());
        }
    }
}

fn integer(out: &mut Vec<u8>, high_bits: u8, prefix_bits: u32, value: usize) {
    let max_prefix = (1usize << prefix_bits) - 1;
    if value < max_prefix {
        out.push(high_bits | value as u8);
        return;
    }
    out.push(high_bits | max_prefix as u8);
    let mut rest = value - max_prefix;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}
