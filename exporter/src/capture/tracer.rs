//! Loads the eBPF programs, attaches them to each target process, and decodes ring-buffer events.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use apiscope_common::{
    ChunkHeader, ChunkKind, GoOffsets, KERNEL_COUNTER_SLOTS, KernelCounter, MAX_CHUNK_DATA,
    PROBE_SLOTS, Probe, ProcessAddress, WIRE_HPACK_LOST, WIRE_HPACK_REQUESTS, WIRE_HPACK_RESPONSES,
};
use aya::Ebpf;
use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::UProbe;
use aya::programs::uprobe::{UProbeAttachLocation, UProbeLinkId, UProbeScope};
use iced_x86::Register;

use super::chunk::TlsChunk;
use super::config::{CaptureConfig, ReadProbeMode};
use super::discovery::TargetProcess;
use super::gobinary::{
    GoBinary, Http2Offsets, Http2OffsetsSource, VERIFIED_GO_MINOR_VERSIONS, http2_offsets,
    newer_release_offsets, std_http2_offsets, struct_offsets,
};
use super::hook_switches::HookState;
use super::metrics::{CaptureMetrics, HookSwitchLabels};

/// Go functions and the program attached to each. Read gets `tls_read_record` after each of its
/// calls to readRecordOrCCS, or, where its code is not recognised, `tls_read_return` at every
/// RET (and nothing at its entry either way: see `read_spills_its_arguments`).
const TLS_WRITE: &str = "crypto/tls.(*Conn).Write";
const TLS_READ: &str = "crypto/tls.(*Conn).Read";
const TLS_CLOSE: &str = "crypto/tls.(*Conn).Close";

/// Header-level hooks in `golang.org/x/net/http2`, matched by suffix (vendored copies carry a
/// prefix such as `k8s.io/kubernetes/vendor/`). The standard library's bundled copy of Go 1.26
/// and before (`net/http.(*http2serverConn)...`) does not match: kube-apiserver serves with x/net.
const PROCESS_HEADERS: &str = "golang.org/x/net/http2.(*serverConn).processHeaders";
const WRITE_RES_HEADERS: &str = "golang.org/x/net/http2.(*writeResHeaders).writeFrame";
const HPACK_WRITE_FIELD: &str = "golang.org/x/net/http2/hpack.(*Encoder).WriteField";
const XNET_MODULE: &str = "golang.org/x/net";
/// From Go 1.27 x/net's server wraps the standard library's own (x/net's code moved to
/// `net/http/internal/http2`, with the standard library's vendored hpack): the same hooks there.
const STD_HTTP2: &str = "net/http/internal/http2";
const STD_HPACK_WRITE_FIELD: &str = "vendor/golang.org/x/net/http2/hpack.(*Encoder).WriteField";

/// Where the header-level hooks go in one binary.
#[derive(Clone, Debug)]
pub struct HeaderHookPoints {
    pub offsets: Http2Offsets,
    pub offsets_source: Http2OffsetsSource,
    /// The x/net version from the build info, if the binary names one.
    pub xnet_version: Option<String>,
    pub process_headers: u64,
    pub write_res_headers: u64,
    pub write_res_headers_returns: Vec<u64>,
    pub write_field: u64,
    /// Responses are read in one hit from `writeResHeaders`' header map (`http2_response_headers`)
    /// when the binary's maps are swiss tables of a known layout (Go 1.24+, not built with
    /// `GOEXPERIMENT=noswissmap`); otherwise field by field (`hpack_write_field`, 1 + n + 1 hits).
    pub response_from_header_map: bool,
}

impl HeaderHookPoints {
    /// Finds the hooks' functions: all three from the same copy of x/net (the one whose
    /// `serverConn` exists), so the encoder hooked is the one the server's writer calls; or,
    /// without one, from the standard library's HTTP/2 server (Go 1.27+).
    pub fn find(binary: &GoBinary) -> Result<Self> {
        let candidates = binary.functions_with_suffix(PROCESS_HEADERS);
        let std_process_headers = format!("{STD_HTTP2}.(*serverConn).processHeaders");
        let (process_headers, write_res_headers_name, write_field_name) =
            match candidates.as_slice() {
                [one] => {
                    let prefix = &one.name[..one.name.len() - PROCESS_HEADERS.len()];
                    (
                        one.clone(),
                        format!("{prefix}{WRITE_RES_HEADERS}"),
                        format!("{prefix}{HPACK_WRITE_FIELD}"),
                    )
                }
                [] => match binary.function(&std_process_headers) {
                    Some(std) => (
                        std,
                        format!("{STD_HTTP2}.(*writeResHeaders).writeFrame"),
                        STD_HPACK_WRITE_FIELD.to_string(),
                    ),
                    None => bail!(
                        "{PROCESS_HEADERS} not found (no x/net HTTP/2 server in this binary, nor \
                     {std_process_headers})"
                    ),
                },
                many => bail!(
                    "{PROCESS_HEADERS}: {} copies, cannot tell which one serves",
                    many.len()
                ),
            };
        let from_std = process_headers.name == std_process_headers;
        let function = |name: &str| {
            binary
                .function(name)
                .ok_or_else(|| anyhow!("{name} not found"))
        };
        let write_res_headers = function(&write_res_headers_name)?;
        let write_field = function(&write_field_name)?;
        let write_res_headers_returns = binary.ret_file_offsets(&write_res_headers)?;
        if write_res_headers_returns.is_empty() {
            bail!("{write_res_headers_name}: no RET instruction found");
        }
        let xnet_version = binary.dependency_version(XNET_MODULE).map(str::to_owned);
        let (offsets, offsets_source) = if from_std {
            let version = binary
                .go_version()
                .ok_or_else(|| anyhow!("no Go version for the standard library's HTTP/2"))?;
            std_http2_offsets(version)
        } else {
            http2_offsets(xnet_version.as_deref())
        }
        .map_err(|e| anyhow!(e))?;
        let swiss_maps = binary
            .go_version()
            .and_then(|version| struct_offsets(version).ok())
            .is_some_and(|go| go.go_map_header_group_size != 0);
        let no_swiss_experiment = binary
            .build_setting("GOEXPERIMENT")
            .is_some_and(|experiments| experiments.split(',').any(|e| e == "noswissmap"));
        Ok(HeaderHookPoints {
            response_from_header_map: swiss_maps && !no_swiss_experiment,
            offsets,
            offsets_source,
            xnet_version,
            process_headers: binary.entry_probe_file_offset(&process_headers)?,
            write_res_headers: binary.entry_probe_file_offset(&write_res_headers)?,
            write_res_headers_returns,
            write_field: binary.entry_probe_file_offset(&write_field)?,
        })
    }

    fn attachments(&self) -> Vec<(&'static str, u64)> {
        let mut all = vec![("http2_process_headers", self.process_headers)];
        if self.response_from_header_map {
            all.push(("http2_response_headers", self.write_res_headers));
            return all;
        }
        all.push(("http2_write_res_headers_entry", self.write_res_headers));
        all.push(("hpack_write_field", self.write_field));
        all.extend(
            self.write_res_headers_returns
                .iter()
                .map(|&ret| ("http2_write_res_headers_return", ret)),
        );
        all
    }
}

/// How one binary's `crypto/tls.(*Conn).Read` is probed.
#[derive(Clone, Debug)]
pub enum ReadProbes {
    /// Once per TLS record: `tls_read_record` after each call to readRecordOrCCS (file offsets).
    Records { after_calls: Vec<u64> },
    /// Once per Read call: `tls_read_return` at each RET, because `why` the record sites were
    /// not found.
    Returns { rets: Vec<u64>, why: String },
}

impl std::fmt::Display for ReadProbes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadProbes::Records { after_calls } => {
                write!(f, "once per TLS record ({} call sites)", after_calls.len())
            }
            ReadProbes::Returns { rets, why } => {
                write!(f, "at each of Read's {} RETs ({why})", rets.len())
            }
        }
    }
}

/// Where the probes go in one binary, found once per executable file (device, inode).
#[derive(Clone, Debug)]
pub struct ProbePoints {
    pub go_version: String,
    pub offsets: GoOffsets,
    pub write_entry: u64,
    pub reads: ReadProbes,
    pub close_entry: u64,
    /// The HTTP/2 header hooks, or why this binary cannot have them (TLS capture goes on).
    pub header_hooks: Result<HeaderHookPoints, String>,
    /// Built by a Go release newer than the offsets table: TLS capture only.
    pub newer_than_offsets_table: bool,
    /// Module dependencies and their versions from the build info (what later stages learn
    /// about the program from, e.g. its Kubernetes release).
    pub module_versions: BTreeMap<String, String>,
    /// Programs whose probe site the kernel single-steps (a second trap per hit, the costly
    /// kind: see `gobinary::probe_site`), with how many sites each; empty when every site is
    /// emulated.
    pub single_stepped: BTreeMap<&'static str, usize>,
}

impl ProbePoints {
    pub fn find(binary_path: &Path, read_probe: ReadProbeMode) -> Result<Self> {
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
        let (mut offsets, newer_than_offsets_table) = match struct_offsets(&version) {
            Ok(offsets) => (offsets, false),
            Err(error) => (newer_release_offsets(&version).ok_or(error)?, true),
        };
        let function = |name: &str| {
            binary.function(name).ok_or_else(|| {
                anyhow!(
                    "{}: function {name} not found in .gopclntab",
                    binary_path.display()
                )
            })
        };
        let read = function(TLS_READ)?;
        let frame_size = read_spills_its_arguments(&binary, &read)?;
        let record_sites = match read_probe {
            ReadProbeMode::Record => binary.record_read_sites(&read).map_err(|e| e.to_string()),
            ReadProbeMode::Return => Err("--read-probe return".to_string()),
        };
        let reads = match record_sites {
            Ok(sites) => {
                offsets.tls_conn_input = sites.conn_input;
                offsets.tls_read_frame_size = frame_size;
                ReadProbes::Records {
                    after_calls: sites.after_calls,
                }
            }
            Err(why) => {
                let rets = binary.ret_file_offsets(&read)?;
                if rets.is_empty() {
                    bail!("{TLS_READ}: no RET instruction found");
                }
                ReadProbes::Returns { rets, why }
            }
        };
        let header_hooks = if newer_than_offsets_table {
            Err(format!(
                "{version} is newer than the offsets table (go1.{}-go1.{}): TLS capture only, \
                 the header hooks need a verified row",
                VERIFIED_GO_MINOR_VERSIONS.start(),
                VERIFIED_GO_MINOR_VERSIONS.end()
            ))
        } else {
            HeaderHookPoints::find(&binary).map_err(|e| format!("{e:#}"))
        };
        let module_versions = binary
            .dependencies()
            .into_iter()
            .map(|(path, version)| (path.to_string(), version.to_string()))
            .collect();
        let mut points = ProbePoints {
            newer_than_offsets_table,
            module_versions,
            go_version: version.to_string(),
            offsets,
            header_hooks,
            write_entry: binary.entry_probe_file_offset(&function(TLS_WRITE)?)?,
            reads,
            close_entry: binary.entry_probe_file_offset(&function(TLS_CLOSE)?)?,
            single_stepped: BTreeMap::new(),
        };
        let hook_sites = points
            .header_hooks
            .as_ref()
            .map(HeaderHookPoints::attachments)
            .unwrap_or_default();
        for (program, site) in points.attachments().into_iter().chain(hook_sites) {
            if !binary.is_emulated_probe_site(site) {
                *points.single_stepped.entry(program).or_default() += 1;
            }
        }
        Ok(points)
    }

    /// (program name, file offset) for every uprobe this binary needs.
    fn attachments(&self) -> Vec<(&'static str, u64)> {
        let mut all = vec![
            ("tls_write_entry", self.write_entry),
            ("tls_close_entry", self.close_entry),
        ];
        match &self.reads {
            ReadProbes::Records { after_calls } => {
                all.extend(after_calls.iter().map(|&site| ("tls_read_record", site)))
            }
            ReadProbes::Returns { rets, .. } => {
                all.extend(rets.iter().map(|&ret| ("tls_read_return", ret)))
            }
        }
        all
    }
}

/// Both Read probes read Read's receiver (and `tls_read_return` its buffer) from their ABI
/// spill slots, so Read's prologue must store RAX, RBX and RCX there before its first call or
/// branch: then every later instruction finds them. Checked in the code of each binary (every
/// Go release from 1.17 does it, since Read keeps them live across its Handshake call); a
/// binary that does not is refused rather than read wrongly. Returns Read's frame size.
fn read_spills_its_arguments(binary: &GoBinary, read: &super::gobinary::GoFunction) -> Result<u64> {
    let prologue = binary.prologue(read)?;
    let spilled = [(0, Register::RAX), (8, Register::RBX), (16, Register::RCX)]
        .iter()
        .all(|&(slot, register)| prologue.spills(slot, register));
    if !spilled {
        bail!(
            "{TLS_READ}: its prologue does not store the receiver and buffer to their ABI \
             spill slots before its first call (found {:?}); this build cannot be probed",
            prologue.spilled
        );
    }
    Ok(prologue.frame_size)
}

struct AttachedProcess {
    target: TargetProcess,
    links: Vec<(&'static str, UProbeLinkId)>,
}

/// What [`Tracer::attach`] set up in one process.
#[derive(Clone, Debug)]
pub struct Attached {
    pub points: Arc<ProbePoints>,
    /// `Err(why)` when the process runs without the HTTP/2 header hooks.
    pub header_hooks: Result<(), String>,
}

/// The loaded eBPF object and what is attached where.
pub struct Tracer {
    ebpf: Ebpf,
    /// Held while `--probe-run-time` keeps the kernel's BPF run-time statistics on.
    _run_time_statistics: Option<OwnedFd>,
    attached: BTreeMap<u32, AttachedProcess>,
    probe_points: HashMap<(u64, u64), Arc<ProbePoints>>,
    read_probe: ReadProbeMode,
    metrics: Arc<CaptureMetrics>,
}

impl Tracer {
    pub fn load(config: &CaptureConfig, metrics: Arc<CaptureMetrics>) -> Result<Self> {
        let object = super::ebpf_object::load(config.ebpf_object.as_deref())?;
        let limit = config.capture_bytes_per_call();
        let mut ebpf = aya::EbpfLoader::new()
            .override_global("CAPTURE_BYTES_PER_CALL", &limit, true)
            .override_global("RING_WAKEUP_BYTES", &config.ring_wakeup_bytes, true)
            .map_max_entries("EVENTS", config.ring_buffer_bytes)
            .load(&object)
            .context("loading the eBPF object (needs root or CAP_BPF + CAP_PERFMON)")?;
        for name in Probe::ALL.map(Probe::program) {
            let program: &mut UProbe = ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("eBPF object has no program {name}"))?
                .try_into()?;
            program
                .load()
                .with_context(|| format!("verifier rejected {name}"))?;
        }
        // After loading: a verifier rejection is reported as such, not as a statistics error.
        let run_time_statistics = config
            .probe_run_time
            .then(|| aya::sys::enable_stats(aya::sys::Stats::RunTime))
            .transpose()
            .context(
                "--probe-run-time: turning on BPF run-time statistics (BPF_ENABLE_STATS needs \
                 CAP_SYS_ADMIN and Linux 5.8+)",
            )?;
        Ok(Tracer {
            ebpf,
            _run_time_statistics: run_time_statistics,
            attached: BTreeMap::new(),
            probe_points: HashMap::new(),
            read_probe: config.read_probe,
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

    /// Attaches every probe to one process. On failure nothing stays attached; the header hooks
    /// alone failing leaves the TLS probes in place (reported in [`Attached::header_hooks`]).
    pub fn attach(&mut self, target: &TargetProcess) -> Result<Attached> {
        let exe = target.exe_link();
        let meta = std::fs::metadata(&exe).with_context(|| format!("stat {}", exe.display()))?;
        let key = (meta.dev(), meta.ino());
        let points = match self.probe_points.get(&key) {
            Some(points) => points.clone(),
            None => {
                let points = Arc::new(ProbePoints::find(&exe, self.read_probe)?);
                self.probe_points.insert(key, points.clone());
                points
            }
        };
        let pid = NonZeroU32::new(target.pid).ok_or_else(|| anyhow!("pid 0"))?;
        // Offsets first: the pid's presence in GO_OFFSETS switches its probes on. The header
        // hooks stay off (http2_enabled = 0) until they are attached.
        self.set_offsets(target.pid, points.offsets)?;

        let mut links = Vec::new();
        let failure = self.attach_all(&points.attachments(), &exe, pid, &mut links);
        let mut attached = AttachedProcess {
            target: target.clone(),
            links,
        };
        if let Err(error) = failure {
            self.release(attached);
            return Err(error);
        }
        let header_hooks = match &points.header_hooks {
            Ok(hooks) => {
                let mut hook_links = Vec::new();
                match self.attach_all(&hooks.attachments(), &exe, pid, &mut hook_links) {
                    Ok(()) => {
                        let mut offsets = points.offsets;
                        hooks.offsets.apply(&mut offsets);
                        attached.links.extend(hook_links);
                        self.set_offsets(target.pid, offsets)
                    }
                    Err(error) => {
                        self.detach_links(hook_links);
                        Err(error)
                    }
                }
                .map_err(|e| format!("{e:#}"))
            }
            Err(why) => Err(why.clone()),
        };
        if header_hooks.is_err() {
            self.metrics.header_hooks_unavailable.inc();
        }
        if points.newer_than_offsets_table {
            self.metrics.newer_than_offsets_table.inc();
        }
        self.attached.insert(target.pid, attached);
        self.metrics
            .attached_processes
            .set(self.attached.len() as i64);
        Ok(Attached {
            points,
            header_hooks,
        })
    }

    fn set_offsets(&mut self, pid: u32, offsets: GoOffsets) -> Result<()> {
        let mut map: BpfHashMap<_, u32, GoOffsets> = BpfHashMap::try_from(
            self.ebpf
                .map_mut("GO_OFFSETS")
                .ok_or_else(|| anyhow!("no GO_OFFSETS map"))?,
        )?;
        map.insert(pid, offsets, 0)?;
        Ok(())
    }

    /// Attaches each (program, file offset); stops at the first failure, keeping the links made
    /// so far in `links` for the caller to release.
    fn attach_all(
        &mut self,
        attachments: &[(&'static str, u64)],
        exe: &Path,
        pid: NonZeroU32,
        links: &mut Vec<(&'static str, UProbeLinkId)>,
    ) -> Result<()> {
        for &(name, offset) in attachments {
            let program: &mut UProbe = self
                .ebpf
                .program_mut(name)
                .expect("loaded above")
                .try_into()?;
            let link = program
                .attach(
                    UProbeAttachLocation::AbsoluteOffset(offset),
                    exe,
                    UProbeScope::OneProcess(pid),
                )
                .map_err(|e| {
                    anyhow!(e).context(format!("attaching {name} at file offset {offset:#x}"))
                })?;
            links.push((name, link));
        }
        Ok(())
    }

    /// The programs attached to a process, one entry per uprobe.
    pub fn attached_probes(&self, pid: u32) -> Vec<&'static str> {
        self.attached
            .get(&pid)
            .map(|attached| attached.links.iter().map(|(name, _)| *name).collect())
            .unwrap_or_default()
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

    fn detach_links(&mut self, links: Vec<(&'static str, UProbeLinkId)>) {
        for (name, link) in links {
            if let Some(Ok(program)) = self.ebpf.program_mut(name).map(<&mut UProbe>::try_from) {
                // A process that has exited may already have lost its probes: nothing to undo.
                let _ = program.detach(link);
            }
        }
    }

    fn release(&mut self, attached: AttachedProcess) {
        self.detach_links(attached.links);
        let offsets = self
            .ebpf
            .map_mut("GO_OFFSETS")
            .map(BpfHashMap::<_, u32, GoOffsets>::try_from);
        if let Some(Ok(mut offsets)) = offsets {
            let _ = offsets.remove(&attached.target.pid);
        }
    }

    /// Tells the header hooks which connections the wire decoder covers (see
    /// [`super::hook_switches`]). `Off` only creates an entry, so it never overrides the
    /// tombstone of a loss the kernel side saw first; `On` is that tombstone.
    pub fn apply_hook_switches(&mut self, switches: HashMap<(u32, u64), HookState>) {
        if switches.is_empty() {
            return;
        }
        let Some(map) = self.ebpf.map_mut("WIRE_HPACK_KNOWN") else {
            return;
        };
        let Ok(mut map) = BpfHashMap::<_, ProcessAddress, u32>::try_from(map) else {
            return;
        };
        for ((pid, addr), state) in switches {
            let key = ProcessAddress { addr, pid, _pad: 0 };
            let (value, flags, label) = match state {
                HookState::Off => (
                    WIRE_HPACK_REQUESTS | WIRE_HPACK_RESPONSES,
                    BPF_NOEXIST,
                    "off",
                ),
                HookState::On => (WIRE_HPACK_LOST, 0, "on"),
            };
            if map.insert(key, value, flags).is_ok() {
                self.metrics
                    .header_hook_switches
                    .get_or_create(&HookSwitchLabels { state: label })
                    .inc();
            }
        }
    }

    /// Sums the kernel side's per-CPU counters.
    pub fn kernel_counters(&self) -> Result<[u64; KERNEL_COUNTER_SLOTS as usize]> {
        self.per_cpu_sums("COUNTERS")
    }

    /// Hits per probe since load, summed over CPUs, in `Probe::ALL` order.
    pub fn probe_hits(&self) -> Result<[u64; PROBE_SLOTS as usize]> {
        self.per_cpu_sums("PROBE_HITS")
    }

    /// Nanoseconds spent inside each probe's program since load, in `Probe::ALL` order, as the
    /// kernel accounts them (`bpf_prog_info.run_time_ns`): they grow only while BPF run-time
    /// statistics are on (`--probe-run-time`, or `sysctl kernel.bpf_stats_enabled=1`).
    pub fn probe_run_time_ns(&self) -> Result<[u64; PROBE_SLOTS as usize]> {
        let mut times = [0u64; PROBE_SLOTS as usize];
        for (probe, time) in Probe::ALL.iter().zip(times.iter_mut()) {
            let name = probe.program();
            let program = self
                .ebpf
                .program(name)
                .ok_or_else(|| anyhow!("eBPF object has no program {name}"))?;
            let info = program
                .info()
                .with_context(|| format!("reading the kernel's information on {name}"))?;
            *time = u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX);
        }
        Ok(times)
    }

    fn per_cpu_sums<const SLOTS: usize>(&self, map: &str) -> Result<[u64; SLOTS]> {
        let array: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.ebpf.map(map).ok_or_else(|| anyhow!("no {map} map"))?)?;
        let mut sums = [0u64; SLOTS];
        for (slot, sum) in sums.iter_mut().enumerate() {
            *sum = array.get(&(slot as u32), 0)?.iter().sum();
        }
        Ok(sums)
    }

    pub fn kernel_counter(&self, counter: KernelCounter) -> u64 {
        self.kernel_counters()
            .map(|c| c[counter as usize])
            .unwrap_or(0)
    }
}

/// `bpf_map_update_elem` flag: create the entry, fail if it exists (linux/bpf.h).
const BPF_NOEXIST: u64 = 1;

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
/// connection is forgotten and counted. A Read that returns after its connection's Close (the
/// reading goroutine was already waiting) re-creates the entry; so an entry whose remote
/// address differs from a chunk's is a new connection at a reused `*tls.Conn` address, not the
/// old one continued.
pub struct ConnectionTable {
    first_seen: HashMap<(u32, u64), (u64, RemoteEnd)>,
    capacity: usize,
    metrics: Arc<CaptureMetrics>,
}

/// The peer's address and port as the kernel side read them (zero when unknown).
type RemoteEnd = ([u8; 16], u16);

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
        let sockets = &header.conn.sockets;
        let remote: RemoteEnd = (sockets.remote_addr, sockets.remote_port);
        let known = |end: &RemoteEnd| end.1 != 0;
        let first_seen = match self.first_seen.get(&key) {
            Some(&(t, seen)) if !(known(&seen) && known(&remote) && seen != remote) => t,
            _ => {
                // Only a full table pays for the scan.
                let full =
                    !self.first_seen.contains_key(&key) && self.first_seen.len() >= self.capacity;
                let oldest = full
                    .then(|| {
                        self.first_seen
                            .iter()
                            .min_by_key(|(_, (t, _))| *t)
                            .map(|(k, _)| *k)
                    })
                    .flatten();
                if let Some(oldest) = oldest {
                    self.first_seen.remove(&oldest);
                    self.metrics.connections_evicted.inc();
                }
                self.first_seen.insert(key, (header.timestamp_ns, remote));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn header(conn_ptr: u64, t: u64, kind: ChunkKind, remote_port: u16) -> ChunkHeader {
        let mut header = ChunkHeader {
            timestamp_ns: t,
            conn_ptr,
            pid: 7,
            kind: kind as u32,
            ..ChunkHeader::default()
        };
        header.conn.sockets.remote_port = remote_port;
        header
    }

    #[test]
    fn a_read_after_close_does_not_hand_its_identity_to_the_next_connection_there() {
        let mut table = ConnectionTable::new(16, Arc::new(CaptureMetrics::default()));
        let id = |table: &mut ConnectionTable, h: ChunkHeader| {
            table.chunk(&h, &[]).unwrap().connection.first_seen_ns
        };
        assert_eq!(id(&mut table, header(0x10, 1, ChunkKind::Read, 5000)), 1);
        assert_eq!(id(&mut table, header(0x10, 2, ChunkKind::Close, 5000)), 1);
        // The reading goroutine's last Read returns after the Close: an entry again...
        assert_eq!(id(&mut table, header(0x10, 3, ChunkKind::Read, 5000)), 3);
        // ...which a new connection at the same address, from another port, does not inherit.
        assert_eq!(id(&mut table, header(0x10, 9, ChunkKind::Read, 6000)), 9);
        assert_eq!(id(&mut table, header(0x10, 10, ChunkKind::Write, 6000)), 9);
        // Unknown addresses (fd not a TCP socket) keep the address as the identity.
        assert_eq!(id(&mut table, header(0x20, 11, ChunkKind::Read, 0)), 11);
        assert_eq!(id(&mut table, header(0x20, 12, ChunkKind::Read, 0)), 11);
    }
}
