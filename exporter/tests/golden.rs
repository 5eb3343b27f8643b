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
use apiscope::k8s::api_request::CaptureLevel;
use apiscope::pipeline::{DecodeConfig, DecodeMetrics, DecodePipeline};
use apiscope::policy::CapturePolicy;
use apiscope::record::ChunkReader;
use apiscope::sinks::request_metrics::RequestMetrics;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/decode")
}

/// Decodes a gzip-compressed pcapng recording as `apiscope replay` does.
pub fn decode_recording(path: &Path) -> Vec<ApiRequest> {
    decode_recording_with(path, DecodePipeline::new(DecodeConfig::default(), 0))
}

fn decode_recording_with(path: &Path, mut pipeline: DecodePipeline) -> Vec<ApiRequest> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = ChunkReader::new(BufReader::new(flate2::read::GzDecoder::new(file)));
    let metrics = DecodeMetrics::default();
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

/// The real recording at level RequestResponse: every kind of body the workload sends (JSON,
/// merge and JSON patches, apply-patch YAML, a gzip LIST, protobuf, a watch) is rendered or
/// noted, bounded, and the request set is the golden one.
#[test]
fn the_recording_at_request_response() {
    let recording = fixtures().join("cluster.pcapng.gz");
    let policy = CapturePolicy::parse(
        "rules:\n- level: None\n  nonResourceURLs: [/version]\n- level: RequestResponse\n",
    )
    .expect("policy");
    let config = DecodeConfig::default();
    let max = config.max_captured_body_bytes;
    let requests =
        decode_recording_with(&recording, DecodePipeline::with_policy(config, 0, policy));
    let golden = decode_recording(&recording);
    assert_eq!(requests.len(), golden.len());
    let mut seen = std::collections::BTreeSet::new();
    for (request, plain) in requests.iter().zip(&golden) {
        assert_eq!(request.audit_id, plain.audit_id);
        assert_eq!(plain.capture_level, CaptureLevel::Metadata);
        assert_eq!(plain.request_body, None);
        if request.path == "/version" {
            assert_eq!(request.capture_level, CaptureLevel::None);
            assert_eq!(request.response_body, None);
            continue;
        }
        assert_eq!(request.capture_level, CaptureLevel::RequestResponse);
        for body in [&request.request_body, &request.response_body]
            .into_iter()
            .flatten()
        {
            assert!(body.text.len() <= max);
            assert!(!body.redacted, "{}: nothing secret here", request.path);
            let what = if body.text.starts_with("watch stream") {
                "watch"
            } else if body.text.starts_with("protobuf body") {
                "protobuf"
            } else if body.content_type.contains("yaml") {
                "yaml"
            } else if body.truncated {
                "truncated"
            } else {
                serde_json::from_str::<serde_json::Value>(&body.text)
                    .unwrap_or_else(|e| panic!("{}: {e}: {}", request.path, body.text));
                "json"
            };
            seen.insert(what);
        }
        if request.metric_verb == "APPLY" {
            let body = request.request_body.as_ref().expect("apply body");
            // kubectl sends its apply patch as JSON (JSON is YAML); it stays JSON.
            assert!(body.text.contains(r#""kind":"ConfigMap""#), "{}", body.text);
        }
    }
    // The gzip LIST of 48 ConfigMaps of 4 KiB is over the 64 KiB default: cut, and says so.
    let expected = ["json", "protobuf", "truncated", "watch", "yaml"];
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), expected);
}

#[test]
fn open_watches_of_the_recording_show_in_the_long_running_gauge() {
    let path = fixtures().join("cluster.pcapng.gz");
    let file = std::fs::File::open(&path).expect("recording");
    let reader = ChunkReader::new(BufReader::new(flate2::read::GzDecoder::new(file)));
    let metrics = DecodeMetrics::default();
    let mut pipeline = DecodePipeline::new(DecodeConfig::default(), 0);
    let mut requests = Vec::new();
    for chunk in reader {
        pipeline.push(&chunk.expect("chunk"), &metrics, &mut requests);
    }
    let gauges = RequestMetrics::default();
    gauges.set_open_requests(&pipeline.open_requests());
    let mut registry = prometheus_client::registry::Registry::default();
    gauges.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
    let open: f64 = text
        .lines()
        .filter(|l| l.starts_with("apiscope_longrunning_requests{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    // kube-scheduler's 11 watches were still open when the recording stopped.
    assert_eq!(open, 11.0, "{text}");
}

/// With `report_frames` (what `--serve-ui` sets) every HTTP/2 request carries its stream's
/// frames, bounded, opening with the request's HEADERS; and nothing else changes.
#[test]
fn frames_are_reported_only_when_asked_and_change_nothing_else() {
    let mut recordings: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .expect("fixtures directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".pcapng.gz"))
        .collect();
    recordings.sort();
    let path = recordings.first().expect("a recording");
    let plain = decode_recording(path);
    let config = DecodeConfig {
        report_frames: true,
        ..DecodeConfig::default()
    };
    let mut framed = decode_recording_with(path, DecodePipeline::new(config, 0));
    assert_eq!(plain.len(), framed.len());
    let mut with_frames = 0;
    for request in &framed {
        if request.protocol != "2" || request.incomplete.is_some() {
            continue;
        }
        let frames = request
            .frames
            .as_ref()
            .expect("HTTP/2 requests have frames");
        with_frames += 1;
        assert!(!frames.frames.is_empty() && frames.frames.len() <= 64);
        let first = frames.frames[0];
        assert_eq!(first.frame_type, 1, "opens with HEADERS: {}", request.path);
        assert!(first.request_direction);
        assert!(
            frames
                .frames
                .iter()
                .all(|f| f.stream_id == request.stream_id)
        );
        assert!(
            frames.frames.iter().any(|f| !f.request_direction),
            "the response's frames too: {}",
            request.path
        );
        assert!(first.unix_nano >= request.start_unix_nano.saturating_sub(1_000_000_000));
    }
    assert!(with_frames > 0);
    for request in &mut framed {
        request.frames = None;
    }
    assert_eq!(plain, framed);
    assert!(plain.iter().all(|r| r.frames.is_none()));
}

/// The decoder switches the header hooks off for exactly the connections whose header blocks
/// it decodes from the wire, on real recorded traffic, and back on for good at a loss.
#[test]
fn header_hooks_are_switched_off_only_where_the_wire_decodes_every_block() {
    use apiscope::capture::ChunkEventKind;
    use apiscope::capture::hook_switches::{HookState, HookSwitches};
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;

    for name in ["cluster.pcapng.gz", "cluster-v1.37.2.pcapng.gz"] {
        let path = fixtures().join(name);
        let file = std::fs::File::open(&path).unwrap();
        let reader = ChunkReader::new(BufReader::new(flate2::read::GzDecoder::new(file)));
        let switches = Arc::new(HookSwitches::default());
        let mut pipeline = DecodePipeline::new(DecodeConfig::default(), 0);
        pipeline.report_hook_switches(switches.clone());
        let metrics = DecodeMetrics::default();
        let mut requests = Vec::new();
        // When each connection's hooks went off: the index of the first request after it.
        let mut off_since: BTreeMap<(u32, u64), usize> = BTreeMap::new();
        let mut lost: Option<(u32, u64)> = None;
        for chunk in reader {
            let mut chunk = chunk.unwrap();
            let key = (chunk.connection.pid, chunk.connection.conn_ptr);
            // The first switched-off connection loses the next chunk it sends: a gap.
            if lost.is_none() && off_since.contains_key(&key) {
                if let ChunkEventKind::Data { len, data, .. } = &mut chunk.kind {
                    if *len > 0 {
                        data.0.clear();
                        lost = Some(key);
                    }
                }
            }
            pipeline.push(&chunk, &metrics, &mut requests);
            for (key, state) in switches.take() {
                match state {
                    HookState::Off => {
                        assert!(
                            off_since.insert(key, requests.len()).is_none(),
                            "{name}: switched off twice: {key:?}"
                        );
                    }
                    HookState::On => {
                        assert_eq!(Some(key), lost, "{name}: back on without a loss");
                        off_since.remove(&key);
                    }
                }
            }
        }
        pipeline.finish(&metrics, &mut requests);
        assert!(lost.is_some(), "{name}: no connection was switched off");
        assert!(
            !off_since.contains_key(&lost.unwrap()),
            "{name}: the hooks stayed off after a gap"
        );
        // Off connections: every request that began after the switch was decoded from the wire.
        let mut checked = BTreeSet::new();
        for (key, since) in &off_since {
            for request in requests[*since..]
                .iter()
                .filter(|r| (r.connection.pid, r.connection.conn_ptr) == *key)
            {
                assert_eq!(request.headers_source, "wire", "{name}: {request:?}");
                checked.insert(*key);
            }
        }
        assert!(!checked.is_empty(), "{name}: no request after a switch-off");
        // Connections older than the recording needed the hooks: none of them was switched off.
        for request in requests.iter().filter(|r| r.headers_source == "hook") {
            let key = (request.connection.pid, request.connection.conn_ptr);
            assert!(
                !off_since.contains_key(&key),
                "{name}: hooks off on a connection that needed them: {request:?}"
            );
        }
    }
}
