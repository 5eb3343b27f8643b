//! pcapng writing and reading, by hand: Section Header, Interface Description and Enhanced Packet
//! Blocks are all a recording needs.
//!
//! Layout written: one SHB (little-endian), one IDB (LINKTYPE_RAW, nanosecond timestamps), then
//! one EPB per synthetic packet, each with its metadata JSON as `opt_comment` (see `meta.rs`).

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::meta::{PacketComment, SegmentMeta, parse_comment};
use super::packet::{LINKTYPE_RAW, tcp_payload};
use super::session::{MAX_CHUNK_DATA, SyntheticPacket, TcpSynthesizer};
use crate::capture::TlsChunk;

const BLOCK_SECTION_HEADER: u32 = 0x0a0d_0d0a;
const BLOCK_INTERFACE_DESCRIPTION: u32 = 0x0000_0001;
const BLOCK_OBSOLETE_PACKET: u32 = 0x0000_0002;
const BLOCK_SIMPLE_PACKET: u32 = 0x0000_0003;
const BLOCK_ENHANCED_PACKET: u32 = 0x0000_0006;
const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;

const OPT_END: u16 = 0;
const OPT_COMMENT: u16 = 1;
const OPT_SHB_USERAPPL: u16 = 4;
const OPT_IF_NAME: u16 = 2;
const OPT_IF_DESCRIPTION: u16 = 3;
const OPT_IF_TSRESOL: u16 = 9;

/// Largest block the reader accepts: far above what the writer produces (about 65 KiB), far
/// below what would hurt to buffer.
const MAX_BLOCK_LEN: u32 = 64 << 20;
/// Block type, length, and trailing length.
const BLOCK_OVERHEAD: usize = 12;

/// Writes chunks as a pcapng file that Wireshark / tshark dissect as TCP (and, with "decode as",
/// HTTP/2) without any keys. After an error the output is in an unknown state: drop the writer.
pub struct PcapngWriter<W: Write = BufWriter<File>> {
    out: W,
    /// CLOCK_REALTIME - CLOCK_MONOTONIC, to turn chunk timestamps into wall-clock packet times.
    realtime_offset_ns: i64,
    tcp: TcpSynthesizer,
    block: Vec<u8>,
}

impl PcapngWriter<BufWriter<File>> {
    /// Creates (or truncates) `path` with mode 0600, since the recording holds plaintext secrets.
    /// Refuses to follow a symbolic link at `path`.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP) {
                    anyhow::anyhow!(
                        "recording {} is a symbolic link: refusing to follow it",
                        path.display()
                    )
                } else {
                    anyhow::Error::new(e).context(format!("creating recording {}", path.display()))
                }
            })?;
        // `mode` only applies to a new file: an existing one keeps its permissions otherwise.
        let metadata = file
            .metadata()
            .with_context(|| format!("inspecting {}", path.display()))?;
        if metadata.is_file() && metadata.permissions().mode() & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("restricting {} to mode 0600", path.display()))?;
        }
        Self::new(BufWriter::new(file))
            .with_context(|| format!("writing recording {}", path.display()))
    }
}

impl<W: Write> PcapngWriter<W> {
    /// Writes the file header to `out`; packet times use the clocks' offset measured now.
    pub fn new(out: W) -> Result<Self> {
        Self::with_clock_offset(out, realtime_minus_monotonic_ns())
    }

    /// Like [`PcapngWriter::new`] with a given CLOCK_REALTIME - CLOCK_MONOTONIC offset
    /// (nanoseconds), for reproducible output.
    pub fn with_clock_offset(out: W, realtime_offset_ns: i64) -> Result<Self> {
        let mut writer = PcapngWriter {
            out,
            realtime_offset_ns,
            tcp: TcpSynthesizer::default(),
            block: Vec::new(),
        };
        writer.write_headers()?;
        Ok(writer)
    }

    /// Appends the packets standing for `chunk`: a handshake on a connection's first chunk, then
    /// its data segments (or a FIN for a close).
    pub fn write_chunk(&mut self, chunk: &TlsChunk) -> Result<()> {
        let packets = self.tcp.packets_for(chunk).map_err(anyhow::Error::msg)?;
        for packet in &packets {
            self.write_packet(packet)?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().context("flushing the recording")
    }

    /// Flushes and returns the underlying writer.
    pub fn into_inner(mut self) -> Result<W> {
        self.flush()?;
        Ok(self.out)
    }

    fn write_headers(&mut self) -> Result<()> {
        let mut body = Vec::new();
        body.extend_from_slice(&BYTE_ORDER_MAGIC.to_le_bytes());
        body.extend_from_slice(&1u16.to_le_bytes()); // major version
        body.extend_from_slice(&0u16.to_le_bytes()); // minor version
        body.extend_from_slice(&(-1i64).to_le_bytes()); // section length: not known in advance
        push_option(
            &mut body,
            OPT_SHB_USERAPPL,
            concat!("apiscope ", env!("CARGO_PKG_VERSION")).as_bytes(),
        );
        push_option(
            &mut body,
            OPT_COMMENT,
            b"TLS plaintext captured by apiscope, in synthetic TCP/IP packets with the connections' \
              real addresses. Dissect as HTTP/2 with: -d tcp.port==<server port>,http2. \
              Each packet comment holds the capture metadata as JSON.",
        );
        push_option(&mut body, OPT_END, &[]);
        self.write_block(BLOCK_SECTION_HEADER, &body)?;

        let mut body = Vec::new();
        body.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes()); // reserved
        body.extend_from_slice(&0u32.to_le_bytes()); // snap length: no limit
        push_option(&mut body, OPT_IF_NAME, b"apiscope");
        push_option(
            &mut body,
            OPT_IF_DESCRIPTION,
            b"TLS plaintext from uprobes on Go crypto/tls",
        );
        push_option(&mut body, OPT_IF_TSRESOL, &[9]); // timestamps in nanoseconds
        push_option(&mut body, OPT_END, &[]);
        self.write_block(BLOCK_INTERFACE_DESCRIPTION, &body)
    }

    fn write_packet(&mut self, packet: &SyntheticPacket) -> Result<()> {
        if packet.comment.len() > usize::from(u16::MAX) {
            bail!(
                "packet metadata of {} bytes does not fit a pcapng option",
                packet.comment.len()
            );
        }
        let wall_ns = (i128::from(packet.timestamp_ns) + i128::from(self.realtime_offset_ns))
            .clamp(0, i128::from(u64::MAX)) as u64;
        let mut body = std::mem::take(&mut self.block);
        body.clear();
        body.extend_from_slice(&0u32.to_le_bytes()); // interface 0
        body.extend_from_slice(&((wall_ns >> 32) as u32).to_le_bytes());
        body.extend_from_slice(&(wall_ns as u32).to_le_bytes());
        let length = (packet.bytes.len() as u32).to_le_bytes();
        body.extend_from_slice(&length); // captured length
        body.extend_from_slice(&length); // original length
        body.extend_from_slice(&packet.bytes);
        pad_to_4(&mut body);
        push_option(&mut body, OPT_COMMENT, packet.comment.as_bytes());
        push_option(&mut body, OPT_END, &[]);
        let result = self.write_block(BLOCK_ENHANCED_PACKET, &body);
        self.block = body;
        result
    }

    fn write_block(&mut self, block_type: u32, body: &[u8]) -> Result<()> {
        let total_len = ((BLOCK_OVERHEAD + body.len()) as u32).to_le_bytes();
        self.out.write_all(&block_type.to_le_bytes())?;
        self.out.write_all(&total_len)?;
        self.out.write_all(body)?;
        self.out.write_all(&total_len)?;
        Ok(())
    }
}

fn push_option(body: &mut Vec<u8>, code: u16, value: &[u8]) {
    body.extend_from_slice(&code.to_le_bytes());
    body.extend_from_slice(&(value.len() as u16).to_le_bytes());
    body.extend_from_slice(value);
    pad_to_4(body);
}

fn pad_to_4(body: &mut Vec<u8>) {
    body.resize(body.len().next_multiple_of(4), 0);
}

/// CLOCK_REALTIME - CLOCK_MONOTONIC in nanoseconds, now.
pub fn realtime_minus_monotonic_ns() -> i64 {
    fn now_ns(clock: libc::clockid_t) -> i128 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; both clock ids exist on every Linux.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
    }
    // Realtime read between two monotonic reads: their midpoint is the best matching instant.
    let before = now_ns(libc::CLOCK_MONOTONIC);
    let realtime = now_ns(libc::CLOCK_REALTIME);
    let after = now_ns(libc::CLOCK_MONOTONIC);
    (realtime - (before + after) / 2).clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// Why a recording could not be read; `offset` is the byte offset of the block at fault.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("I/O error at offset {offset}: {source}")]
    Io {
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("malformed recording at offset {offset}: {reason}")]
    Malformed { offset: u64, reason: String },
}

impl ReadError {
    pub fn offset(&self) -> u64 {
        match self {
            ReadError::Io { offset, .. } | ReadError::Malformed { offset, .. } => *offset,
        }
    }
}

fn malformed(offset: u64, reason: impl Into<String>) -> ReadError {
    ReadError::Malformed {
        offset,
        reason: reason.into(),
    }
}

/// Reads back the chunks of a recording, in the order written, streaming: memory stays bounded
/// by one block and one chunk (both at most 64 MiB).
///
/// Packets without apiscope metadata (another tool's capture, or packets merged in) are skipped
/// and counted in [`ChunkReader::skipped_packets`]; apiscope's own synthetic packets (handshakes)
/// are skipped silently. Iteration stops after the first error.
pub struct ChunkReader<R: Read> {
    input: R,
    /// Offset of the next block.
    offset: u64,
    section: Option<Section>,
    pending: Option<PendingChunk>,
    skipped_packets: u64,
    finished: bool,
    realtime_offset_ns: Option<i64>,
}

/// State of the current pcapng section.
struct Section {
    big_endian: bool,
    /// Link type of each interface, by interface id.
    linktypes: Vec<u16>,
}

impl Section {
    fn u16_at(&self, bytes: &[u8], at: usize) -> Option<u16> {
        let raw: [u8; 2] = bytes.get(at..at + 2)?.try_into().ok()?;
        Some(if self.big_endian {
            u16::from_be_bytes(raw)
        } else {
            u16::from_le_bytes(raw)
        })
    }

    fn u32_at(&self, bytes: &[u8], at: usize) -> Option<u32> {
        let raw: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        Some(if self.big_endian {
            u32::from_be_bytes(raw)
        } else {
            u32::from_le_bytes(raw)
        })
    }

    /// The values of all `opt_comment` options in an options area.
    fn comments<'a>(&self, mut options: &'a [u8]) -> Result<Vec<&'a [u8]>, String> {
        let mut comments = Vec::new();
        while options.len() >= 4 {
            let code = self.u16_at(options, 0).unwrap_or(OPT_END);
            let len = usize::from(self.u16_at(options, 2).unwrap_or(0));
            if code == OPT_END {
                break;
            }
            let value = options.get(4..4 + len).ok_or_else(|| {
                format!(
                    "option {code} of {len} bytes overruns the block ({} bytes left)",
                    options.len() - 4
                )
            })?;
            if code == OPT_COMMENT {
                comments.push(value);
            }
            options = options
                .get(4 + len.next_multiple_of(4)..)
                .unwrap_or_default();
        }
        Ok(comments)
    }
}

/// A chunk whose segments are being collected.
struct PendingChunk {
    meta: SegmentMeta,
    data: Vec<u8>,
    /// Offset of the block holding its first segment.
    offset: u64,
}

struct Block {
    block_type: u32,
    /// Everything between the length field and the trailing length.
    body: Vec<u8>,
}

impl ChunkReader<BufReader<File>> {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file =
            File::open(path).with_context(|| format!("opening recording {}", path.display()))?;
        Ok(ChunkReader::new(BufReader::new(file)))
    }
}

impl<R: Read> ChunkReader<R> {
    pub fn new(input: R) -> Self {
        ChunkReader {
            input,
            offset: 0,
            section: None,
            pending: None,
            skipped_packets: 0,
            finished: false,
            realtime_offset_ns: None,
        }
    }

    /// CLOCK_REALTIME - CLOCK_MONOTONIC of the recording host, from the first chunk's packet time
    /// (the writer stamps packets with wall-clock nanoseconds); `None` before the first chunk.
    pub fn realtime_offset_ns(&self) -> Option<i64> {
        self.realtime_offset_ns
    }

    /// Packets read so far that carried no apiscope metadata.
    pub fn skipped_packets(&self) -> u64 {
        self.skipped_packets
    }

    fn next_chunk(&mut self) -> Result<Option<TlsChunk>, ReadError> {
        loop {
            let offset = self.offset;
            let Some(block) = self.read_block()? else {
                if let Some(pending) = &self.pending {
                    return Err(malformed(
                        pending.offset,
                        format!(
                            "file ends inside chunk {}: it has {} segments, only {} are there",
                            pending.meta.chunk,
                            pending.meta.segments,
                            pending.meta.segment + 1
                        ),
                    ));
                }
                if self.section.is_none() {
                    return Err(malformed(0, "empty file: no pcapng Section Header Block"));
                }
                return Ok(None);
            };
            match block.block_type {
                BLOCK_SECTION_HEADER => self.start_section(offset, &block.body)?,
                BLOCK_INTERFACE_DESCRIPTION => {
                    let section = self
                        .section
                        .as_mut()
                        .ok_or_else(|| malformed(offset, "no section"))?;
                    let linktype = section.u16_at(&block.body, 0).ok_or_else(|| {
                        malformed(offset, "Interface Description Block too short")
                    })?;
                    section.linktypes.push(linktype);
                }
                BLOCK_ENHANCED_PACKET => {
                    if let Some(chunk) = self.read_packet(offset, &block.body)? {
                        return Ok(Some(chunk));
                    }
                }
                // Neither can carry apiscope metadata.
                BLOCK_SIMPLE_PACKET | BLOCK_OBSOLETE_PACKET => self.skipped_packets += 1,
                // Name resolution, statistics, custom blocks...: nothing for us.
                _ => {}
            }
        }
    }

    /// Reads the next whole block, or `None` at a clean end of file.
    fn read_block(&mut self) -> Result<Option<Block>, ReadError> {
        let offset = self.offset;
        let io_error = |source| ReadError::Io { offset, source };
        let mut header = [0u8; 8];
        let got = read_up_to(&mut self.input, &mut header).map_err(io_error)?;
        if got == 0 {
            return Ok(None);
        }
        if got < header.len() {
            return Err(malformed(
                offset,
                format!("file ends inside a block header ({got} of 8 bytes)"),
            ));
        }
        let block_type_bytes: [u8; 4] = [header[0], header[1], header[2], header[3]];
        let mut body_prefix = Vec::new();
        // The SHB's type reads the same in both byte orders; its byte-order magic, right after
        // the length, says how to read everything in the section, the length included.
        let big_endian = if u32::from_le_bytes(block_type_bytes) == BLOCK_SECTION_HEADER {
            let mut magic = [0u8; 4];
            if read_up_to(&mut self.input, &mut magic).map_err(io_error)? < magic.len() {
                return Err(malformed(offset, "file ends inside a Section Header Block"));
            }
            body_prefix.extend_from_slice(&magic);
            match magic {
                m if u32::from_le_bytes(m) == BYTE_ORDER_MAGIC => false,
                m if u32::from_be_bytes(m) == BYTE_ORDER_MAGIC => true,
                m => {
                    return Err(malformed(
                        offset,
                        format!("bad byte-order magic {m:02x?} in Section Header Block"),
                    ));
                }
            }
        } else {
            match &self.section {
                Some(section) => section.big_endian,
                None => {
                    return Err(malformed(
                        offset,
                        format!(
                            "not a pcapng file: starts with block type {block_type_bytes:02x?}, not a Section Header Block"
                        ),
                    ));
                }
            }
        };
        let read_u32 = |bytes: [u8; 4]| {
            if big_endian {
                u32::from_be_bytes(bytes)
            } else {
                u32::from_le_bytes(bytes)
            }
        };
        let block_type = read_u32(block_type_bytes);
        let total_len = read_u32([header[4], header[5], header[6], header[7]]);
        let minimum = if block_type == BLOCK_SECTION_HEADER {
            28
        } else {
            BLOCK_OVERHEAD as u32
        };
        if total_len < minimum || total_len % 4 != 0 || total_len > MAX_BLOCK_LEN {
            return Err(malformed(
                offset,
                format!(
                    "block length {total_len} is invalid (a multiple of 4 from {minimum} to {MAX_BLOCK_LEN} expected)"
                ),
            ));
        }
        // Read through `take` so that a lying length costs only the bytes really there.
        let rest_len = u64::from(total_len) - 8 - body_prefix.len() as u64;
        let mut rest = body_prefix;
        (&mut self.input)
            .take(rest_len)
            .read_to_end(&mut rest)
            .map_err(io_error)?;
        let have = rest.len() as u64 + 8;
        if have < u64::from(total_len) {
            return Err(malformed(
                offset,
                format!(
                    "file ends inside a block: it declares {total_len} bytes, only {have} are there"
                ),
            ));
        }
        let trailer_at = rest.len() - 4;
        let trailer = read_u32([
            rest[trailer_at],
            rest[trailer_at + 1],
            rest[trailer_at + 2],
            rest[trailer_at + 3],
        ]);
        if trailer != total_len {
            return Err(malformed(
                offset,
                format!("block length {total_len} and trailing length {trailer} differ"),
            ));
        }
        rest.truncate(trailer_at);
        self.offset += u64::from(total_len);
        if block_type == BLOCK_SECTION_HEADER {
            self.section = Some(Section {
                big_endian,
                linktypes: Vec::new(),
            });
        }
        Ok(Some(Block {
            block_type,
            body: rest,
        }))
    }

    fn start_section(&mut self, offset: u64, body: &[u8]) -> Result<(), ReadError> {
        if let Some(pending) = &self.pending {
            return Err(malformed(
                offset,
                format!(
                    "new section while chunk {} (at offset {}) is incomplete",
                    pending.meta.chunk, pending.offset
                ),
            ));
        }
        let section = self
            .section
            .as_ref()
            .ok_or_else(|| malformed(offset, "no section"))?;
        let major = section.u16_at(body, 4).unwrap_or(0);
        if major != 1 {
            return Err(malformed(
                offset,
                format!("pcapng major version {major} is not supported (1 is)"),
            ));
        }
        Ok(())
    }

    /// Handles an Enhanced Packet Block: returns a chunk when this packet completes one.
    fn read_packet(&mut self, offset: u64, body: &[u8]) -> Result<Option<TlsChunk>, ReadError> {
        let section = self
            .section
            .as_ref()
            .ok_or_else(|| malformed(offset, "no section"))?;
        let field = |at| {
            section
                .u32_at(body, at)
                .ok_or_else(|| malformed(offset, "Enhanced Packet Block too short"))
        };
        let interface = field(0)? as usize;
        let captured_len = field(12)? as usize;
        let original_len = field(16)? as usize;
        let packet_end = 20 + captured_len;
        let packet = body.get(20..packet_end).ok_or_else(|| {
            malformed(
                offset,
                format!("captured length {captured_len} overruns the Enhanced Packet Block"),
            )
        })?;
        let options = body
            .get(packet_end.next_multiple_of(4)..)
            .unwrap_or_default();
        let comments = section
            .comments(options)
            .map_err(|reason| malformed(offset, reason))?;
        let mut meta = None;
        for comment in comments {
            // A comment that is not UTF-8 is not ours.
            let Ok(comment) = std::str::from_utf8(comment) else {
                continue;
            };
            match parse_comment(comment).map_err(|reason| malformed(offset, reason))? {
                PacketComment::Foreign => continue,
                PacketComment::Synthetic => return Ok(None),
                PacketComment::Segment(segment) => {
                    meta = Some(segment);
                    break;
                }
            }
        }
        let Some(meta) = meta else {
            self.skipped_packets += 1;
            return Ok(None);
        };
        if self.realtime_offset_ns.is_none() {
            let wall_ns = (u64::from(field(4)?) << 32) | u64::from(field(8)?);
            self.realtime_offset_ns =
                i64::try_from(i128::from(wall_ns) - i128::from(meta.timestamp_ns)).ok();
        }
        let linktype = *section.linktypes.get(interface).ok_or_else(|| {
            malformed(
                offset,
                format!(
                    "packet on interface {interface}, but the section describes {}",
                    section.linktypes.len()
                ),
            )
        })?;
        if captured_len < original_len {
            return Err(malformed(
                offset,
                format!(
                    "packet of chunk {} was cut to {captured_len} of {original_len} bytes",
                    meta.chunk
                ),
            ));
        }
        let payload = tcp_payload(linktype, packet).map_err(|reason| {
            malformed(offset, format!("packet of chunk {}: {reason}", meta.chunk))
        })?;
        self.add_segment(offset, meta, payload)
    }

    fn add_segment(
        &mut self,
        offset: u64,
        meta: SegmentMeta,
        payload: &[u8],
    ) -> Result<Option<TlsChunk>, ReadError> {
        if meta.segment >= meta.segments {
            return Err(malformed(
                offset,
                format!(
                    "chunk {}: segment {} of {} is out of range",
                    meta.chunk, meta.segment, meta.segments
                ),
            ));
        }
        let mut pending = match self.pending.take() {
            None if meta.segment == 0 => PendingChunk {
                meta: meta.clone(),
                data: Vec::new(),
                offset,
            },
            None => {
                return Err(malformed(
                    offset,
                    format!(
                        "segment {} of chunk {} without the segments before it",
                        meta.segment, meta.chunk
                    ),
                ));
            }
            Some(pending) => {
                let expected = SegmentMeta {
                    segment: pending.meta.segment + 1,
                    ..pending.meta.clone()
                };
                if meta != expected {
                    return Err(malformed(
                        offset,
                        format!(
                            "expected segment {} of chunk {}, found segment {} of chunk {} (or different metadata)",
                            expected.segment, expected.chunk, meta.segment, meta.chunk
                        ),
                    ));
                }
                PendingChunk { meta, ..pending }
            }
        };
        if pending.data.len() + payload.len() > MAX_CHUNK_DATA {
            return Err(malformed(
                offset,
                format!(
                    "chunk {} exceeds {MAX_CHUNK_DATA} bytes",
                    pending.meta.chunk
                ),
            ));
        }
        pending.data.extend_from_slice(payload);
        if pending.meta.segment + 1 < pending.meta.segments {
            self.pending = Some(pending);
            return Ok(None);
        }
        Ok(Some(pending.meta.into_chunk(pending.data)))
    }
}

impl<R: Read> Iterator for ChunkReader<R> {
    type Item = Result<TlsChunk, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let result = self.next_chunk().transpose();
        if !matches!(result, Some(Ok(_))) {
            self.finished = true;
        }
        result
    }
}

/// Reads as many bytes as are there, up to `buf.len()`; fewer only at end of file.
fn read_up_to(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// All chunks of the recording at `path`, in the order written (see [`ChunkReader`]).
pub fn read_chunks(path: impl AsRef<Path>) -> Result<Vec<TlsChunk>> {
    let path = path.as_ref();
    let mut reader = ChunkReader::open(path)?;
    let chunks = reader
        .by_ref()
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("reading recording {}", path.display()))?;
    if reader.skipped_packets() > 0 {
        tracing::warn!(
            path = %path.display(),
            skipped = reader.skipped_packets(),
            "packets without apiscope metadata were skipped"
        );
    }
    Ok(chunks)
}
