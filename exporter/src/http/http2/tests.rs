//! Connection-level tests of the HTTP/2 decoder, driven through [`ProtocolDecoder`].

use std::collections::{BTreeSet, HashMap};

use super::frame::{CLIENT_PREFACE, FrameType};
use super::test_support::{Encoder, frame};
use crate::http::{HttpEvent, Protocol, ProtocolDecoder, ProtocolLimits};
use crate::reassembly::Piece;
use crate::vocabulary::{Direction, HeaderField, MessageKind, Role};

const IN: Direction = Direction::Ingress;
const OUT: Direction = Direction::Egress;

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const PRIORITY: u8 = 2;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PUSH_PROMISE: u8 = 5;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const CONTINUATION: u8 = 9;

fn fields(pairs: &[(&str, &str)]) -> Vec<HeaderField> {
    pairs
        .iter()
        .map(|(n, v)| HeaderField::new(*n, *v))
        .collect()
}

fn run(role: Role, pieces: &[(Direction, Piece<'_>)]) -> (Vec<HttpEvent>, ProtocolDecoder) {
    let mut decoder = ProtocolDecoder::new(role, ProtocolLimits::default());
    let mut out = Vec::new();
    for (direction, piece) in pieces {
        decoder.feed(*direction, 7, *piece, &mut out);
    }
    (out, decoder)
}

fn head(
    stream: u32,
    kind: MessageKind,
    pairs: &[(&str, &str)],
    end_stream: bool,
    wire: u64,
) -> HttpEvent {
    HttpEvent::Head {
        stream,
        kind,
        fields: Some(fields(pairs)),
        end_stream,
        wire_bytes: wire,
        timestamp_ns: 7,
    }
}

fn body(
    stream: u32,
    kind: MessageKind,
    data: &[u8],
    missing: u32,
    end_stream: bool,
    wire: u64,
) -> HttpEvent {
    HttpEvent::Body {
        stream,
        kind,
        data: data.to_vec(),
        missing,
        end_stream,
        wire_bytes: wire,
        timestamp_ns: 7,
    }
}

#[test]
fn every_frame_type_with_padding_continuation_and_push_promise() {
    let mut client = Encoder::new(false);
    let mut server = Encoder::new(true);
    let request = [
        (":method", "POST"),
        (":scheme", "https"),
        (":path", "/api/v1/namespaces/default/pods"),
        (":authority", "10.0.0.1:6443"),
        ("content-type", "application/json"),
    ];
    let block = client.encode(&request);
    let (first, second) = block.split_at(10);
    // HEADERS with PADDED (3 bytes of padding) and PRIORITY, continued.
    let mut headers_payload = vec![3];
    headers_payload.extend_from_slice(&[0x80, 0, 0, 0, 15]);
    headers_payload.extend_from_slice(first);
    headers_payload.extend_from_slice(&[0, 0, 0]);
    let mut padded_data = vec![2];
    padded_data.extend_from_slice(b"{\"a\":");
    padded_data.extend_from_slice(&[0, 0]);

    let mut ingress = CLIENT_PREFACE.to_vec();
    ingress.extend(frame(
        SETTINGS,
        0,
        0,
        &[0, 1, 0, 0, 0x20, 0, 0, 4, 0, 0, 0xff, 0xff],
    ));
    ingress.extend(frame(WINDOW_UPDATE, 0, 0, &[0, 0x0f, 0, 1]));
    ingress.extend(frame(PRIORITY, 0, 3, &[0, 0, 0, 1, 16]));
    ingress.extend(frame(HEADERS, 0x8 | 0x20, 1, &headers_payload));
    ingress.extend(frame(CONTINUATION, 0x4, 1, second));
    ingress.extend(frame(DATA, 0x8, 1, &padded_data));
    ingress.extend(frame(DATA, 0x1, 1, b"1}"));
    ingress.extend(frame(PING, 0, 0, &[1, 2, 3, 4, 5, 6, 7, 8]));
    ingress.extend(frame(0x42, 0xff, 0, b"???"));
    ingress.extend(frame(RST_STREAM, 0, 3, &[0, 0, 0, 8]));
    ingress.extend(frame(
        GOAWAY,
        0,
        0,
        &[0, 0, 0, 1, 0, 0, 0, 0, b'b', b'y', b'e'],
    ));

    let promise_block = server.encode(&[
        (":method", "GET"),
        (":path", "/pushed"),
        ("x-shared", "yes"),
    ]);
    let response_block = server.encode(&[(":status", "201"), ("x-shared", "yes")]);
    let trailer_block = server.encode(&[("grpc-status", "0")]);
    let mut promise_payload = vec![0, 0, 0, 2];
    promise_payload.extend_from_slice(&promise_block);
    let mut egress = frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]);
    egress.extend(frame(SETTINGS, 0x1, 0, &[]));
    egress.extend(frame(PUSH_PROMISE, 0x4, 1, &promise_payload));
    egress.extend(frame(HEADERS, 0x4, 1, &response_block));
    egress.extend(frame(DATA, 0, 1, b"{}"));
    egress.extend(frame(HEADERS, 0x5, 1, &trailer_block));
    egress.extend(frame(PING, 0x1, 0, &[1, 2, 3, 4, 5, 6, 7, 8]));

    let (events, decoder) = run(
        Role::Server,
        &[(IN, Piece::Bytes(&ingress)), (OUT, Piece::Bytes(&egress))],
    );
    let headers_wire = (9 + headers_payload.len() + 9 + second.len()) as u64;
    assert_eq!(
        events,
        vec![
            head(1, MessageKind::Request, &request, false, headers_wire),
            body(1, MessageKind::Request, b"{\"a\":", 0, false, 9 + 8),
            body(1, MessageKind::Request, b"1}", 0, true, 9 + 2),
            HttpEvent::Reset {
                stream: 3,
                error_code: 8,
                direction: IN,
                timestamp_ns: 7
            },
            HttpEvent::GoAway {
                last_stream_id: 1,
                error_code: 0,
                direction: IN,
                timestamp_ns: 7
            },
            head(
                1,
                MessageKind::Response,
                &[(":status", "201"), ("x-shared", "yes")],
                false,
                (9 + response_block.len()) as u64
            ),
            body(1, MessageKind::Response, b"{}", 0, false, 11),
            head(
                1,
                MessageKind::Trailers,
                &[("grpc-status", "0")],
                true,
                (9 + trailer_block.len()) as u64
            ),
        ]
    );
    assert_eq!(decoder.protocol(), Protocol::Http2);
    let stats = decoder.stats();
    let expected_frames = [
        (FrameType::Data, 3),
        (FrameType::Headers, 3),
        (FrameType::Priority, 1),
        (FrameType::RstStream, 1),
        (FrameType::Settings, 3),
        (FrameType::PushPromise, 1),
        (FrameType::Ping, 2),
        (FrameType::GoAway, 1),
        (FrameType::WindowUpdate, 1),
        (FrameType::Continuation, 1),
    ];
    for (kind, count) in expected_frames {
        assert_eq!(stats.frames_of(kind), count, "{kind:?}");
    }
    assert_eq!(stats.unknown_frames, 1);
    assert_eq!(stats.push_promises, 1);
    assert_eq!(stats.desyncs, 0);
    assert_eq!(stats.discarded_bytes, 0);
    assert_eq!(decoder.buffered_bytes(), 0);
}

/// A realistic exchange: truth per (direction, stream, kind) and the pieces as Go would
/// produce them (server ingress: frame header and payload read separately; egress: one write
/// per flush, cut at 4 KiB).
struct Scenario {
    timeline: Vec<(Direction, Vec<u8>)>,
    truth: HashMap<(Direction, u32, MessageKind), Vec<HeaderField>>,
    bodies: HashMap<(Direction, u32), Vec<u8>>,
}

fn scenario(requests: u32, huffman: bool, big_body: usize) -> Scenario {
    let mut client = Encoder::new(huffman);
    let mut server = Encoder::new(!huffman);
    let mut timeline = Vec::new();
    let mut truth = HashMap::new();
    let mut bodies: HashMap<(Direction, u32), Vec<u8>> = HashMap::new();
    let ingress_frame = |timeline: &mut Vec<(Direction, Vec<u8>)>, bytes: Vec<u8>| {
        let (header, payload) = bytes.split_at(9);
        timeline.push((IN, header.to_vec()));
        if !payload.is_empty() {
            timeline.push((IN, payload.to_vec()));
        }
    };
    let egress_flush = |timeline: &mut Vec<(Direction, Vec<u8>)>, bytes: Vec<u8>| {
        for chunk in bytes.chunks(4096) {
            timeline.push((OUT, chunk.to_vec()));
        }
    };
    timeline.push((IN, CLIENT_PREFACE.to_vec()));
    egress_flush(&mut timeline, frame(SETTINGS, 0, 0, &[0, 5, 0, 0x10, 0, 0]));
    ingress_frame(&mut timeline, frame(SETTINGS, 0, 0, &[0, 2, 0, 0, 0, 0]));
    ingress_frame(&mut timeline, frame(SETTINGS, 1, 0, &[]));
    for i in 0..requests {
        let stream = 2 * i + 1;
        let post = i % 3 == 1;
        let path = format!("/api/v1/namespaces/ns{}/pods", i % 4);
        let id = format!("req-{i}");
        let request: Vec<(&str, &str)> = vec![
            (":method", if post { "POST" } else { "GET" }),
            (":scheme", "https"),
            (":path", &path),
            (":authority", "10.0.0.1:6443"),
            ("user-agent", "kube-controller-manager/v1.30.0"),
            ("accept", "application/vnd.kubernetes.protobuf, */*"),
            ("authorization", "Bearer abc"),
            ("x-request-id", &id),
        ];
        let block = client.encode(&request);
        let mut expected = fields(&request);
        expected[6].sensitive = true;
        truth.insert((IN, stream, MessageKind::Request), expected);
        ingress_frame(
            &mut timeline,
            frame(HEADERS, if post { 0x4 } else { 0x5 }, stream, &block),
        );
        if post {
            let data = format!("{{\"metadata\":{{\"name\":\"pod-{i}\"}}}}").into_bytes();
            bodies.insert((IN, stream), data.clone());
            ingress_frame(&mut timeline, frame(DATA, 0x1, stream, &data));
        }
        ingress_frame(&mut timeline, frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]));
        let audit = format!("audit-{i:04}");
        let response: Vec<(&str, &str)> = vec![
            (":status", if i % 5 == 4 { "404" } else { "200" }),
            ("audit-id", &audit),
            ("cache-control", "no-cache, private"),
            ("content-type", "application/json"),
            ("x-kubernetes-pf-flowschema-uid", "6b2a"),
        ];
        truth.insert((OUT, stream, MessageKind::Response), fields(&response));
        let mut flush = frame(HEADERS, 0x4, stream, &server.encode(&response));
        let data = vec![b'a' + (i % 26) as u8; if i % 4 == 2 { big_body } else { 40 }];
        let with_trailers = i % 4 == 3;
        flush.extend(frame(
            DATA,
            if with_trailers { 0 } else { 1 },
            stream,
            &data,
        ));
        bodies.insert((OUT, stream), data);
        if with_trailers {
            let trailers = [("grpc-status", "0"), ("grpc-message", "")];
            truth.insert((OUT, stream, MessageKind::Trailers), fields(&trailers));
            flush.extend(frame(HEADERS, 0x5, stream, &server.encode(&trailers)));
        }
        egress_flush(&mut timeline, flush);
        if i % 6 == 5 {
            ingress_frame(&mut timeline, frame(PING, 0, 0, &[0; 8]));
            egress_flush(&mut timeline, frame(PING, 1, 0, &[0; 8]));
        }
    }
    Scenario {
        timeline,
        truth,
        bodies,
    }
}

fn stream_of(timeline: &[(Direction, Vec<u8>)], direction: Direction) -> Vec<u8> {
    timeline
        .iter()
        .filter(|(d, _)| *d == direction)
        .flat_map(|(_, b)| b.clone())
        .collect()
}

/// Every decoded head must be exactly the truth; every body must belong to a real stream.
fn assert_never_wrong(scenario: &Scenario, events: &[HttpEvent]) -> usize {
    let mut decoded = 0;
    for event in events {
        match event {
            HttpEvent::Head {
                stream,
                kind,
                fields: Some(fields),
                ..
            } => {
                let direction = if *kind == MessageKind::Request {
                    IN
                } else {
                    OUT
                };
                assert_eq!(
                    scenario.truth.get(&(direction, *stream, *kind)),
                    Some(fields),
                    "stream {stream} {kind:?}"
                );
                decoded += 1;
            }
            HttpEvent::Body {
                stream, data, kind, ..
            } => {
                let direction = if *kind == MessageKind::Request {
                    IN
                } else {
                    OUT
                };
                let truth = scenario.bodies.get(&(direction, *stream));
                assert!(truth.is_some(), "body on unknown stream {stream}");
                let truth = truth.unwrap();
                assert!(
                    truth.windows(data.len().max(1)).any(|w| w == &data[..]) || data.is_empty(),
                    "body data not from stream {stream}"
                );
            }
            _ => {}
        }
    }
    decoded
}

#[test]
fn whole_connection_decodes_exactly() {
    for (huffman, server_settings_first) in [(false, false), (true, false), (true, true)] {
        let mut scenario = scenario(14, huffman, 9000);
        if server_settings_first {
            // Go's server writes its SETTINGS before it reads the client preface.
            scenario.timeline.swap(0, 1);
        }
        let pieces: Vec<_> = scenario
            .timeline
            .iter()
            .map(|(d, b)| (*d, Piece::Bytes(b)))
            .collect();
        let (events, decoder) = run(Role::Server, &pieces);
        assert_eq!(assert_never_wrong(&scenario, &events), scenario.truth.len());
        assert!(!events.iter().any(|e| matches!(e, HttpEvent::Desync { .. })));
        let stats = decoder.stats();
        assert_eq!(stats.header_blocks_undecoded, 0);
        assert_eq!(stats.discarded_bytes, 0);
        assert_eq!(stats.resyncs, 0);
        let bodies: Vec<u8> = events
            .iter()
            .filter_map(|e| match e {
                HttpEvent::Body {
                    stream: 5,
                    kind: MessageKind::Response,
                    data,
                    ..
                } => Some(data.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(bodies, scenario.bodies[&(OUT, 5)]);
    }
}

#[test]
fn split_at_every_byte_boundary_gives_identical_events() {
    let scenario = scenario(3, true, 300);
    let requests = stream_of(&scenario.timeline, IN);
    let responses = stream_of(&scenario.timeline, OUT);
    let (reference, _) = run(
        Role::Server,
        &[
            (IN, Piece::Bytes(&requests)),
            (OUT, Piece::Bytes(&responses)),
        ],
    );
    assert_eq!(
        assert_never_wrong(&scenario, &reference),
        scenario.truth.len()
    );
    for k in 0..=requests.len() {
        let (a, b) = requests.split_at(k);
        let (events, _) = run(
            Role::Server,
            &[
                (IN, Piece::Bytes(a)),
                (IN, Piece::Bytes(b)),
                (OUT, Piece::Bytes(&responses)),
            ],
        );
        assert_eq!(events, reference, "request split at {k}");
    }
    for k in 0..=responses.len() {
        let (a, b) = responses.split_at(k);
        let (events, _) = run(
            Role::Server,
            &[
                (IN, Piece::Bytes(&requests)),
                (OUT, Piece::Bytes(a)),
                (OUT, Piece::Bytes(b)),
            ],
        );
        assert_eq!(events, reference, "response split at {k}");
    }
    let mut single_bytes: Vec<_> = requests.chunks(1).map(|b| (IN, Piece::Bytes(b))).collect();
    single_bytes.extend(responses.chunks(1).map(|b| (OUT, Piece::Bytes(b))));
    assert_eq!(run(Role::Server, &single_bytes).0, reference);
}

#[test]
fn truncated_input_yields_a_prefix_of_the_events() {
    let scenario = scenario(3, false, 300);
    let requests = stream_of(&scenario.timeline, IN);
    let responses = stream_of(&scenario.timeline, OUT);
    let (reference, _) = run(
        Role::Server,
        &[
            (IN, Piece::Bytes(&requests)),
            (OUT, Piece::Bytes(&responses)),
        ],
    );
    for k in 0..=responses.len() {
        let (events, decoder) = run(
            Role::Server,
            &[
                (IN, Piece::Bytes(&requests)),
                (OUT, Piece::Bytes(&responses[..k])),
            ],
        );
        assert_eq!(events, reference[..events.len()], "truncated at {k}");
        assert!(decoder.buffered_bytes() <= k);
    }
}

#[test]
fn client_role_reverses_directions() {
    let scenario = scenario(2, true, 10);
    // Swap directions: the traced process is the client (etcd over gRPC).
    let swapped: Vec<_> = scenario
        .timeline
        .iter()
        .map(|(d, b)| (if *d == IN { OUT } else { IN }, Piece::Bytes(&b[..])))
        .collect();
    let (events, decoder) = run(Role::Client, &swapped);
    assert_eq!(decoder.protocol(), Protocol::Http2);
    let heads: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            HttpEvent::Head {
                stream,
                kind,
                fields: Some(_),
                ..
            } => Some((*stream, *kind)),
            _ => None,
        })
        .collect();
    assert_eq!(
        heads,
        vec![
            (1, MessageKind::Request),
            (1, MessageKind::Response),
            (3, MessageKind::Request),
            (3, MessageKind::Response)
        ]
    );
}

#[test]
fn gap_inside_data_keeps_frame_sync() {
    let scenario = scenario(6, true, 5000);
    // Stream 5's response carries a 5000-byte DATA payload; cut 1000 bytes out of it.
    let mut pieces: Vec<(Direction, Piece<'_>)> = Vec::new();
    let mut cut_done = false;
    for (direction, bytes) in &scenario.timeline {
        if *direction == OUT && bytes.len() == 4096 && !cut_done {
            cut_done = true;
            pieces.push((OUT, Piece::Bytes(&bytes[..2000])));
            pieces.push((OUT, Piece::Gap(1000)));
            pieces.push((OUT, Piece::Bytes(&bytes[3000..])));
        } else {
            pieces.push((*direction, Piece::Bytes(bytes)));
        }
    }
    assert!(cut_done);
    let (events, decoder) = run(Role::Server, &pieces);
    assert_eq!(assert_never_wrong(&scenario, &events), scenario.truth.len());
    let missing: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            HttpEvent::Body {
                stream,
                missing,
                data,
                end_stream,
                ..
            } if *missing > 0 => Some((*stream, *missing, data.len(), *end_stream)),
            _ => None,
        })
        .collect();
    assert_eq!(missing, vec![(5, 1000, 4000, true)]);
    assert_eq!(decoder.stats().desyncs, 0);
    assert_eq!(decoder.stats().gap_bytes, 1000);
}

#[test]
fn gap_inside_a_header_block_loses_that_block_and_unknown_references_only() {
    let scenario = scenario(8, false, 10);
    // Cut into the HEADERS payload of request stream 3 (the second request).
    let mut pieces: Vec<(Direction, Piece<'_>)> = Vec::new();
    let mut headers_seen = 0;
    let mut previous_header: Option<u8> = None;
    for (direction, bytes) in &scenario.timeline {
        let payload_of_headers =
            *direction == IN && previous_header == Some(HEADERS) && bytes.len() > 9;
        if payload_of_headers {
            headers_seen += 1;
        }
        if payload_of_headers && headers_seen == 2 {
            pieces.push((IN, Piece::Bytes(&bytes[..5])));
            pieces.push((IN, Piece::Gap(3)));
            pieces.push((IN, Piece::Bytes(&bytes[8..])));
        } else {
            pieces.push((*direction, Piece::Bytes(bytes)));
        }
        previous_header = if *direction == IN && bytes.len() == 9 {
            Some(bytes[3])
        } else {
            None
        };
    }
    let (events, decoder) = run(Role::Server, &pieces);
    let decoded = assert_never_wrong(&scenario, &events);
    let lost: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            HttpEvent::Head {
                stream,
                kind: MessageKind::Request,
                fields: None,
                ..
            } => Some(*stream),
            _ => None,
        })
        .collect();
    assert_eq!(lost[0], 3);
    // Responses are unaffected; requests after the loss reference the lost block's entries.
    assert!(decoded >= scenario.truth.len() - 7, "{decoded}");
    let desyncs: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, HttpEvent::Desync { .. }))
        .collect();
    assert_eq!(desyncs.len(), 1);
    assert!(matches!(
        desyncs[0],
        HttpEvent::Desync { direction: IN, .. }
    ));
    // Framing stayed: every request head is still reported, in order.
    let request_heads: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            HttpEvent::Head {
                stream,
                kind: MessageKind::Request,
                ..
            } => Some(*stream),
            _ => None,
        })
        .collect();
    assert_eq!(request_heads, (0..8).map(|i| 2 * i + 1).collect::<Vec<_>>());
    assert_eq!(decoder.stats().resyncs, 0);
}

#[test]
fn gap_in_a_frame_header_resyncs_at_the_next_piece_start() {
    let scenario = scenario(6, true, 10);
    let mut pieces: Vec<(Direction, Piece<'_>)> = Vec::new();
    let mut ingress_headers = 0;
    for (direction, bytes) in &scenario.timeline {
        if *direction == IN && bytes.len() == 9 {
            ingress_headers += 1;
            if ingress_headers == 6 {
                pieces.push((IN, Piece::Gap(9)));
                continue;
            }
        }
        pieces.push((*direction, Piece::Bytes(bytes)));
    }
    let (events, decoder) = run(Role::Server, &pieces);
    assert_never_wrong(&scenario, &events);
    assert!(decoder.stats().resyncs >= 1);
    assert_eq!(decoder.protocol(), Protocol::Http2);
    // The last request is still seen (head or at least its stream).
    assert!(events.iter().any(|e| matches!(
        e,
        HttpEvent::Head {
            stream: 11,
            kind: MessageKind::Request,
            ..
        }
    )));
}

#[test]
fn joining_mid_connection_never_yields_a_wrong_header() {
    for huffman in [false, true] {
        let scenario = scenario(16, huffman, 9000);
        let mut total_decoded = 0;
        let mut runs = 0;
        for start in 0..scenario.timeline.len() {
            let piece_len = scenario.timeline[start].1.len();
            let cuts: BTreeSet<usize> = [0, 1, 4, 9, piece_len / 2, piece_len.saturating_sub(1)]
                .into_iter()
                .filter(|&c| c < piece_len.max(1))
                .collect();
            for cut in cuts {
                let mut pieces = vec![(
                    scenario.timeline[start].0,
                    Piece::Bytes(&scenario.timeline[start].1[cut..]),
                )];
                pieces.extend(
                    scenario.timeline[start + 1..]
                        .iter()
                        .map(|(d, b)| (*d, Piece::Bytes(&b[..]))),
                );
                let (events, decoder) = run(Role::Server, &pieces);
                total_decoded += assert_never_wrong(&scenario, &events);
                runs += 1;
                assert!(decoder.buffered_bytes() < 64 * 1024);
                if start > 0 {
                    assert_ne!(decoder.protocol(), Protocol::Http1);
                }
            }
        }
        // Joining late still decodes blocks that only reference entries seen inserted.
        assert!(
            total_decoded > runs,
            "{total_decoded} heads over {runs} runs"
        );
    }
}

#[test]
fn joining_late_recovers_once_the_table_is_known_again() {
    let mut client = Encoder::new(true);
    let request = [
        (":method", "GET"),
        (":path", "/api/v1/pods"),
        ("user-agent", "kubelet"),
    ];
    // Sent before the decoder attached: inserts ":path" and "user-agent" entries.
    let _unseen = client.encode(&request);
    let mut pieces = vec![frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0])];
    // References the unseen entries.
    pieces.push(frame(HEADERS, 0x5, 3, &client.encode(&request)));
    // Inserts a new entry, then references only it and the static table.
    pieces.push(frame(
        HEADERS,
        0x5,
        5,
        &client.encode(&[(":method", "GET"), ("x-new", "1")]),
    ));
    pieces.push(frame(
        HEADERS,
        0x5,
        7,
        &client.encode(&[(":method", "GET"), ("x-new", "1")]),
    ));
    // A size update to 0 empties the table: everything after is known.
    let mut block = Vec::new();
    client.size_update(0, &mut block);
    client.size_update(4096, &mut block);
    block.extend(client.encode(&request));
    pieces.push(frame(HEADERS, 0x5, 9, &block));
    pieces.push(frame(HEADERS, 0x5, 11, &client.encode(&request)));
    pieces.push(frame(
        HEADERS,
        0x5,
        13,
        &client.encode(&[("user-agent", "other")]),
    ));
    let pieces: Vec<_> = pieces.iter().map(|b| (IN, Piece::Bytes(&b[..]))).collect();
    let (events, decoder) = run(Role::Server, &pieces);
    let summary: Vec<_> = events
        .iter()
        .map(|e| match e {
            HttpEvent::Head {
                stream,
                fields,
                kind,
                ..
            } => (*stream, fields.as_ref().map(|f| f.len()), Some(*kind)),
            HttpEvent::Desync { .. } => (0, None, None),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (0, None, None),
            (3, None, Some(MessageKind::Request)),
            (5, Some(2), Some(MessageKind::Request)),
            (7, Some(2), Some(MessageKind::Request)),
            (9, Some(3), Some(MessageKind::Request)),
            (11, Some(3), Some(MessageKind::Request)),
            (13, Some(1), Some(MessageKind::Trailers)),
        ]
    );
    assert_eq!(decoder.stats().header_blocks_undecoded, 1);
}

/// Deterministic pseudo-random bytes.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[test]
fn garbage_ends_opaque_with_bounded_memory() {
    let limits = ProtocolLimits::default();
    for seed in 1..20u64 {
        let data = noise(seed, 3 * 1024 * 1024);
        let mut decoder = ProtocolDecoder::new(Role::Server, limits.clone());
        let mut out = Vec::new();
        for (i, chunk) in data.chunks(1000 + seed as usize * 37).enumerate() {
            let direction = if i % 3 == 0 { OUT } else { IN };
            decoder.feed(direction, 1, Piece::Bytes(chunk), &mut out);
            assert!(decoder.buffered_bytes() <= 2 * limits.max_buffered_bytes_per_direction);
        }
        // Random bytes could, rarely, look like a frame; then they must still never yield
        // a decoded head.
        assert!(out.iter().all(|e| !matches!(
            e,
            HttpEvent::Head {
                fields: Some(_),
                ..
            }
        )));
        if decoder.protocol() == Protocol::Opaque {
            assert_eq!(decoder.stats().unrecognized, 1);
        }
    }
    let mut decoder = ProtocolDecoder::new(Role::Server, limits);
    let text = b"this is not http at all, just text\r\n".repeat(40_000);
    let mut out = Vec::new();
    for chunk in text.chunks(4096) {
        decoder.feed(IN, 1, Piece::Bytes(chunk), &mut out);
    }
    assert_eq!(decoder.protocol(), Protocol::Opaque);
    assert!(out.is_empty());
}

#[test]
fn garbage_after_sync_is_skipped_and_counted() {
    let scenario = scenario(4, true, 10);
    let junk = noise(99, 5000);
    let mut pieces: Vec<_> = scenario
        .timeline
        .iter()
        .map(|(d, b)| (*d, Piece::Bytes(&b[..])))
        .collect();
    pieces.insert(8, (IN, Piece::Bytes(&junk)));
    let (events, decoder) = run(Role::Server, &pieces);
    assert_never_wrong(&scenario, &events);
    assert!(decoder.stats().desyncs >= 1);
    assert!(decoder.stats().discarded_bytes > 0);
}

#[test]
fn oversized_header_block_is_lost_but_framing_continues() {
    let limits = ProtocolLimits {
        max_header_block_bytes: 64,
        ..ProtocolLimits::default()
    };
    let mut encoder = Encoder::new(false);
    let long = "x".repeat(200);
    let mut ingress = CLIENT_PREFACE.to_vec();
    ingress.extend(frame(
        HEADERS,
        0x4,
        1,
        &encoder.encode(&[(":method", "GET"), ("x-long", &long)]),
    ));
    ingress.extend(frame(
        HEADERS,
        0x5,
        3,
        &encoder.encode(&[(":method", "GET"), (":path", "/")]),
    ));
    let mut decoder = ProtocolDecoder::new(Role::Server, limits);
    let mut out = Vec::new();
    decoder.feed(IN, 7, Piece::Bytes(&ingress), &mut out);
    assert!(matches!(out[0], HttpEvent::Desync { direction: IN, .. }));
    assert!(matches!(
        out[1],
        HttpEvent::Head {
            stream: 1,
            fields: None,
            ..
        }
    ));
    assert_eq!(
        out[2],
        head(
            3,
            MessageKind::Request,
            &[(":method", "GET"), (":path", "/")],
            true,
            9 + 2
        )
    );
    assert_eq!(decoder.stats().buffer_overflows, 1);
}

#[test]
fn table_size_updates_and_settings_are_honoured() {
    let mut client = Encoder::new(true);
    let request = [(":method", "GET"), (":path", "/healthz"), ("x-a", "1")];
    let mut ingress = CLIENT_PREFACE.to_vec();
    // The server limits the client's encoder table to 64 bytes.
    let egress = frame(SETTINGS, 0, 0, &[0, 1, 0, 0, 0, 64]);
    ingress.extend(frame(HEADERS, 0x5, 1, &client.encode(&request)));
    let mut block = Vec::new();
    client.size_update(64, &mut block);
    block.extend(client.encode(&request));
    ingress.extend(frame(HEADERS, 0x5, 3, &block));
    let mut block = Vec::new();
    client.size_update(0, &mut block);
    client.size_update(4096, &mut block);
    block.extend(client.encode(&request));
    block.extend(client.encode(&[("x-a", "1")]));
    ingress.extend(frame(HEADERS, 0x5, 5, &block));
    let (events, decoder) = run(
        Role::Server,
        &[(OUT, Piece::Bytes(&egress)), (IN, Piece::Bytes(&ingress))],
    );
    let heads: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            HttpEvent::Head { stream, fields, .. } => Some((*stream, fields.clone())),
            _ => None,
        })
        .collect();
    let mut twice = fields(&request);
    twice.extend(fields(&[("x-a", "1")]));
    assert_eq!(
        heads,
        vec![
            (1, Some(fields(&request))),
            (3, Some(fields(&request))),
            (5, Some(twice))
        ]
    );
    assert_eq!(decoder.stats().desyncs, 0);
}

#[test]
fn malformed_header_lists_are_not_reported() {
    let mut encoder = Encoder::new(false);
    let mut ingress = CLIENT_PREFACE.to_vec();
    // Upper-case name, then a pseudo-field after a regular one, then a good block.
    ingress.extend(frame(
        HEADERS,
        0x5,
        1,
        &encoder.encode(&[(":method", "GET"), ("X-Upper", "1")]),
    ));
    ingress.extend(frame(
        HEADERS,
        0x5,
        3,
        &encoder.encode(&[("accept", "*/*"), (":path", "/")]),
    ));
    let mut clean = Encoder::new(false);
    let mut block = Vec::new();
    clean.size_update(0, &mut block);
    block.extend(clean.encode(&[(":method", "GET"), (":path", "/ok")]));
    ingress.extend(frame(HEADERS, 0x5, 5, &block));
    let (events, decoder) = run(Role::Server, &[(IN, Piece::Bytes(&ingress))]);
    let heads: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            HttpEvent::Head { stream, fields, .. } => Some((*stream, fields.is_some())),
            _ => None,
        })
        .collect();
    assert_eq!(heads, vec![(1, false), (3, false), (5, true)]);
    assert_eq!(decoder.stats().protocol_errors, 2);
}

#[test]
fn interim_responses_are_response_heads_and_long_goaway_is_read() {
    let mut client = Encoder::new(false);
    let mut server = Encoder::new(false);
    let mut ingress = CLIENT_PREFACE.to_vec();
    ingress.extend(frame(
        HEADERS,
        0x5,
        1,
        &client.encode(&[(":method", "GET"), (":path", "/")]),
    ));
    let mut egress = frame(
        HEADERS,
        0x4,
        1,
        &server.encode(&[(":status", "103"), ("link", "</a>")]),
    );
    egress.extend(frame(
        HEADERS,
        0x4,
        1,
        &server.encode(&[(":status", "200")]),
    ));
    egress.extend(frame(DATA, 0, 1, b"ok"));
    egress.extend(frame(
        HEADERS,
        0x5,
        1,
        &server.encode(&[("grpc-status", "0")]),
    ));
    let mut goaway = vec![0, 0, 0, 1, 0, 0, 0, 2];
    goaway.extend(vec![b'x'; 10_000]);
    egress.extend(frame(GOAWAY, 0, 0, &goaway));
    let (events, decoder) = run(
        Role::Server,
        &[(IN, Piece::Bytes(&ingress)), (OUT, Piece::Bytes(&egress))],
    );
    let kinds: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            HttpEvent::Head {
                kind,
                fields: Some(f),
                ..
            } => Some((*kind, f[0].value.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            (MessageKind::Request, "GET".to_string()),
            (MessageKind::Response, "103".to_string()),
            (MessageKind::Response, "200".to_string()),
            (MessageKind::Trailers, "0".to_string()),
        ]
    );
    assert_eq!(
        events.last(),
        Some(&HttpEvent::GoAway {
            last_stream_id: 1,
            error_code: 2,
            direction: OUT,
            timestamp_ns: 7
        })
    );
    assert_eq!(decoder.stats().buffer_overflows, 0);
}
