//! The bounded hand-off from the capture loop to the decoder. Chunks travel in batches, one per
//! ring-buffer drain, so the decoder thread is woken once per drain instead of once per chunk
//! (thread park/unpark was a sixth of apiscope's CPU when each chunk was its own message).
//! The bound is counted in chunks and in bytes: a decoder that falls behind under large
//! responses would otherwise hold up to the chunk count times 256 KiB.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;

use super::chunk::{ChunkEventKind, TlsChunk};

pub fn chunk_queue(capacity: usize, max_bytes: usize) -> (ChunkSender, ChunkReceiver) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let queued = Arc::new(Queued::default());
    (
        ChunkSender {
            sender,
            queued: queued.clone(),
            capacity: capacity.max(1),
            max_bytes,
        },
        ChunkReceiver { receiver, queued },
    )
}

/// What is in the queue now.
#[derive(Default)]
struct Queued {
    chunks: AtomicUsize,
    bytes: AtomicUsize,
}

/// The memory a queued chunk holds, as the byte bound counts it: its payload (or its header
/// fields' text) plus the struct itself.
fn queued_bytes(chunk: &TlsChunk) -> usize {
    std::mem::size_of::<TlsChunk>()
        + match &chunk.kind {
            ChunkEventKind::Data { data, .. } => data.0.capacity(),
            ChunkEventKind::Headers { fields, .. } => fields
                .iter()
                .map(|f| std::mem::size_of_val(f) + f.name.len() + f.value.len())
                .sum(),
            ChunkEventKind::Close => 0,
        }
}

pub struct ChunkSender {
    sender: mpsc::UnboundedSender<(Vec<TlsChunk>, usize)>,
    queued: Arc<Queued>,
    capacity: usize,
    max_bytes: usize,
}

impl ChunkSender {
    /// Queues as much of `batch` as the bounds leave room for; returns the chunks dropped (the
    /// tail of the batch, or all of it when the decoder is gone).
    pub fn send(&self, mut batch: Vec<TlsChunk>) -> Vec<TlsChunk> {
        if batch.is_empty() {
            return Vec::new();
        }
        let room = self
            .capacity
            .saturating_sub(self.queued.chunks.load(Ordering::Acquire));
        let room_bytes = self
            .max_bytes
            .saturating_sub(self.queued.bytes.load(Ordering::Acquire));
        let mut kept = 0;
        let mut kept_bytes = 0;
        for chunk in batch.iter().take(room) {
            let size = queued_bytes(chunk);
            if kept_bytes + size > room_bytes {
                break;
            }
            kept += 1;
            kept_bytes += size;
        }
        let mut dropped = batch.split_off(kept);
        if batch.is_empty() {
            return dropped;
        }
        self.queued.chunks.fetch_add(kept, Ordering::AcqRel);
        self.queued.bytes.fetch_add(kept_bytes, Ordering::AcqRel);
        if let Err(mpsc::error::SendError((mut batch, _))) = self.sender.send((batch, kept_bytes)) {
            self.queued.chunks.fetch_sub(kept, Ordering::AcqRel);
            self.queued.bytes.fetch_sub(kept_bytes, Ordering::AcqRel);
            batch.append(&mut dropped);
            return batch;
        }
        dropped
    }
}

pub struct ChunkReceiver {
    receiver: mpsc::UnboundedReceiver<(Vec<TlsChunk>, usize)>,
    queued: Arc<Queued>,
}

impl ChunkReceiver {
    /// The next batch; `None` once the sender is gone and everything was received.
    pub async fn recv(&mut self) -> Option<Vec<TlsChunk>> {
        let (batch, bytes) = self.receiver.recv().await?;
        self.queued.chunks.fetch_sub(batch.len(), Ordering::AcqRel);
        self.queued.bytes.fetch_sub(bytes, Ordering::AcqRel);
        Some(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::chunk::ChunkEventKind;
    use crate::vocabulary::{ConnectionId, Role};

    fn chunk(n: u64) -> TlsChunk {
        TlsChunk {
            timestamp_ns: n,
            connection: ConnectionId::default(),
            tid: 1,
            goroutine: 0,
            fd: -1,
            role: Role::Server,
            local: None,
            remote: None,
            kind: ChunkEventKind::Close,
        }
    }

    #[tokio::test]
    async fn the_bound_counts_chunks_not_batches() {
        let (sender, mut receiver) = chunk_queue(5, usize::MAX);
        assert!(sender.send((0..3).map(chunk).collect()).is_empty());
        // Room for 2 more: the batch's tail is dropped.
        let dropped = sender.send((3..7).map(chunk).collect());
        assert_eq!(
            dropped.iter().map(|c| c.timestamp_ns).collect::<Vec<_>>(),
            [5, 6]
        );
        assert_eq!(sender.send(vec![chunk(9)]).len(), 1);
        let first = receiver.recv().await.unwrap();
        assert_eq!(first.len(), 3);
        // Receiving frees room.
        assert!(sender.send(vec![chunk(10), chunk(11)]).is_empty());
        let second = receiver.recv().await.unwrap();
        assert_eq!(
            second.iter().map(|c| c.timestamp_ns).collect::<Vec<_>>(),
            [3, 4]
        );
        drop(sender);
        assert_eq!(receiver.recv().await.unwrap().len(), 2);
        assert!(receiver.recv().await.is_none());
    }

    fn data(n: u64, len: usize) -> TlsChunk {
        TlsChunk {
            kind: ChunkEventKind::Data {
                direction: crate::vocabulary::Direction::Egress,
                len: len as u32,
                data: crate::capture::chunk::Bytes(vec![0u8; len]),
            },
            ..chunk(n)
        }
    }

    #[tokio::test]
    async fn the_bound_counts_bytes_too() {
        let per_chunk = queued_bytes(&data(0, 1000));
        // Room for two 1000-byte chunks, whatever the count allows.
        let (sender, mut receiver) = chunk_queue(100, 2 * per_chunk + 10);
        let dropped = sender.send((0..3).map(|n| data(n, 1000)).collect());
        assert_eq!(
            dropped.iter().map(|c| c.timestamp_ns).collect::<Vec<_>>(),
            [2]
        );
        // 10 bytes left: not even a chunk without payload fits.
        assert_eq!(sender.send(vec![chunk(3)]).len(), 1);
        assert_eq!(sender.send(vec![data(4, 1)]).len(), 1);
        assert_eq!(receiver.recv().await.unwrap().len(), 2);
        // Receiving frees the bytes.
        assert!(sender.send(vec![data(5, 1000), data(6, 1000)]).is_empty());
    }

    #[tokio::test]
    async fn a_gone_decoder_drops_everything() {
        let (sender, receiver) = chunk_queue(5, usize::MAX);
        drop(receiver);
        assert_eq!(sender.send(vec![chunk(1), chunk(2)]).len(), 2);
    }
}
