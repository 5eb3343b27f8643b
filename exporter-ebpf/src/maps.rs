//! Every map and load-time setting of the eBPF object, and the counters' helpers.

use apiscope_common::{
    ChunkEvent, ConnInfo, GoOffsets, KERNEL_COUNTER_SLOTS, KernelCounter, MAX_CHUNK_DATA,
    MAX_SEGMENTS_PER_CALL, OpenHeaderBlock, PROBE_SLOTS, Probe, ProcessAddress, WIRE_HPACK_LOST,
};
use aya_ebpf::{
    bindings::pt_regs,
    macros::map,
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::ProbeContext,
};

/// Upper bound on payload bytes copied per `Read`/`Write` call; userspace may lower it at load time.
#[unsafe(no_mangle)]
pub static CAPTURE_BYTES_PER_CALL: u32 = MAX_CHUNK_DATA as u32 * MAX_SEGMENTS_PER_CALL;

/// Unread bytes in the ring buffer at which an event wakes the consumer; below it events are
/// written without a wakeup (the consumer drains on a short timer as well). A wakeup is an
/// interrupt raised from inside the traced thread, the costliest part of a program run when
/// the consumer keeps up. Userspace sets it at load time.
#[unsafe(no_mangle)]
pub static RING_WAKEUP_BYTES: u64 = 256 << 10;

/// Chunk events to userspace. Userspace sets the size at load time (`--ring-buffer-bytes`).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(16 << 20, 0);

/// One event under construction per CPU: too large for the 512-byte BPF stack.
#[map]
pub static SCRATCH: PerCpuArray<ChunkEvent> = PerCpuArray::with_max_entries(1, 0);

/// Struct offsets per traced pid; a pid missing here is not traced.
#[map]
pub static GO_OFFSETS: HashMap<u32, GoOffsets> = HashMap::with_max_entries(1024, 0);

/// Connection facts read once from Go memory, keyed by (pid, *tls.Conn); removed at Close.
#[map]
pub static CONNECTIONS: LruHashMap<ProcessAddress, ConnInfo> =
    LruHashMap::with_max_entries(65536, 0);

/// Server connections whose HPACK tables the wire decoder knows, by direction
/// (`WIRE_HPACK_REQUESTS` / `WIRE_HPACK_RESPONSES`), keyed by (pid, *tls.Conn). Written by
/// userspace; cleared here on any loss of the connection's bytes and at Close. The header hooks
/// return at once for a direction set here: they are needed only where the wire cannot be
/// decoded, and copying a header block out of Go memory is most of a request's program time.
#[map]
pub static WIRE_HPACK_KNOWN: LruHashMap<ProcessAddress, u32> =
    LruHashMap::with_max_entries(65536, 0);

/// A request header block under construction per CPU (too large for the stack); also the
/// template a response block is copied from into `OPEN_RESPONSES`.
#[map]
pub static HEADER_SCRATCH: PerCpuArray<OpenHeaderBlock> = PerCpuArray::with_max_entries(1, 0);

/// Response header blocks between `writeResHeaders.writeFrame`'s entry and its RET, keyed by
/// (pid, goroutine): the fields arrive in separate `WriteField` calls, and the goroutine may
/// change CPUs in between. Bounded: an entry left by a panicking writeFrame is evicted (LRU).
#[map]
pub static OPEN_RESPONSES: LruHashMap<ProcessAddress, OpenHeaderBlock> =
    LruHashMap::with_max_entries(512, 0);

/// What the kernel side could not deliver (see `KernelCounter`).
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(KERNEL_COUNTER_SLOTS, 0);

/// Hits per probe (see `Probe`): the cost apiscope puts on the traced process, made visible.
#[map]
pub static PROBE_HITS: PerCpuArray<u64> = PerCpuArray::with_max_entries(PROBE_SLOTS, 0);

#[inline(always)]
pub fn count(counter: KernelCounter, by: u64) {
    add(&COUNTERS, counter as u32, by);
}

/// Counts one hit of `probe`; every program calls it first.
#[inline(always)]
pub fn hit(probe: Probe) {
    add(&PROBE_HITS, probe as u32, 1);
}

#[inline(always)]
fn add(array: &PerCpuArray<u64>, slot: u32, by: u64) {
    if let Some(value) = array.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU while the program runs.
        unsafe { *value += by };
    }
}

#[inline(always)]
pub fn regs(ctx: &ProbeContext) -> &pt_regs {
    // SAFETY: a uprobe's context is the task's saved user registers.
    unsafe { &*ctx.regs }
}

/// True when the wire decoder knows the connection's HPACK table for `direction` (one of
/// the `WIRE_HPACK_*` flags): the header hook that asks has nothing to add. Counted.
#[inline(always)]
pub fn wire_decodes_headers(pid: u32, conn: u64, direction: u32) -> bool {
    let known = unsafe { WIRE_HPACK_KNOWN.get(&process_address(pid, conn)) }
        .is_some_and(|flags| flags & direction != 0);
    if known {
        count(KernelCounter::HeaderHooksSkipped, 1);
    }
    known
}

/// The wire decoder will lose its place on this connection: the header hooks take over until
/// it closes. A tombstone rather than a removal, so a decoder that has not reached the loss
/// yet cannot switch the hooks off again (userspace only creates entries).
#[inline(always)]
pub fn wire_bytes_lost(key: &ProcessAddress) {
    let _ = WIRE_HPACK_KNOWN.insert(key, &WIRE_HPACK_LOST, 0);
}

/// The connection is gone; the next one Go allocates at its address starts with hooks on.
#[inline(always)]
pub fn wire_connection_closed(key: &ProcessAddress) {
    let _ = WIRE_HPACK_KNOWN.remove(key);
}

/// Key of the per-goroutine and per-connection maps.
#[inline(always)]
pub fn process_address(pid: u32, addr: u64) -> ProcessAddress {
    ProcessAddress { addr, pid, _pad: 0 }
}
