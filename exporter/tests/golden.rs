//! Golden tests: real recordings from the test cluster, decoded, must give exactly the
//! ApiRequests stored next to them. The recordings and their expectations are made by
//! `make fixtures` (tests/tests/golden_record.rs), which also checks every recorded request
//! against the apiserver's audit log before writing; see tests/fixtures/decode/README.md.
//!
//! `APISCOPE_UPDATE_GOLDEN=1 cargo test --test golden` rewrites the expectations from the
//! current decoder (review the diff!).

use std::io::BufReader;
use std::path::{Path, PathBuf};

use apiscope::k8s::ApiRequest;
use apiscope::pipeline::{DecodeConfig, DecodeMetrics, DecodePipeline};
use apiscope::record::ChunkReader;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/decode")
}

/// Decodes a gzip-compressed pcapng recording as `apiscope replay` does.
pub fn decode_recording(path: &Path) -> Vec<ApiRequest> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = ChunkReader::new(BufReader::new(flate2::read::GzDecoder::new(file)));
    let metrics = DecodeMetrics::default();
    let mut pipeline = DecodePipeline::new(DecodeConfig::default(), 0);
    let mut requests = Vec::new();
    let mut offset_known = false;
    while let Some(chunk) = reader.next() {
        let chunk = chunk.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if !offset_known {
            if let Some(offset) = reader.realtime_offset_ns() {
                pipeline.set_realtime_offset(offset);
                offset_known = true;
            }
        }
        pipeline.push(&chunk, &metrics, &mut requests);
    }
    pipeline.finish(&metrics, &mut requests);
    requests
}

#[test]
fn recordings_decode_to_their_golden_api_requests() {
    let mut recordings: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .expect("fixtures directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".pcapng.gz"))
        .collect();
    recordings.sort();
    assert!(
        !recordings.is_empty(),
        "no recordings in {}",
        fixtures().display()
    );
    let update = std::env::var_os("APISCOPE_UPDATE_GOLDEN").is_some();
    for recording in recordings {
        let requests = decode_recording(&recording);
        let actual: String = requests
            .iter()
            .map(|r| serde_json::to_string(r).expect("serializable") + "\n")
            .collect();
        let expected_path = PathBuf::from(
            recording
                .to_string_lossy()
                .replace(".pcapng.gz", ".expected.jsonl"),
        );
        if update {
            std::fs::write(&expected_path, &actual).expect("writing expectations");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
        for (i, (want, got)) in expected.lines().zip(actual.lines()).enumerate() {
            assert_eq!(
                got,
                want,
                "{}: request {i} differs from {}",
                recording.display(),
                expected_path.display()
            );
        }
        assert_eq!(
            actual.lines().count(),
            expected.lines().count(),
            "{}: number of requests",
            recording.display()
        );
    }
}
