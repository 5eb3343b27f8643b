//! The bounded hand-off from the capture loop to the decoder. Chunks travel in batches, one per
//! ring-buffer drain, so the decoder thread is woken once per drain instead of once per chunk
//! (thread park/unpark was a sixth of apiscope's CPU when each chunk was its own message);
//! the bound is still counted in chunks.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;

use super::chunk::TlsChunk;

pub fn chunk_queue(capacity: usize) -> (ChunkSender, ChunkReceiver) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    (
        ChunkSender {
            sender,
            queued: queued.clone(),
            capacity: capacity.max(1),
        },
        ChunkReceiver { receiver, queued },
    )
}

pub struct ChunkSender {
    sender: mpsc::UnboundedSender<Vec<TlsChunk>>,
    queued: Arc<AtomicUsize>,
    capacity: usize,
}

impl ChunkSender {
    /// Queues as much of `batch` as the bound leaves room for; returns the chunks dropped (the
    /// tail of the batch, or all of it when the decoder is gone).
    pub fn send(&self, mut batch: Vec<TlsChunk>) -> Vec<TlsChunk> {
        if batch.is_empty() {
            return Vec::new();
        }
        let queued = self.queued.load(Ordering::Acquire);
        let room = self.capacity.saturating_sub(queued);
        let mut dropped = batch.split_off(room.min(batch.len()));
        if batch.is_empty() {
            return dropped;
        }
        let sent = batch.len();
        self.queued.fetch_add(sent, Ordering::AcqRel);
        if let Err(mpsc::error::SendError(mut batch)) = self.sender.send(batch) {
            self.queued.fetch_sub(sent, Ordering::AcqRel);
            batch.append(&mut dropped);
            return batch;
        }
        dropped
    }
}

pub struct ChunkReceiver {
    receiver: mpsc::UnboundedReceiver<Vec<TlsChunk>>,
    queued: Arc<AtomicUsize>,
}

impl ChunkReceiver {
    /// The next batch; `None` once the sender is gone and everything was received.
    pub async fn recv(&mut self) -> Option<Vec<TlsChunk>> {
        let batch = self.receiver.recv().await?;
        self.queued.fetch_sub(batch.len(), Ordering::AcqRel);
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
        let (sender, mut receiver) = chunk_queue(5);
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

    #[tokio::test]
    async fn a_gone_decoder_drops_everything() {
        let (sender, receiver) = chunk_queue(5);
        drop(receiver);
        assert_eq!(sender.send(vec![chunk(1), chunk(2)]).len(), 2);
    }
}
