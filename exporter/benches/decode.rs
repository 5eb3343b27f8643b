//! Decode throughput on the golden recording (`cargo bench -p apiscope --bench decode`).
//!
//! Prints one table measured side by side in one run: reading the recording only, the HTTP stage
//! alone (HTTP/2 frames and HPACK, one decoder per connection, no exchanges or Kubernetes
//! semantics), decoding the apiserver's API traffic, and decoding its outgoing etcd traffic too,
//! each as MB/s of all captured plaintext and as a ratio to reading alone. Each variant runs
//! several rounds; the best round counts (the least disturbed by other work on the machine).

use std::io::{BufReader, Cursor, Read};
use std::path::Path;
use std::time::{Duration, Instant};

use std::collections::HashMap;

use apiscope::capture::TlsChunk;

use apiscope::http::{ProtocolDecoder, ProtocolLimits};
use apiscope::pipeline::{DecodeConfig, DecodeMetrics, DecodePipeline};
use apiscope::reassembly::pieces;
use apiscope::record::ChunkReader;
use apiscope::vocabulary::{ConnectionId, Role};

const ROUNDS: usize = 7;

fn main() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/decode/cluster.pcapng.gz");
    let mut pcapng = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&path).expect("golden recording"))
        .read_to_end(&mut pcapng)
        .expect("gunzip");
    let chunks: Vec<TlsChunk> = ChunkReader::new(BufReader::new(Cursor::new(&pcapng)))
        .collect::<Result<_, _>>()
        .expect("recording");
    let plaintext: usize = chunks
        .iter()
        .filter_map(|c| c.payload().map(|(_, _, d)| d.len()))
        .sum();

    // The server-role rows read only this part of the plaintext; their MB/s, like every row's,
    // is over all of it.
    let server_plaintext: usize = chunks
        .iter()
        .filter(|c| c.role == Role::Server)
        .filter_map(|c| c.payload().map(|(_, _, d)| d.len()))
        .sum();
    let read = best(|| ChunkReader::new(BufReader::new(Cursor::new(&pcapng))).count());
    let decode = |include_outgoing: bool| {
        best(|| {
            let config = DecodeConfig {
                include_outgoing,
                ..DecodeConfig::default()
            };
            let metrics = DecodeMetrics::default();
            let mut pipeline = DecodePipeline::new(config, 0);
            let mut out = Vec::new();
            for chunk in &chunks {
                pipeline.push(chunk, &metrics, &mut out);
            }
            pipeline.finish(&metrics, &mut out);
            out.len()
        })
    };
    let frames_and_hpack = best(|| {
        let mut decoders: HashMap<ConnectionId, ProtocolDecoder> = HashMap::new();
        let mut events = Vec::new();
        let mut total = 0;
        for chunk in chunks.iter().filter(|c| c.role == Role::Server) {
            let Some((direction, len, data)) = chunk.payload() else {
                continue;
            };
            let decoder = decoders
                .entry(chunk.connection)
                .or_insert_with(|| ProtocolDecoder::new(chunk.role, ProtocolLimits::default()));
            for piece in pieces(data, len) {
                decoder.feed(direction, chunk.timestamp_ns, piece, &mut events);
            }
            total += events.len();
            events.clear();
        }
        total
    });
    let api = decode(false);
    let all = decode(true);

    println!(
        "golden recording: {} chunks, {:.2} MB plaintext ({:.2} MB server role), {ROUNDS} rounds, best round",
        chunks.len(),
        plaintext as f64 / 1e6,
        server_plaintext as f64 / 1e6
    );
    println!(
        "{:<44} {:>10} {:>10} {:>10} {:>8}",
        "variant", "outputs", "ms", "MB/s", "ratio"
    );
    for (name, (outputs, time)) in [
        ("read pcapng into chunks", read),
        (
            "HTTP/2 frames + HPACK alone (server role)",
            frames_and_hpack,
        ),
        ("decode API requests (server role)", api),
        ("decode incl. outgoing etcd gRPC (client role)", all),
    ] {
        println!(
            "{name:<44} {outputs:>10} {:>10.2} {:>10.1} {:>8.2}",
            time.as_secs_f64() * 1e3,
            plaintext as f64 / 1e6 / time.as_secs_f64(),
            time.as_secs_f64() / read.1.as_secs_f64()
        );
    }
}

fn best(mut run: impl FnMut() -> usize) -> (usize, Duration) {
    let mut best = Duration::MAX;
    let mut outputs = 0;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        outputs = std::hint::black_box(run());
        best = best.min(start.elapsed());
    }
    (outputs, best)
}
