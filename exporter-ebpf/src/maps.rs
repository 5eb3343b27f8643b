//! Every map and load-time setting of the eBPF object, and the counters' helpers.

use apiscope_common::{
    ChunkEvent, ConnInfo, GoOffsets, KERNEL_COUNTER_SLOTS, KernelCounter, MAX_CHUNK_DATA,
    MAX_SEGMENTS_PER_CALL, OpenHeaderBlock, PROBE_SLOTS, Probe, ProcessAddress,
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
pub static EVENTS: RingBuf = RingBuf::with_byte_size(32 << 20, 0);

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

/// Key of the per-goroutine and per-connection maps.
#[inline(always)]
pub fn process_address(pid: u32, addr: u64) -> ProcessAddress {
    ProcessAddress { addr, pid, _pad: 0 }
}
