use super::*;

fn facts() -> ConnectionFacts {
    ConnectionFacts {
        connection: ConnectionId {
            pid: 7,
            conn_ptr: 0xc000,
            first_seen_ns: 1,
        },
        role: Role::Server,
        local: None,
        remote: None,
        protocol: "2",
    }
}

fn fields(pairs: &[(&str, &str)]) -> Vec<HeaderField> {
    pairs
        .iter()
        .map(|(n, v)| HeaderField::new(*n, *v))
        .collect()
}

fn head(
    stream: u32,
    kind: MessageKind,
    f: Option<Vec<HeaderField>>,
    end: bool,
    ts: u64,
) -> HttpEvent {
    HttpEvent::Head {
        stream,
        kind,
        fields: f,
        end_stream: end,
        wire_bytes: 50,
        timestamp_ns: ts,
    }
}

fn body(
    stream: u32,
    kind: MessageKind,
    data: &[u8],
    missing: u32,
    end: bool,
    ts: u64,
) -> HttpEvent {
    HttpEvent::Body {
        stream,
        kind,
        data: data.to_vec(),
        missing,
        end_stream: end,
        wire_bytes: data.len() as u64 + 9,
        timestamp_ns: ts,
    }
}

fn get_pods() -> Vec<HeaderField> {
    fields(&[
        (":method", "GET"),
        (":path", "/api/v1/namespaces/default/pods/p"),
    ])
}

fn ok_response() -> Vec<HeaderField> {
    fields(&[
        (":status", "200"),
        ("audit-id", "a-1"),
        ("content-type", "application/json"),
    ])
}

fn run(assembler: &mut ExchangeAssembler, events: Vec<HttpEvent>) -> Vec<Exchange> {
    let metrics = ExchangeMetrics::default();
    let mut done = Vec::new();
    for event in events {
        assembler.on_event(event, &metrics, &mut done);
    }
    done
}

#[test]
fn a_request_and_its_response_make_one_exchange_with_timings_and_sizes() {
    let mut a = ExchangeAssembler::new(facts(), ExchangeLimits::default());
    let done = run(
        &mut a,
        vec![
            head(1, MessageKind::Request, Some(get_pods()), true, 100),
            head(1, MessageKind::Response, Some(ok_response()), false, 150),
            body(1, MessageKind::Response, b"{\"kind\":", 0, false, 160),
            body(1, MessageKind::Response, b"\"Pod\"}", 0, true, 170),
        ],
    );
    assert_eq!(done.len(), 1);
    let e = &done[0];
    assert_eq!(e.stream, 1);
    assert_eq!(e.status(), Some(200));
    assert_eq!(e.start_ns(), Some(100));
    assert_eq!(e.end_ns(), Some(170));
    assert_eq!(e.response.body, b"{\"kind\":\"Pod\"}");
    assert_eq!(e.response.body_bytes, 14);
    assert_eq!(e.response.wire_bytes, 50 + 17 + 15);
    assert_eq!(e.request.source, Some(HeadersSource::Wire));
    assert_eq!(e.ending, Ending::Complete);
    assert_eq!(a.open_streams(), 0);
}

#[test]
fn interleaved_streams_finish_independently() {
    let mut a = ExchangeAssembler::new(facts(), ExchangeLimits::default());
    let done = run(
        &mut a,
        vec![
            head(1, MessageKind::Request, Some(get_pods()), true, 1),
            head(3, MessageKind::Request, Some(get_pods()), true, 2),
            head(3, MessageKind::Response, Some(ok_response()), true, 3),
            head(1, MessageKind::Response, Some(ok_response()), true, 4),
        ],
    );
    assert_eq!(
        done.iter().map(|e| e.stream).collect::<Vec<_>>(),
        vec![3, 1]
    );
}

#[test]
fn an_informational_head_does_not_replace_the_final_one() {
    let mut a = ExchangeAssembler::new(facts(), ExchangeLimits::default());
    let done = run(
        &mut a,
        vec![
            head(1, MessageKind::Request, Some(get_pods()), false, 1),
            head(
                1,
                MessageKind::Response,
                Some(fields(&[(":status", "100")])),
                false,
                2,
            ),
            body(1, MessageKind::Request, b"x", 0, true, 3),
            head(1, MessageKind::Response, Some(ok_response()), true, 4),
        ],
    );
    assert_eq!(done[0].status(), Some(200));
}

#[test]
fn hook_headers_fill_in_where_the_wire_block_could_not_be_decoded() {
    let metrics = ExchangeMetrics::default();
    let mut a = ExchangeAssembler::new(facts(), ExchangeLimits::default());
    let mut done = Vec::new();
    a.on_event(
        head(5, MessageKind::Request, None, true, 10),
        &metrics,
        &mut done,
    );
    a.on_hook_headers(5, MessageKind::Request, get_pods(), 11, &metrics, &mut done);
    // The response hook fires before the frame is written.
    a.on_hook_headers(
        5,
        MessageKind::Response,
        ok_response(),
        20,
        &metrics,
        &mut done,
    );
    a.on_event(
        head(5, MessageKind::Response, None, true, 21),
        &metrics,
        &mut done,
    );
    assert_eq!(done.len(), 1);
    let e = &done[0];
    assert_eq!(e.request.source, Some(HeadersSource::Hook));
    assert_eq!(
        e.request.header(":path"),
        Some("/api/v1/namespaces/default/pods/p")
    );
    assert_eq!(e.response.header("audit-id"), Some("a-1"));
    assert_eq!(e.start_ns(), Some(10));
    assert_eq!(e.end_ns(), Some(21));
    assert_eq!(metrics.hook_header_blocks.get(), 2);
    assert_eq!(metrics.hook_header_blocks_used.get(), 2);
}

#[test]
fn wire_headers_win_over_hook_headers() {
    let metrics = ExchangeMetrics::default();
    let mut a = ExchangeAssembler::new(facts(), ExchangeLimits::default());
    let mut done = Vec::new();
    a.on_event(
        head(1, MessageKind::Request, Some(get_pods()), true, 1),
        &metrics,
        &mut done,
    );
    a.on_hook_headers(
        1,
        MessageKind::Request,
        fields(&[(":method", "GET"), (":path", "/other")]),
        2,
        &metrics,
        &mut done,
    );
    a.on_event(
        head(1, MessageKind::Response, Some(ok_response()), true, 3),
        &metrics,
        &mut done,
    );
    assert_eq!(
        done[0].request.header(":path"),
        Some("/api/v1/namespaces/default/pods/p")
    );
    assert_eq!(done[0].request.source, Some(HeadersSource::Wire));
    assert_eq!(metrics.hook_header_blocks_used.get(), 0);
}

#[test]
fn resets_goaway_and_close_end_exchanges_as_incomplete() {
    let mut a = ExchangeAssembler::new(facts(), ExchangeLimits::default());
    let mut done = run(
        &mut a,
        vec![
            head(1, MessageKind::Request, Some(get_pods()), true, 1),
            head(3, MessageKind::Request, Some(get_pods()), true, 1),
            head(5, MessageKind::Request, Some(get_pods()), true, 1),
            head(7, MessageKind::Request, Some(get_pods()), true, 1),
            HttpEvent::Reset {
                stream: 1,
                error_code: 8,
                direction: Direction::Ingress,
                timestamp_ns: 5,
            },
            // A GOAWAY from the server abandons the client's streams above 3.
            HttpEvent::GoAway {
                last_stream_id: 3,
                error_code: 0,
                direction: Direction::Egress,
                timestamp_ns: 6,
            },
        ],
    );
    a.close(Ending::ConnectionClosed, &mut done);
    let endings: Vec<(u32, Ending)> = done.iter().map(|e| (e.stream, e.ending.clone())).collect();
    assert_eq!(
        endings,
        vec![
            (
                1,
                Ending::Reset {
                    error_code: 8,
                    by: Direction::Ingress
                }
            ),
            (5, Ending::GoAway { error_code: 0 }),
            (7, Ending::GoAway { error_code: 0 }),
            (3, Ending::ConnectionClosed),
        ]
    );
    assert_eq!(
        done[0].ending.incomplete_reason().as_deref(),
        Some("reset (error code 8) by the peer")
    );
}

#[test]
fn bodies_are_kept_up_to_the_limit_and_the_rest_counted() {
    let mut a = ExchangeAssembler::new(
        facts(),
        ExchangeLimits {
            max_body_bytes: 4,
            ..ExchangeLimits::default()
        },
    );
    let done = run(
        &mut a,
        vec![
            head(1, MessageKind::Request, Some(get_pods()), true, 1),
            head(1, MessageKind::Response, Some(ok_response()), false, 2),
            body(1, MessageKind::Response, b"abc", 0, false, 3),
            body(1, MessageKind::Response, b"defg", 10, true, 4),
        ],
    );
    let r = &done[0].response;
    assert_eq!(r.body, b"abcd");
    assert_eq!(r.body_bytes, 17);
    assert_eq!(r.body_over_limit, 3);
    assert_eq!(r.body_missing, 13);
}

#[test]
fn the_stream_table_is_bounded() {
    let metrics = ExchangeMetrics::default();
    let mut a = ExchangeAssembler::new(
        facts(),
        ExchangeLimits {
            max_open_streams: 2,
            ..ExchangeLimits::default()
        },
    );
    let mut done = Vec::new();
    for stream in [1, 3, 5] {
        a.on_event(
            head(stream, MessageKind::Request, Some(get_pods()), true, 1),
            &metrics,
            &mut done,
        );
    }
    assert_eq!(a.open_streams(), 2);
    assert_eq!(done.len(), 1);
    assert_eq!(
        (done[0].stream, done[0].ending.clone()),
        (1, Ending::Evicted)
    );
    assert_eq!(metrics.streams_evicted.get(), 1);
}

#[test]
fn in_flight_are_the_started_and_unanswered_exchanges() {
    let mut a = ExchangeAssembler::new(facts(), ExchangeLimits::default());
    let done = run(
        &mut a,
        vec![
            // Answered: not in flight.
            head(1, MessageKind::Request, Some(get_pods()), true, 1),
            head(1, MessageKind::Response, Some(ok_response()), true, 2),
            // Started, response head sent but body still streaming (a watch): in flight.
            head(3, MessageKind::Request, Some(get_pods()), true, 3),
            head(3, MessageKind::Response, Some(ok_response()), false, 4),
            // Started, no response yet: in flight.
            head(5, MessageKind::Request, Some(get_pods()), false, 5),
            // A stream seen only through an undecodable head: unknown request, not counted.
            head(7, MessageKind::Request, None, true, 6),
        ],
    );
    assert_eq!(done.len(), 1);
    let streams: Vec<u32> = a.in_flight().map(|e| e.stream).collect();
    assert_eq!(streams, vec![3, 5]);
}

#[test]
fn held_body_bytes_follow_the_open_exchanges() {
    let metrics = ExchangeMetrics::default();
    let mut a = ExchangeAssembler::new(facts(), ExchangeLimits::default());
    let mut done = Vec::new();
    for stream in [1, 3] {
        a.on_event(
            head(stream, MessageKind::Request, Some(get_pods()), true, 1),
            &metrics,
            &mut done,
        );
        a.on_event(
            head(stream, MessageKind::Response, Some(ok_response()), false, 2),
            &metrics,
            &mut done,
        );
        a.on_event(
            body(stream, MessageKind::Response, b"abcd", 0, false, 3),
            &metrics,
            &mut done,
        );
    }
    assert_eq!(a.buffered_bytes(), 8);
    a.on_event(
        body(1, MessageKind::Response, b"ef", 0, true, 4),
        &metrics,
        &mut done,
    );
    assert_eq!((done.len(), a.buffered_bytes()), (1, 4));
    a.on_event(
        HttpEvent::Reset {
            stream: 3,
            error_code: 8,
            direction: Direction::Ingress,
            timestamp_ns: 5,
        },
        &metrics,
        &mut done,
    );
    assert_eq!((done.len(), a.buffered_bytes()), (2, 0));
}
