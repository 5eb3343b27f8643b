use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Instant;

use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue as ProtoKeyValue, any_value};
use prost::Message as _;

use super::*;
use crate::sinks::fixtures;

#[test]
fn traceparent_parsing() {
    let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let sc = parse_traceparent(valid).expect("valid");
    assert_eq!(
        sc.trace_id(),
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
    );
    assert_eq!(sc.span_id(), SpanId::from_hex("00f067aa0ba902b7").unwrap());
    assert!(sc.is_remote());
    assert!(sc.is_sampled());
    let unsampled = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
    assert!(!unsampled.expect("valid").is_sampled());
    // A later version may append fields.
    assert!(
        parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra")
            .is_some()
    );
    for invalid in [
        "",
        "garbage",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba9zzzz-01",
    ] {
        assert!(parse_traceparent(invalid).is_none(), "{invalid:?}");
    }
}

#[test]
fn timestamps_and_severity() {
    assert_eq!(
        rfc3339_micros(fixtures::START),
        "2021-01-02T03:04:05.678901Z"
    );
    assert_eq!(rfc3339_micros(0), "1970-01-01T00:00:00.000000Z");
    assert_eq!(
        rfc3339_micros(951_782_400_000_000_000),
        "2000-02-29T00:00:00.000000Z"
    );
    assert_eq!(severity(&fixtures::create_configmap()).1, "INFO");
    assert_eq!(severity(&fixtures::throttled_list()).1, "WARN");
    let mut failed = fixtures::create_configmap();
    failed.code = Some(500);
    assert_eq!(severity(&failed).1, "ERROR");
    assert!(span_status(&failed).is_some());
    assert!(span_status(&fixtures::throttled_list()).is_none());
    assert_eq!(
        parse_headers("Authorization=Bearer x, x-scope=a=b").unwrap(),
        Headers(vec![
            ("authorization".into(), "Bearer x".into()),
            ("x-scope".into(), "a=b".into())
        ])
    );
    assert!(parse_headers("novalue").is_err());
}

/// Request paths and bodies, in arrival order.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// An OTLP/HTTP collector stand-in: records every POST body by path.
struct Receiver {
    address: SocketAddr,
    received: Received,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    /// OTLP/HTTP (HTTP/1.1, protobuf bodies) or OTLP/gRPC (HTTP/2, length-prefixed messages,
    /// `grpc-status` trailer). gRPC bodies are stored under the HTTP paths, unprefixed.
    fn start(protocol: OtlpProtocol) -> Receiver {
        Receiver::start_with(protocol, None)
    }

    /// As [`Receiver::start`], behind TLS when `tls` is given (the handshake first, then HTTP).
    fn start_with(protocol: OtlpProtocol, tls: Option<tokio_rustls::TlsAcceptor>) -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let address = listener.local_addr().unwrap();
        let received: Received = Arc::default();
        let store = received.clone();
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let store = store.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                            let store = store.clone();
                            async move { Ok::<_, hyper::Error>(receive(request, &store).await) }
                        });
                    if let Some(tls) = tls {
                        // A refused handshake (no or a wrong client certificate) ends here.
                        let Ok(stream) = tls.accept(stream).await else {
                            return;
                        };
                        let _ = hyper::server::conn::http2::Builder::new(
                            hyper_util::rt::TokioExecutor::new(),
                        )
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                        return;
                    }
                    let io = TokioIo::new(stream);
                    let _ = match protocol {
                        OtlpProtocol::HttpProtobuf => {
                            hyper::server::conn::http1::Builder::new()
                                .serve_connection(io, service)
                                .await
                        }
                        OtlpProtocol::Grpc => {
                            hyper::server::conn::http2::Builder::new(
                                hyper_util::rt::TokioExecutor::new(),
                            )
                            .serve_connection(io, service)
                            .await
                        }
                    };
                });
            }
        });
        Receiver {
            address,
            received,
            _runtime: runtime,
        }
    }

    fn bodies(&self, path: &str) -> Vec<Vec<u8>> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, b)| b.clone())
            .collect()
    }
}

type ReplyBody = http_body_util::combinators::WithTrailers<
    Full<Bytes>,
    std::future::Ready<Option<Result<hyper::HeaderMap, std::convert::Infallible>>>,
>;

async fn receive(
    request: hyper::Request<Incoming>,
    store: &Received,
) -> hyper::Response<ReplyBody> {
    let path = request.uri().path().to_string();
    let grpc = request
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes().to_vec(),
        Err(_) => Vec::new(),
    };
    let (path, body, content_type, reply, trailers) = if grpc {
        let path = match path.as_str() {
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export" => "/v1/traces",
            "/opentelemetry.proto.collector.logs.v1.LogsService/Export" => "/v1/logs",
            "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export" => "/v1/metrics",
            other => other,
        }
        .to_string();
        // One uncompressed message: flag byte, 4-byte length, protobuf. The reply is an empty
        // Export*ServiceResponse, framed the same way, then the status trailer.
        let mut trailers = hyper::HeaderMap::new();
        trailers.insert("grpc-status", hyper::header::HeaderValue::from_static("0"));
        (
            path,
            body.get(5..).unwrap_or_default().to_vec(),
            "application/grpc",
            Bytes::from_static(&[0, 0, 0, 0, 0]),
            Some(Ok(trailers)),
        )
    } else {
        (path, body, "application/x-protobuf", Bytes::new(), None)
    };
    store.lock().unwrap().push((path, body));
    let mut response =
        hyper::Response::new(Full::new(reply).with_trailers(std::future::ready(trailers)));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}

fn args(endpoint: String, protocol: OtlpProtocol) -> OtlpArgs {
    OtlpArgs {
        otlp_endpoint: Some(endpoint),
        otlp_protocol: protocol,
        otlp_timeout: Duration::from_secs(2),
        otlp_export_interval: Duration::from_millis(200),
        otlp_metric_export_interval: Duration::from_millis(200),
        cluster_name: Some("test-cluster".into()),
        node_name: Some("node-1".into()),
        ..OtlpArgs::default()
    }
}

fn attr<'a>(attributes: &'a [ProtoKeyValue], key: &str) -> Option<&'a any_value::Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn text(value: &str) -> any_value::Value {
    any_value::Value::StringValue(value.to_string())
}

#[test]
fn exports_spans_logs_and_metrics_over_http() {
    exports_spans_logs_and_metrics(OtlpProtocol::HttpProtobuf);
}

#[test]
fn exports_spans_logs_and_metrics_over_grpc() {
    exports_spans_logs_and_metrics(OtlpProtocol::Grpc);
}

fn exports_spans_logs_and_metrics(protocol: OtlpProtocol) {
    let receiver = Receiver::start(protocol);
    let sink = OtlpSink::new(&args(format!("http://{}", receiver.address), protocol))
        .unwrap()
        .expect("configured");
    let metrics = crate::sinks::request_metrics::RequestMetrics::default().with_otel(&sink.meter());
    let create = fixtures::create_configmap();
    let mut traced = fixtures::watch_pods();
    traced.traceparent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
    let mut quiet = fixtures::healthz();
    quiet.capture_level = CaptureLevel::None;
    for r in [&create, &traced, &quiet] {
        metrics.observe(r);
        sink.send(r);
    }
    let stats = sink.metrics().clone();
    assert!(sink.shutdown(Duration::from_secs(5)), "flushed in time");

    let spans: Vec<_> = receiver
        .bodies("/v1/traces")
        .iter()
        .map(|b| ExportTraceServiceRequest::decode(b.as_slice()).unwrap())
        .flat_map(|r| r.resource_spans)
        .collect();
    let resource = spans[0].resource.as_ref().unwrap();
    assert_eq!(
        attr(&resource.attributes, "service.name"),
        Some(&text("kube-apiserver"))
    );
    assert_eq!(
        attr(&resource.attributes, "k8s.node.name"),
        Some(&text("node-1"))
    );
    assert_eq!(
        attr(&resource.attributes, "k8s.cluster.name"),
        Some(&text("test-cluster"))
    );
    let spans: Vec<_> = spans
        .into_iter()
        .flat_map(|r| r.scope_spans)
        .flat_map(|s| s.spans)
        .collect();
    // CaptureLevel::None: no span.
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let span = spans
        .iter()
        .find(|s| s.name == "POST /api/v1/namespaces/{namespace}/configmaps")
        .expect("create span");
    assert_eq!(span.kind, 2, "SERVER");
    assert_eq!(span.start_time_unix_nano, create.start_unix_nano);
    assert_eq!(span.end_time_unix_nano, create.end_unix_nano);
    assert!(
        span.parent_span_id.is_empty(),
        "no traceparent: a new trace"
    );
    assert_eq!(
        attr(&span.attributes, "http.request.method"),
        Some(&text("POST"))
    );
    assert_eq!(
        attr(&span.attributes, "http.response.status_code"),
        Some(&any_value::Value::IntValue(201))
    );
    assert_eq!(
        attr(&span.attributes, "k8s.apiserver.audit_id"),
        Some(&text("6f1c9e4a-0000-4000-8000-000000000001"))
    );
    assert_eq!(
        span.status.as_ref().map(|s| s.code).unwrap_or(0),
        0,
        "unset"
    );

    let watch = spans
        .iter()
        .find(|s| s.name == "GET /api/v1/namespaces/{namespace}/pods")
        .expect("watch span");
    assert_eq!(
        hex(&watch.trace_id),
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "the client's trace continues"
    );
    assert_eq!(hex(&watch.parent_span_id), "00f067aa0ba902b7");
    assert_eq!(
        attr(&watch.attributes, "k8s.apiserver.watch.events.modified"),
        Some(&any_value::Value::IntValue(5))
    );

    let logs: Vec<_> = receiver
        .bodies("/v1/logs")
        .iter()
        .map(|b| ExportLogsServiceRequest::decode(b.as_slice()).unwrap())
        .flat_map(|r| r.resource_logs)
        .flat_map(|r| r.scope_logs)
        .flat_map(|s| s.log_records)
        .collect();
    assert_eq!(logs.len(), 2);
    for span in &spans {
        let log = logs
            .iter()
            .find(|l| l.span_id == span.span_id)
            .expect("a log record per span");
        assert_eq!(log.trace_id, span.trace_id, "trace-correlated");
        assert_eq!(log.time_unix_nano, span.end_time_unix_nano);
        assert_eq!(log.event_name, "k8s.apiserver.request");
    }
    let create_log = logs.iter().find(|l| l.span_id == span.span_id).unwrap();
    assert_eq!(create_log.severity_text, "INFO");
    let Some(any_value::Value::KvlistValue(body)) =
        create_log.body.as_ref().and_then(|b| b.value.as_ref())
    else {
        panic!("audit event body: {:?}", create_log.body);
    };
    assert_eq!(
        attr(&body.values, "auditID"),
        Some(&text("6f1c9e4a-0000-4000-8000-000000000001"))
    );
    assert_eq!(attr(&body.values, "verb"), Some(&text("create")));
    assert_eq!(
        attr(&body.values, "requestReceivedTimestamp"),
        Some(&text("2021-01-02T03:04:05.678901Z"))
    );
    let Some(any_value::Value::KvlistValue(object_ref)) = attr(&body.values, "objectRef") else {
        panic!("objectRef");
    };
    assert_eq!(attr(&object_ref.values, "name"), Some(&text("app-config")));
    assert_eq!(
        attr(&object_ref.values, "namespace"),
        Some(&text("default"))
    );
    assert!(
        attr(&body.values, "requestObject").is_none(),
        "metadata level: no body"
    );

    let metric_names: Vec<String> = receiver
        .bodies("/v1/metrics")
        .iter()
        .map(|b| ExportMetricsServiceRequest::decode(b.as_slice()).unwrap())
        .flat_map(|r| r.resource_metrics)
        .flat_map(|r| r.scope_metrics)
        .flat_map(|s| s.metrics)
        .map(|m| m.name)
        .collect();
    for name in [
        "apiscope_request_total",
        "apiscope_request_duration_seconds",
        "apiscope_response_sizes_bytes",
        "apiscope_watch_events_total",
        "apiscope_nonresource_request_total",
    ] {
        assert!(
            metric_names.iter().any(|n| n == name),
            "{name} in {metric_names:?}"
        );
    }
    assert_eq!(stats.exported("traces"), 2);
    assert_eq!(stats.exported("logs"), 2);
    assert_eq!(stats.dropped("traces") + stats.failed("traces"), 0);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A port nobody listens on.
fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

#[test]
fn collector_down_never_blocks_and_losses_are_counted() {
    for protocol in [OtlpProtocol::HttpProtobuf, OtlpProtocol::Grpc] {
        collector_unavailable(protocol, closed_port());
    }
}

/// A collector that accepts connections and never answers: exports end at the timeout.
#[test]
fn hanging_collector_is_bounded_by_the_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    for protocol in [OtlpProtocol::HttpProtobuf, OtlpProtocol::Grpc] {
        collector_unavailable(protocol, listener.local_addr().unwrap());
    }
}

fn collector_unavailable(protocol: OtlpProtocol, address: SocketAddr) {
    let mut config = args(format!("http://{address}"), protocol);
    config.otlp_max_queue_size = 8;
    config.otlp_timeout = Duration::from_millis(500);
    let sink = OtlpSink::new(&config).unwrap().expect("configured");
    let metrics = crate::sinks::request_metrics::RequestMetrics::default().with_otel(&sink.meter());
    let request = fixtures::create_configmap();
    let started = Instant::now();
    for _ in 0..100 {
        metrics.observe(&request);
        sink.send(&request);
    }
    let elapsed = started.elapsed();
    let stats = sink.metrics().clone();
    // Nothing waits for the network: 100 spans + logs are queued or dropped at once.
    assert!(
        elapsed < Duration::from_secs(1),
        "{protocol:?}: sending took {elapsed:?}"
    );
    assert!(
        stats.dropped("traces") >= 92,
        "{protocol:?}: {}",
        stats.dropped("traces")
    );
    let shutdown = Instant::now();
    sink.shutdown(Duration::from_secs(3));
    let shutdown = shutdown.elapsed();
    assert!(
        shutdown < Duration::from_millis(3500),
        "{protocol:?}: shutdown took {shutdown:?}"
    );
    for signal in ["traces", "logs"] {
        assert_eq!(stats.exported(signal), 0);
        assert_eq!(
            stats.failed(signal) + stats.dropped(signal),
            100,
            "{protocol:?} {signal}: every item accounted for"
        );
    }
    assert!(stats.metric_export_failures() >= 1, "{protocol:?}");
    eprintln!(
        "{protocol:?}: 100 sends in {elapsed:?}, shutdown {shutdown:?}, traces dropped {} failed {}",
        stats.dropped("traces"),
        stats.failed("traces")
    );
}

/// A CA, and the server and client certificates it signs, generated for one test.
struct TestPki {
    ca_pem: String,
    ca_der: rustls::pki_types::CertificateDer<'static>,
    server_cert: rustls::pki_types::CertificateDer<'static>,
    server_key: rustls::pki_types::PrivateKeyDer<'static>,
    client_cert_pem: String,
    client_key_pem: String,
}

impl TestPki {
    fn generate(ca_name: &str) -> TestPki {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, ca_name);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()])
            .unwrap()
            .signed_by(&server_key, &ca)
            .unwrap();
        let client_key = KeyPair::generate().unwrap();
        let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        client_params
            .distinguished_name
            .push(DnType::CommonName, "apiscope");
        let client = client_params.signed_by(&client_key, &ca).unwrap();
        TestPki {
            ca_pem: ca.pem(),
            ca_der: ca.der().clone(),
            server_cert: server.der().clone(),
            server_key: rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
            client_cert_pem: client.pem(),
            client_key_pem: client_key.serialize_pem(),
        }
    }

    /// A server that requires a client certificate signed by this CA (mutual TLS), ALPN h2.
    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![self.server_cert.clone()], self.server_key.clone_key())
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }

    /// The CA, client certificate and key as files, and OTLP args that use them.
    fn args(&self, dir: &std::path::Path, address: SocketAddr) -> OtlpArgs {
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        OtlpArgs {
            otlp_ca_file: Some(write("ca.pem", &self.ca_pem)),
            otlp_client_cert: Some(write("client.pem", &self.client_cert_pem)),
            otlp_client_key: Some(write("client-key.pem", &self.client_key_pem)),
            ..args(format!("https://{address}"), OtlpProtocol::Grpc)
        }
    }
}

/// Spans reach a collector that requires mutual TLS; trusting another CA, or presenting no
/// client certificate, nothing does and the exports are counted as failed.
#[test]
fn exports_over_mutual_tls_and_refuses_a_wrong_ca() {
    let pki = TestPki::generate("apiscope test CA");
    let dir = tempfile::tempdir().unwrap();
    let export = |args: &OtlpArgs| {
        let sink = OtlpSink::new(args).unwrap().expect("configured");
        sink.send(&fixtures::create_configmap());
        let stats = sink.metrics().clone();
        sink.shutdown(Duration::from_secs(5));
        stats
    };

    let receiver = Receiver::start_with(OtlpProtocol::Grpc, Some(pki.acceptor()));
    let stats = export(&pki.args(dir.path(), receiver.address));
    assert_eq!(
        stats.exported("traces"),
        1,
        "failed: {}",
        stats.failed("traces")
    );
    let spans: Vec<_> = receiver
        .bodies("/v1/traces")
        .iter()
        .map(|b| ExportTraceServiceRequest::decode(b.as_slice()).unwrap())
        .flat_map(|r| r.resource_spans)
        .flat_map(|r| r.scope_spans)
        .flat_map(|s| s.spans)
        .collect();
    assert_eq!(spans.len(), 1);

    // The collector's certificate is not signed by the CA apiscope trusts.
    let other = TestPki::generate("another CA");
    let receiver = Receiver::start_with(OtlpProtocol::Grpc, Some(pki.acceptor()));
    let other_dir = tempfile::tempdir().unwrap();
    let mut wrong_ca = pki.args(dir.path(), receiver.address);
    wrong_ca.otlp_ca_file = other.args(other_dir.path(), receiver.address).otlp_ca_file;
    wrong_ca.otlp_timeout = Duration::from_millis(500);
    let stats = export(&wrong_ca);
    assert_eq!(stats.exported("traces"), 0);
    assert_eq!(stats.failed("traces"), 1);
    assert!(receiver.bodies("/v1/traces").is_empty());

    // No client certificate: the collector refuses the handshake.
    let mut anonymous = pki.args(dir.path(), receiver.address);
    anonymous.otlp_client_cert = None;
    anonymous.otlp_client_key = None;
    anonymous.otlp_timeout = Duration::from_millis(500);
    let stats = export(&anonymous);
    assert_eq!(stats.exported("traces"), 0);
    assert!(receiver.bodies("/v1/traces").is_empty());
}

/// A TLS file that cannot be used stops the start with the flag and the file, not a later export.
#[test]
fn unusable_tls_files_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let address = closed_port();
    let pki = TestPki::generate("apiscope test CA");
    let mut missing = pki.args(dir.path(), address);
    missing.otlp_ca_file = Some(dir.path().join("absent.pem"));
    let error = format!("{:#}", OtlpSink::new(&missing).unwrap_err());
    assert!(
        error.contains("--otlp-ca-file") && error.contains("absent.pem"),
        "{error}"
    );

    let mut not_pem = pki.args(dir.path(), address);
    std::fs::write(dir.path().join("client-key.pem"), "not a key").unwrap();
    not_pem.otlp_client_key = Some(dir.path().join("client-key.pem"));
    let error = format!("{:#}", OtlpSink::new(&not_pem).unwrap_err());
    assert!(
        error.contains("--otlp-client-key") && error.contains("no PEM"),
        "{error}"
    );

    let mut plaintext = pki.args(dir.path(), address);
    plaintext.otlp_endpoint = Some(format!("http://{address}"));
    let error = format!("{:#}", OtlpSink::new(&plaintext).unwrap_err());
    assert!(error.contains("need an https://"), "{error}");

    let mut http = pki.args(dir.path(), address);
    http.otlp_protocol = OtlpProtocol::HttpProtobuf;
    let error = format!("{:#}", OtlpSink::new(&http).unwrap_err());
    assert!(error.contains("grpc only"), "{error}");
}
