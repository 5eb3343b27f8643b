//! Loads the eBPF programs, attaches them to each target process, and decodes ring-buffer events.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use apiscope_common::{
    ChunkHeader, ChunkKind, GoOffsets, KERNEL_COUNTER_SLOTS, KernelCounter, MAX_CHUNK_DATA,
    MAX_SEGMENTS_PER_CALL,
};
use aya::Ebpf;
use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::UProbe;
use aya::programs::uprobe::{UProbeAttachLocation, UProbeLinkId, UProbeScope};

use super::chunk::TlsChunk;
use super::config::CaptureConfig;
use super::discovery::TargetProcess;
use super::gobinary::{GoBinary, struct_offsets};
use super::metrics::CaptureMetrics;

/// Go functions and the program attached to each; Read also gets `tls_read_return` at every RET.
const TLS_WRITE: &str = "crypto/tls.(*Conn).Write";
const TLS_READ: &str = "crypto/tls.(*Conn).Read";
const TLS_CLOSE: &str = "crypto/tls.(*Conn).Close";

/// Where the probes go in one binary, found once per executable file (device, inode).
#[derive(Clone, Debug)]
pub struct ProbePoints {
    pub go_version: String,
    pub offsets: GoOffsets,
    pub write_entry: u64,
    pub read_entry: u64,
    pub read_returns: Vec<u64>,
    pub close_entry: u64,
}

impl ProbePoints {
    pub fn find(binary_path: &Path) -> Result<Self> {
        let binary = GoBinary::open(binary_path)
            .with_context(|| format!("reading Go binary {}", binary_path.display()))?;
        let version = binary
            .go_version()
            .ok_or_else(|| {
                anyhow!(
                    "{}: no Go build info (not a Go binary?)",
                    binary_path.display()
                )
            })?
            .clone();
        let offsets = struct_offsets(&version)?;
        let function = |name: &str| {
            binary.function(name).ok_or_else(|| {
                anyhow!(
                    "{}: function {name} not found in .gopclntab",
                    binary_path.display()
                )
            })
        };
        let read = function(TLS_READ)?;
        let read_returns = binary.ret_file_offsets(&read)?;
        if read_returns.is_empty() {
            bail!("{TLS_READ}: no RET instruction found");
        }
        Ok(ProbePoints {
            go_version: version.to_string(),
            offsets,
            write_entry: function(TLS_WRITE)?.file_offset,
            read_entry: read.file_offset,
            read_returns,
            close_entry: function(TLS_CLOSE)?.file_offset,
        })
    }

    /// (program name, file offset) for every uprobe this binary needs.
    fn attachments(&self) -> Vec<(&'static str, u64)> {
        let mut all = vec![
            ("tls_write_entry", self.write_entry),
            ("tls_read_entry", self.read_entry),
            ("tls_close_entry", self.close_entry),
        ];
        all.extend(
            self.read_returns
                .iter()
                .map(|&ret| ("tls_read_return", ret)),
        );
        all
    }
}

struct AttachedProcess {
    target: TargetProcess,
    links: Vec<(&'static str, UProbeLinkId)>,
}

/// The loaded eBPF object and what is attached where.
pub struct Tracer {
    ebpf: Ebpf,
    attached: BTreeMap<u32, AttachedProcess>,
    probe_points: HashMap<(u64, u64), Arc<ProbePoints>>,
    metrics: Arc<CaptureMetrics>,
}

const PROGRAMS: [&str; 4] = [
    "tls_write_entry",
    "tls_read_entry",
    "tls_read_return",
    "tls_close_entry",
];

impl Tracer {
    pub fn load(config: &CaptureConfig, metrics: Arc<CaptureMetrics>) -> Result<Self> {
        let object = super::ebpf_object::load(config.ebpf_object.as_deref())?;
        let limit = config.capture_bytes_per_call();
        let mut ebpf = aya::EbpfLoader::new()
            .override_global("CAPTURE_BYTES_PER_CALL", &limit, true)
            .map_max_entries("EVENTS", config.ring_buffer_bytes)
            .load(&object)
            .context("loading the eBPF object (needs root or CAP_BPF + CAP_PERFMON)")?;
        for name in PROGRAMS {
            let program: &mut UProbe = ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("eBPF object has no program {name}"))?
                .try_into()?;
            program
                .load()
                .with_context(|| format!("verifier rejected {name}"))?;
        }
        Ok(Tracer {
            ebpf,
            attached: BTreeMap::new(),
            probe_points: HashMap::new(),
            metrics,
        })
    }

    pub fn take_ring_buffer(&mut self) -> Result<RingBuf<MapData>> {
        let map = self
            .ebpf
            .take_map("EVENTS")
            .ok_or_else(|| anyhow!("no EVENTS map"))?;
        Ok(RingBuf::try_from(map)?)
    }

    pub fn attached_targets(&self) -> BTreeMap<u32, TargetProcess> {
        self.attached
            .iter()
            .map(|(pid, a)| (*pid, a.target.clone()))
            .collect()
    }

    /// Attaches every probe to one process. On failure nothing stays attached.
    pub fn attach(&mut self, target: &TargetProcess) -> Result<Arc<ProbePoints>> {
        let exe = target.exe_link();
        let meta = std::fs::metadata(&exe).with_context(|| format!("stat {}", exe.display()))?;
        let key = (meta.dev(), meta.ino());
        let points = match self.probe_points.get(&key) {
            Some(points) => points.clone(),
            None => {
                let points = Arc::new(ProbePoints::find(&exe)?);
                self.probe_points.insert(key, points.clone());
                points
            }
        };
        let pid = NonZeroU32::new(target.pid).ok_or_else(|| anyhow!("pid 0"))?;
        // Offsets first: the pid's presence in GO_OFFSETS switches its probes on.
        let mut offsets: BpfHashMap<_, u32, GoOffsets> = BpfHashMap::try_from(
            self.ebpf
                .map_mut("GO_OFFSETS")
                .ok_or_else(|| anyhow!("no GO_OFFSETS map"))?,
        )?;
        offsets.insert(target.pid, points.offsets, 0)?;

        let mut links = Vec::new();
        let mut failure = None;
        for (name, offset) in points.attachments() {
            let program: &mut UProbe = self
                .ebpf
                .program_mut(name)
                .expect("loaded above")
                .try_into()?;
            match program.attach(
                UProbeAttachLocation::AbsoluteOffset(offset),
                &exe,
                UProbeScope::OneProcess(pid),
            ) {
                Ok(link) => links.push((name, link)),
                Err(e) => {
                    failure = Some(
                        anyhow!(e).context(format!("attaching {name} at file offset {offset:#x}")),
                    );
                    break;
                }
            }
        }
        let attached = AttachedProcess {
            target: target.clone(),
            links,
        };
        if let Some(error) = failure {
            self.release(attached);
            return Err(error);
        }
        self.attached.insert(target.pid, attached);
        self.metrics
            .attached_processes
            .set(self.attached.len() as i64);
        Ok(points)
    }

    /// Detaches from a process (alive or gone).
    pub fn detach(&mut self, pid: u32) {
        if let Some(attached) = self.attached.remove(&pid) {
            self.release(attached);
        }
        self.metrics
            .attached_processes
            .set(self.attached.len() as i64);
    }

    fn release(&mut self, attached: AttachedProcess) {
        for (name, link) in attached.links {
            if let Some(Ok(program)) = self.ebpf.program_mut(name).map(<&mut UProbe>::try_from) {
                // A process that has exited may already have lost its probes: nothing to undo.
                let _ = program.detach(link);
            }
        }
        let offsets = self
            .ebpf
            .map_mut("GO_OFFSETS")
            .map(BpfHashMap::<_, u32, GoOffsets>::try_from);
        if let Some(Ok(mut offsets)) = offsets {
            let _ = offsets.remove(&attached.target.pid);
        }
    }

    /// Sums the kernel side's per-CPU counters.
    pub fn kernel_counters(&self) -> Result<[u64; KERNEL_COUNTER_SLOTS as usize]> {
        let counters: PerCpuArray<_, u64> = PerCpuArray::try_from(
            self.ebpf
                .map("COUNTERS")
                .ok_or_else(|| anyhow!("no COUNTERS map"))?,
        )?;
        let mut sums = [0u64; KERNEL_COUNTER_SLOTS as usize];
        for (slot, sum) in sums.iter_mut().enumerate() {
            *sum = counters.get(&(slot as u32), 0)?.iter().sum();
        }
        Ok(sums)
    }

    pub fn kernel_counter(&self, counter: KernelCounter) -> u64 {
        self.kernel_counters()
            .map(|c| c[counter as usize])
            .unwrap_or(0)
    }
}

/// Ring-buffer record -> header + payload. Malformed records (never expected from our own
/// programs, but the kernel boundary is checked anyway) are rejected, not guessed at.
pub fn parse_record(record: &[u8]) -> Result<(ChunkHeader, &[u8])> {
    let header_len = size_of::<ChunkHeader>();
    if record.len() < header_len {
        bail!(
            "ring buffer record of {} bytes is shorter than a chunk header",
            record.len()
        );
    }
    // SAFETY: length checked; ChunkHeader is plain old data, any bit pattern is valid.
    let header: ChunkHeader = unsafe { std::ptr::read_unaligned(record.as_ptr().cast()) };
    let payload = &record[header_len..];
    let captured = header.captured_len as usize;
    if captured > MAX_CHUNK_DATA || captured > payload.len() || header.captured_len > header.len {
        bail!(
            "chunk header claims {captured} captured of {} bytes, record holds {}",
            header.len,
            payload.len()
        );
    }
    if ChunkKind::from_u32(header.kind).is_none() {
        bail!("unknown chunk kind {}", header.kind);
    }
    Ok((header, &payload[..captured]))
}

/// Assigns connection identities: (pid, *tls.Conn) plus the time the connection was first seen,
/// forgotten at Close or when its process goes away. Bounded: past `capacity` the oldest
/// connection is forgotten and counted.
pub struct ConnectionTable {
    first_seen: HashMap<(u32, u64), u64>,
    capacity: usize,
    metrics: Arc<CaptureMetrics>,
}

impl ConnectionTable {
    pub fn new(capacity: usize, metrics: Arc<CaptureMetrics>) -> Self {
        ConnectionTable {
            first_seen: HashMap::new(),
            capacity: capacity.max(1),
            metrics,
        }
    }

    pub fn chunk(&mut self, header: &ChunkHeader, payload: &[u8]) -> Option<TlsChunk> {
        let key = (header.pid, header.conn_ptr);
        let first_seen = match self.first_seen.get(&key) {
            Some(&t) => t,
            None => {
                // Only a full table pays for the scan.
                let full = self.first_seen.len() >= self.capacity;
                let oldest = full
                    .then(|| {
                        self.first_seen
                            .iter()
                            .min_by_key(|(_, t)| **t)
                            .map(|(k, _)| *k)
                    })
                    .flatten();
                if let Some(oldest) = oldest {
                    self.first_seen.remove(&oldest);
                    self.metrics.connections_evicted.inc();
                }
                self.first_seen.insert(key, header.timestamp_ns);
                self.metrics.connections_seen.inc();
                header.timestamp_ns
            }
        };
        if header.kind == ChunkKind::Close as u32 {
            self.first_seen.remove(&key);
        }
        self.metrics
            .open_connections
            .set(self.first_seen.len() as i64);
        TlsChunk::from_kernel(header, payload, first_seen)
    }

    pub fn forget_process(&mut self, pid: u32) {
        self.first_seen.retain(|(p, _), _| *p != pid);
        self.metrics
            .open_connections
            .set(self.first_seen.len() as i64);
    }
}

/// Most bytes one Read/Write call can have copied.
pub const MAX_BYTES_PER_CALL: u32 = MAX_CHUNK_DATA as u32 * MAX_SEGMENTS_PER_CALL;
