//! Root end-to-end test of `apiscope capture` against a real, stripped kube-apiserver.
//!
//! kubectl creates, gets, lists, watches and deletes objects while apiscope captures; then the
//! captured plaintext is checked against tshark's dissection of apiscope's own pcapng recording
//! (tshark is the independent HTTP/2 oracle), and against what kubectl is known to have sent.

use std::collections::{BTreeMap, BTreeSet};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use std::time::Duration;

use anyhow::{Context, Result, bail};
use apiscope::capture::{ChunkEventKind, TlsChunk};
use apiscope::vocabulary::{ConnectionId, Direction, Role};
use apiscope_e2e::apiscope::{ApiscopeCapture, require_root, test_dir};
use apiscope_e2e::cluster::{ClusterOptions, KubernetesVersion, TestCluster, for_each_version};
use apiscope_e2e::tshark::{TsharkHttp2Frame, dissect_http2};

const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// `apiscope capture --format chunks`: the raw chunk stream these tests check.
fn start_capture(dir: &Path, selector: &[&str]) -> Result<ApiscopeCapture> {
    let mut args = selector.to_vec();
    args.extend(["--format", "chunks"]);
    ApiscopeCapture::start(dir, &args)
}

/// Stops the capture: its chunks, its recording and its final counters.
fn stop_capture(capture: ApiscopeCapture) -> Result<(Vec<TlsChunk>, PathBuf, serde_json::Value)> {
    let result = capture.stop()?;
    let chunks = result
        .output
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<Vec<TlsChunk>, _>>()?;
    Ok((chunks, result.recording, result.summary))
}

/// One HTTP/2 frame as split from our own captured byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Frame {
    frame_type: u8,
    flags: u8,
    stream_id: u32,
    length: u32,
    payload: Vec<u8>,
}

/// The plaintext of one connection and direction, in capture order.
fn streams(chunks: &[TlsChunk]) -> BTreeMap<(ConnectionId, Direction), (Role, Vec<u8>)> {
    let mut streams: BTreeMap<(ConnectionId, Direction), (Role, Vec<u8>)> = BTreeMap::new();
    for chunk in chunks {
        if let ChunkEventKind::Data {
            direction,
            len,
            data,
        } = &chunk.kind
        {
            assert_eq!(
                *len as usize,
                data.0.len(),
                "no truncation expected at this request size"
            );
            let entry = streams
                .entry((chunk.connection, *direction))
                .or_insert((chunk.role, Vec::new()));
            entry.1.extend_from_slice(&data.0);
        }
    }
    streams
}

/// Splits a byte stream into HTTP/2 frames (after the client preface, if present).
fn split_frames(mut bytes: &[u8]) -> Result<Vec<Frame>> {
    if bytes.starts_with(HTTP2_PREFACE) {
        bytes = &bytes[HTTP2_PREFACE.len()..];
    }
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        if bytes.len() < 9 {
            bail!("{} trailing bytes: not a whole frame header", bytes.len());
        }
        let length = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]);
        let end = 9 + length as usize;
        if bytes.len() < end {
            bail!(
                "frame of {length} bytes cut short ({} left)",
                bytes.len() - 9
            );
        }
        frames.push(Frame {
            frame_type: bytes[3],
            flags: bytes[4],
            stream_id: u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff,
            length,
            payload: bytes[9..end].to_vec(),
        });
        bytes = &bytes[end..];
    }
    Ok(frames)
}

fn kubectl_ok(cluster: &TestCluster, args: &[&str]) -> Result<String> {
    let output = cluster.kubectl(args)?;
    if !output.status.success() {
        bail!(
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn captures_kubectl_traffic_of_a_stripped_apiserver_and_matches_tshark() -> Result<()> {
    if !require_root("the capture end-to-end test") {
        return Ok(());
    }
    for_each_version(captures_kubectl_traffic_of_a_stripped_apiserver_and_matches_tshark_on)
}

fn captures_kubectl_traffic_of_a_stripped_apiserver_and_matches_tshark_on(
    kubernetes: KubernetesVersion,
) -> Result<()> {
    let cluster = TestCluster::start(ClusterOptions {
        kubernetes,
        ..ClusterOptions::default()
    })?;
    let dir = test_dir(&format!("capture-{kubernetes}"))?;
    // By pid: another test cluster on the machine may run the same binary.
    let pid = cluster.apiserver_pid().to_string();
    let mut capture = start_capture(&dir, &["--pid", &pid])?;
    capture.wait_for_log(
        &["attached", &format!("\"pid\":{}", cluster.apiserver_pid())],
        Duration::from_secs(30),
    )?;

    // A marker value that must appear verbatim in the captured plaintext of the create request.
    let marker = format!("apiscope-marker-{}", std::process::id());
    let cm = "capture-e2e";
    let mut watch = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .args([
            "get",
            "configmaps",
            "--watch",
            "--output",
            "name",
            "--namespace",
            "default",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_secs(1));
    kubectl_ok(
        &cluster,
        &[
            "create",
            "configmap",
            cm,
            "--namespace",
            "default",
            &format!("--from-literal=key={marker}"),
        ],
    )?;
    let got = kubectl_ok(
        &cluster,
        &[
            "get",
            "configmap",
            cm,
            "--namespace",
            "default",
            "--output",
            "json",
        ],
    )?;
    assert!(got.contains(&marker));
    kubectl_ok(&cluster, &["get", "configmaps", "--namespace", "default"])?;
    kubectl_ok(
        &cluster,
        &["delete", "configmap", cm, "--namespace", "default"],
    )?;
    std::thread::sleep(Duration::from_secs(1));
    watch.kill()?;
    let watch_output = watch.wait_with_output()?;
    assert!(String::from_utf8_lossy(&watch_output.stdout).contains(&format!("configmap/{cm}")));

    let scraped = capture.scrape_metrics()?;
    let metric = |name: &str| -> Option<f64> {
        scraped
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    };
    assert_eq!(
        metric("apiscope_capture_ringbuf_full_drops_total"),
        Some(0.0),
        "{scraped}"
    );
    assert_eq!(
        metric("apiscope_capture_attached_processes"),
        Some(1.0),
        "{scraped}"
    );
    assert!(
        metric("apiscope_capture_events_total").unwrap_or(0.0) > 0.0,
        "{scraped}"
    );

    let (chunks, recording, summary) = stop_capture(capture)?;
    eprintln!("capture summary: {summary}");
    for counter in [
        "ringbuf_full_drops",
        "payload_read_failures",
        "malformed_events",
        "queue_full_drops",
    ] {
        assert_eq!(
            summary[counter], 0,
            "{counter} must be zero at this rate: {summary}"
        );
    }
    assert!(summary["events"].as_u64().unwrap() > 0);

    let port = cluster.apiserver_port();
    let streams = streams(&chunks);
    // Incoming connections from kubectl: the server side of the apiserver's port.
    let server_connections: BTreeSet<ConnectionId> = chunks
        .iter()
        .filter(|c| c.role == Role::Server && c.local.is_some_and(|a| a.port() == port))
        .map(|c| c.connection)
        .collect();
    // The apiserver's own loopback client (its client side is in the same process) connected
    // before the capture and, from v1.2x on, renews its identity lease on it every 10 s: not
    // one of kubectl's connections, and seen from mid-stream.
    let loopback_ports: BTreeSet<u16> = chunks
        .iter()
        .filter(|c| c.role == Role::Client && c.remote.is_some_and(|a| a.port() == port))
        .filter_map(|c| c.local.map(|a| a.port()))
        .collect();
    let mut saw_marker = false;
    let mut complete_connections = 0;
    let mut our_frames: BTreeMap<(u16, u16), Vec<Frame>> = BTreeMap::new();
    for connection in &server_connections {
        let chunk = chunks.iter().find(|c| c.connection == *connection).unwrap();
        let remote_port = chunk.remote.expect("remote address known").port();
        if loopback_ports.contains(&remote_port) {
            continue;
        }
        // A connection opened before attach may show only a close, or one direction.
        let (Some((_, ingress)), Some((_, egress))) = (
            streams.get(&(*connection, Direction::Ingress)),
            streams.get(&(*connection, Direction::Egress)),
        ) else {
            continue;
        };
        complete_connections += 1;
        assert!(
            ingress.starts_with(HTTP2_PREFACE),
            "kubectl speaks HTTP/2 from the first byte"
        );
        saw_marker |= ingress
            .windows(marker.len())
            .any(|w| w == marker.as_bytes());
        our_frames.insert((remote_port, port), split_frames(ingress)?);
        our_frames.insert((port, remote_port), split_frames(egress)?);
    }
    assert!(
        complete_connections >= 5,
        "one connection per kubectl run at least: {server_connections:?}"
    );
    assert!(
        saw_marker,
        "the create request's body is in the captured plaintext"
    );

    // The apiserver is also a TLS client (etcd over gRPC, opened before attach): told apart by role.
    let client_egress = streams.iter().any(|((_, direction), (role, bytes))| {
        *role == Role::Client && *direction == Direction::Egress && !bytes.is_empty()
    });
    assert!(
        client_egress,
        "outgoing (etcd gRPC) connections are captured with role client"
    );

    // tshark, from the recording, must see exactly the frames we split from the chunk stream.
    let tshark_frames = dissect_http2(&recording, &[port])?;
    let mut theirs: BTreeMap<(u16, u16), Vec<&TsharkHttp2Frame>> = BTreeMap::new();
    for frame in &tshark_frames {
        if frame.src_port == port || frame.dst_port == port {
            theirs
                .entry((frame.src_port, frame.dst_port))
                .or_default()
                .push(frame);
        }
    }
    for (ports, ours) in &our_frames {
        let tshark = theirs.get(ports).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(ours.len(), tshark.len(), "frame count on {ports:?}");
        for (a, b) in ours.iter().zip(tshark) {
            assert_eq!(
                (a.frame_type, a.flags, a.stream_id, a.length),
                (b.frame_type, b.flags, b.stream_id, b.length),
                "frame on {ports:?}"
            );
            if a.frame_type == 0 {
                assert_eq!(
                    Some(&a.payload),
                    b.data.as_ref(),
                    "DATA payload on {ports:?}"
                );
            }
        }
    }
    // What tshark decodes from the headers: the requests kubectl made and the apiserver's answers.
    let header = |f: &TsharkHttp2Frame, name: &str| {
        f.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let requests: Vec<(String, String)> = tshark_frames
        .iter()
        .filter_map(|f| Some((header(f, ":method")?, header(f, ":path")?)))
        .collect();
    let statuses: BTreeSet<String> = tshark_frames
        .iter()
        .filter_map(|f| header(f, ":status"))
        .collect();
    let has = |method: &str, path: &str| {
        requests
            .iter()
            .any(|(m, p)| m == method && p.starts_with(path))
    };
    assert!(
        has("POST", "/api/v1/namespaces/default/configmaps"),
        "{requests:?}"
    );
    assert!(
        has(
            "GET",
            &format!("/api/v1/namespaces/default/configmaps/{cm}")
        ),
        "{requests:?}"
    );
    assert!(
        has(
            "DELETE",
            &format!("/api/v1/namespaces/default/configmaps/{cm}")
        ),
        "{requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|(m, p)| m == "GET" && p.contains("configmaps") && p.contains("watch=true")),
        "{requests:?}"
    );
    assert!(
        statuses.contains("201") && statuses.contains("200"),
        "{statuses:?}"
    );

    drop(cluster.kubectl(&["version"]));
    std::fs::remove_dir_all(&dir).ok();
    cluster.stop()?;
    Ok(())
}

#[test]
fn reattaches_after_the_apiserver_restarts() -> Result<()> {
    if !require_root("the capture end-to-end test") {
        return Ok(());
    }
    for_each_version(reattaches_after_the_apiserver_restarts_on)
}

fn reattaches_after_the_apiserver_restarts_on(kubernetes: KubernetesVersion) -> Result<()> {
    let mut cluster = TestCluster::start(ClusterOptions {
        kubernetes,
        ..ClusterOptions::default()
    })?;
    let dir = test_dir(&format!("restart-{kubernetes}"))?;
    let binary = std::fs::read_link(format!("/proc/{}/exe", cluster.apiserver_pid()))?;
    let mut capture = start_capture(&dir, &["--binary", binary.to_str().unwrap()])?;
    let first_pid = cluster.apiserver_pid();
    capture.wait_for_log(
        &["attached", &format!("\"pid\":{first_pid}")],
        Duration::from_secs(30),
    )?;
    kubectl_ok(&cluster, &["get", "namespaces"])?;

    let second_pid = cluster.restart_apiserver()?;
    assert_ne!(first_pid, second_pid);
    capture.wait_for_log(
        &["target process ended", &format!("\"pid\":{first_pid}")],
        Duration::from_secs(30),
    )?;
    capture.wait_for_log(
        &["attached", &format!("\"pid\":{second_pid}")],
        Duration::from_secs(30),
    )?;
    // Bodies travel as literal JSON (paths may be Huffman-coded by HPACK): a marker proves capture.
    let marker = format!("after-restart-{}", std::process::id());
    kubectl_ok(
        &cluster,
        &[
            "create",
            "configmap",
            "restart-e2e",
            "--namespace",
            "default",
            &format!("--from-literal=k={marker}"),
        ],
    )?;
    std::thread::sleep(Duration::from_millis(500));

    let (chunks, _, summary) = stop_capture(capture)?;
    eprintln!("capture summary: {summary}");
    let before = chunks
        .iter()
        .filter(|c| c.connection.pid == first_pid)
        .count();
    let after = chunks
        .iter()
        .filter(|c| c.connection.pid == second_pid)
        .count();
    assert!(
        before > 0 && after > 0,
        "chunks before ({before}) and after ({after}) the restart"
    );
    let marker_seen = chunks.iter().any(|c| {
        c.connection.pid == second_pid
            && c.payload().is_some_and(|(d, _, bytes)| {
                d == Direction::Ingress
                    && bytes.windows(marker.len()).any(|w| w == marker.as_bytes())
            })
    });
    assert!(
        marker_seen,
        "the request after the restart was captured from the new process"
    );
    cluster.stop()?;
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

/// A decoded header block from the HTTP/2 header hooks, flattened for the checks below.
#[derive(Debug, Clone)]
struct HookBlock {
    connection: ConnectionId,
    remote_port: Option<u16>,
    message: apiscope::vocabulary::MessageKind,
    stream_id: u32,
    fields: Vec<(String, String)>,
    dropped: u32,
}

impl HookBlock {
    fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The audit verbs an HTTP method can stand for (the apiserver's RequestInfo rules).
fn verb_matches(method: &str, verb: &str) -> bool {
    match method {
        "POST" => verb == "create",
        "PUT" => verb == "update",
        "PATCH" => verb == "patch",
        "DELETE" => verb == "delete" || verb == "deletecollection",
        "GET" | "HEAD" => matches!(verb, "get" | "list" | "watch"),
        _ => false,
    }
}

/// Connections opened before apiscope attached (kube-controller-manager's and kube-scheduler's
/// clients, the apiserver's loopback client) carry HPACK state the wire decoder never saw; the
/// header hooks must still deliver their requests' and responses' headers, equal to what the
/// apiserver itself logged (audit log) and, on a new connection, to what tshark decodes.
#[test]
fn header_hooks_cover_connections_opened_before_attach() -> Result<()> {
    if !require_root("the capture end-to-end test") {
        return Ok(());
    }
    for_each_version(header_hooks_cover_connections_opened_before_attach_on)
}

fn header_hooks_cover_connections_opened_before_attach_on(
    kubernetes: KubernetesVersion,
) -> Result<()> {
    use apiscope::vocabulary::MessageKind;
    let cluster = TestCluster::start(ClusterOptions {
        kubernetes,
        controller_manager: kubernetes.has_controllers(),
        scheduler: kubernetes.has_controllers(),
        ..ClusterOptions::default()
    })?;
    // Both controllers are running (and have listed and watched) before the capture starts.
    let dir = test_dir(&format!("header-hooks-{kubernetes}"))?;
    // By pid, not by binary: other clusters on the machine may run the same cached apiserver
    // binary, and their requests are not in this cluster's audit log.
    let pid = cluster.apiserver_pid();
    let mut capture = start_capture(&dir, &["--pid", &pid.to_string()])?;
    capture.wait_for_log(
        &["HTTP/2 header hooks attached", &format!("\"pid\":{pid}")],
        Duration::from_secs(30),
    )?;
    // Audit events from here on are requests received after the hooks were attached.
    let attached_mark = cluster.audit_events()?.len();

    // A Deployment makes the deployment and replicaset controllers and the scheduler (no nodes:
    // it reports the pods unschedulable) act on their old connections.
    let name = format!("hooks-e2e-{}", std::process::id());
    kubectl_ok(
        &cluster,
        &[
            "create",
            "deployment",
            &name,
            "--image=registry.invalid/apiscope/none:1",
            "--replicas=2",
            "--namespace",
            "default",
        ],
    )?;
    let controllers = kubernetes.has_controllers();
    if controllers {
        cluster.wait_for_audit_event(
            "the scheduler reporting a pod of the deployment",
            Duration::from_secs(60),
            |event| {
                event.username.as_deref() == Some("system:kube-scheduler")
                    && event.request_uri.contains(&format!("/pods/{name}"))
                    && event.stage == "ResponseComplete"
            },
        )?;
    } else {
        // Without the controllers, the old connection is the apiserver's loopback client: it
        // renews the apiserver's identity lease every 10 s.
        eprintln!("{kubernetes} is built without controllers: old connection = loopback client");
        cluster.wait_for_audit_event(
            "the apiserver's loopback client renewing a lease after attach",
            Duration::from_secs(40),
            |event| {
                event.sequence >= attached_mark
                    && event.stage == "ResponseComplete"
                    && event
                        .user_agent
                        .as_deref()
                        .is_some_and(|agent| agent.starts_with("kube-apiserver/"))
            },
        )?;
        for _ in 0..4 {
            kubectl_ok(&cluster, &["get", "deployments", "--namespace", "default"])?;
        }
    }
    kubectl_ok(
        &cluster,
        &["get", "deployment", &name, "--namespace", "default"],
    )?;
    std::thread::sleep(Duration::from_secs(2));
    // Requests whose response was on its way before the capture stops (the audit log is written
    // in blocking mode: an event is on disk before the response goes out).
    let stop_mark = cluster.audit_events()?.len();
    let scraped = capture.scrape_metrics()?;
    assert!(
        scraped
            .lines()
            .any(|l| l.starts_with("apiscope_capture_header_blocks_total ") && !l.ends_with(" 0")),
        "{scraped}"
    );
    let (chunks, recording, summary) = stop_capture(capture)?;
    eprintln!("capture summary: {summary}");
    assert!(chunks.iter().all(|c| c.connection.pid == pid));
    assert_eq!(summary["header_blocks_failed"], 0, "{summary}");
    assert_eq!(summary["header_fields_dropped"], 0, "{summary}");
    assert_eq!(summary["header_hooks_unavailable"], 0, "{summary}");

    // Which connections were new: their first received bytes are the HTTP/2 client preface.
    let mut first_ingress: BTreeMap<ConnectionId, &[u8]> = BTreeMap::new();
    for chunk in &chunks {
        if let Some((Direction::Ingress, _, bytes)) = chunk.payload() {
            first_ingress.entry(chunk.connection).or_insert(bytes);
        }
    }
    let is_new = |connection: &ConnectionId| {
        first_ingress
            .get(connection)
            .is_some_and(|bytes| bytes.starts_with(HTTP2_PREFACE))
    };
    let blocks: Vec<HookBlock> = chunks
        .iter()
        .filter_map(|chunk| match &chunk.kind {
            ChunkEventKind::Headers {
                message,
                stream_id,
                fields,
                dropped_fields,
            } => Some(HookBlock {
                connection: chunk.connection,
                remote_port: chunk.remote.map(|a| a.port()),
                message: *message,
                stream_id: *stream_id,
                fields: fields
                    .iter()
                    .map(|f| (f.name.clone(), f.value.clone()))
                    .collect(),
                dropped: *dropped_fields,
            }),
            _ => None,
        })
        .collect();
    // Header events belong to connections the TLS probes also saw, with the same identity.
    let tls_connections: BTreeSet<ConnectionId> = chunks
        .iter()
        .filter(|c| c.payload().is_some())
        .map(|c| c.connection)
        .collect();
    for block in &blocks {
        assert!(
            tls_connections.contains(&block.connection),
            "header block on a connection without TLS chunks: {block:?}"
        );
        assert_eq!(block.dropped, 0, "{block:?}");
    }
    let requests: BTreeMap<(ConnectionId, u32), &HookBlock> = blocks
        .iter()
        .filter(|b| b.message == MessageKind::Request)
        .map(|b| ((b.connection, b.stream_id), b))
        .collect();
    let responses: Vec<&HookBlock> = blocks
        .iter()
        .filter(|b| b.message == MessageKind::Response)
        .collect();

    let old_requests: Vec<&HookBlock> = requests
        .values()
        .filter(|b| !is_new(&b.connection))
        .copied()
        .collect();
    let old_responses: Vec<&HookBlock> = responses
        .iter()
        .filter(|b| !is_new(&b.connection))
        .copied()
        .collect();
    let from = |agent: &str| {
        old_requests
            .iter()
            .filter(|b| b.get("user-agent").is_some_and(|ua| ua.starts_with(agent)))
            .count()
    };
    eprintln!(
        "header blocks: {} ({} requests, {} responses); on connections opened before attach: \
         {} requests ({} kube-controller-manager, {} kube-scheduler, {} kube-apiserver loopback), \
         {} responses",
        blocks.len(),
        requests.len(),
        responses.len(),
        old_requests.len(),
        from("kube-controller-manager/"),
        from("kube-scheduler/"),
        from("kube-apiserver/"),
        old_responses.len()
    );
    if controllers {
        assert!(
            from("kube-controller-manager/") > 0,
            "no kube-controller-manager request on an old connection: {old_requests:?}"
        );
        assert!(
            from("kube-scheduler/") > 0,
            "no kube-scheduler request on an old connection: {old_requests:?}"
        );
    } else {
        assert!(
            from("kube-apiserver/") > 0,
            "no loopback request on an old connection: {old_requests:?}"
        );
    }
    for block in &old_requests {
        assert!(
            block.get(":method").is_some() && block.get(":path").is_some(),
            "{block:?}"
        );
    }
    // The controllers authenticate with service-account JWTs (--use-service-account-credentials):
    // the longest common header value, which must fit whole (only its length is printed).
    let longest_bearer = old_requests
        .iter()
        .filter_map(|b| b.get("authorization"))
        .filter(|v| v.starts_with("Bearer "))
        .map(str::len)
        .max();
    eprintln!("longest bearer Authorization value on old connections: {longest_bearer:?} bytes");
    assert!(
        !controllers || longest_bearer.is_some_and(|len| len > 500),
        "no service-account JWT seen whole: {longest_bearer:?}"
    );
    assert!(
        old_responses
            .iter()
            .any(|b| b.get(":status").is_some() && b.get("audit-id").is_some()),
        "{old_responses:?}"
    );
    // The replicaset controller created the pods over a connection older than the capture.
    assert!(
        !controllers
            || old_requests.iter().any(|b| b.get(":method") == Some("POST")
                && b.get(":path") == Some("/api/v1/namespaces/default/pods")),
        "{old_requests:?}"
    );

    // Every response's Audit-ID is in the apiserver's audit log, for the same request.
    let audit = cluster.audit_events()?;
    let mut checked = 0;
    for response in &responses {
        assert!(response.get(":status").is_some(), "{response:?}");
        let Some(audit_id) = response.get("audit-id") else {
            continue;
        };
        let events: Vec<_> = audit.iter().filter(|e| e.audit_id == audit_id).collect();
        assert!(
            !events.is_empty(),
            "audit-id {audit_id} not in the audit log: {response:?} for {:?}",
            requests.get(&(response.connection, response.stream_id))
        );
        let status: u16 = response.get(":status").unwrap().parse()?;
        assert!(
            events
                .iter()
                .any(|e| e.response_code.is_none_or(|code| code == status)),
            "{audit_id}: status {status} vs {events:?}"
        );
        if let Some(request) = requests.get(&(response.connection, response.stream_id)) {
            let (method, path) = (
                request.get(":method").unwrap(),
                request.get(":path").unwrap(),
            );
            assert!(
                events
                    .iter()
                    .all(|e| e.request_uri == path && verb_matches(method, &e.verb)),
                "{method} {path} vs audit {events:?}"
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 10,
        "only {checked} request/response pairs checked"
    );

    // Coverage: every request the apiserver received after the hooks attached and answered
    // before the capture stopped has its response headers (by Audit-ID) from the hooks, and
    // its request headers unless they were parsed before attaching.
    let window = &audit[attached_mark.min(audit.len())..stop_mark.min(audit.len())];
    let received: BTreeSet<&str> = window
        .iter()
        .filter(|e| e.stage == "RequestReceived")
        .map(|e| e.audit_id.as_str())
        .collect();
    let answered: BTreeMap<&str, &apiscope_e2e::cluster::AuditEvent> = window
        .iter()
        .filter(|e| e.stage == "ResponseStarted" || e.stage == "ResponseComplete")
        .filter(|e| received.contains(e.audit_id.as_str()))
        .map(|e| (e.audit_id.as_str(), e))
        .collect();
    let hook_responses: BTreeMap<&str, &HookBlock> = responses
        .iter()
        .filter_map(|b| Some((b.get("audit-id")?, *b)))
        .collect();
    let mut missing = Vec::new();
    let (mut with_request, mut on_old_connections) = (0, 0);
    for (audit_id, event) in &answered {
        match hook_responses.get(audit_id) {
            Some(response) => {
                if requests.contains_key(&(response.connection, response.stream_id)) {
                    with_request += 1;
                }
                if !is_new(&response.connection) {
                    on_old_connections += 1;
                }
            }
            None => missing.push((event.verb.clone(), event.request_uri.clone())),
        }
    }
    eprintln!(
        "coverage: {} requests received after attach and answered before stop (audit log); \
         {} with hook response headers ({} also with request headers, {} on connections \
         opened before attach); missing: {missing:?}",
        answered.len(),
        answered.len() - missing.len(),
        with_request,
        on_old_connections
    );
    assert!(answered.len() >= 10, "{}", answered.len());
    assert!(
        missing.is_empty(),
        "requests without hook headers: {missing:?}"
    );
    // A request parsed just before attaching can be logged just after: a small margin.
    assert!(
        with_request * 10 >= answered.len() * 9,
        "{with_request} of {}",
        answered.len()
    );

    // On kubectl's new connections the hooks carry exactly what the wire carried (tshark).
    let port = cluster.apiserver_port();
    let tshark_frames = dissect_http2(&recording, &[port])?;
    let mut compared = 0;
    for block in blocks.iter().filter(|b| is_new(&b.connection)) {
        let Some(remote_port) = block.remote_port else {
            continue;
        };
        let (src, dst) = match block.message {
            MessageKind::Request => (remote_port, port),
            _ => (port, remote_port),
        };
        let wire = tshark_frames
            .iter()
            .find(|f| {
                f.frame_type == 1
                    && f.src_port == src
                    && f.dst_port == dst
                    && f.stream_id == block.stream_id
            })
            .with_context(|| format!("tshark has no HEADERS frame for {block:?}"))?;
        assert_eq!(block.fields, wire.headers, "{block:?} vs tshark {wire:?}");
        compared += 1;
    }
    assert!(compared >= 4, "only {compared} blocks compared with tshark");
    eprintln!(
        "{checked} hook request/response pairs matched the audit log; {compared} blocks matched tshark"
    );

    kubectl_ok(
        &cluster,
        &["delete", "deployment", &name, "--namespace", "default"],
    )?;
    std::fs::remove_dir_all(&dir).ok();
    cluster.stop()?;
    Ok(())
}
