//! Fidelity end-to-end (root): apiscope's ApiRequests against the apiserver's own audit log.
//!
//! kube-controller-manager and kube-scheduler start *before* apiscope attaches, so their
//! connections (and HPACK state) predate the capture; kubectl then runs a mixed workload on new
//! connections. Every audit event (stage ResponseComplete) of a request received after attaching
//! must have an ApiRequest with the same Audit-ID, verb, resource, subresource, namespace, name
//! and code, and every ApiRequest must match an audit event. Match rates are printed per client
//! and per verb.

use std::time::{Duration, Instant};

use anyhow::Result;
use apiscope::k8s::ApiRequest;
use apiscope::vocabulary::Role;
use apiscope_e2e::apiscope::{ApiscopeCapture, require_root, test_dir};
use apiscope_e2e::cluster::{ClusterOptions, KubernetesVersion, TestCluster, for_each_version};
use apiscope_e2e::fidelity::compare;
use apiscope_e2e::workload::{setup_objects, workload_iteration};

/// How long the kubectl workload runs.
const WORKLOAD: Duration = Duration::from_secs(20);
/// Requests received this soon after attaching are left out: their headers may have been read
/// before the probes were in place.
const ATTACH_MARGIN: Duration = Duration::from_secs(1);

#[test]
fn every_audited_request_has_a_matching_api_request() -> Result<()> {
    if !require_root("the fidelity test") {
        return Ok(());
    }
    for_each_version(every_audited_request_has_a_matching_api_request_on)
}

fn every_audited_request_has_a_matching_api_request_on(
    kubernetes: KubernetesVersion,
) -> Result<()> {
    let cluster = TestCluster::start(ClusterOptions {
        kubernetes,
        controller_manager: kubernetes.has_controllers(),
        scheduler: kubernetes.has_controllers(),
        ..ClusterOptions::default()
    })?;
    let dir = test_dir(&format!("fidelity-{kubernetes}"))?;
    setup_objects(&cluster, &dir)?;

    // By pid: another test cluster on the machine may run the same binary.
    let pid = cluster.apiserver_pid().to_string();
    let mut capture = ApiscopeCapture::start(&dir, &["--pid", &pid])?;
    capture.wait_attached(cluster.apiserver_pid())?;
    std::thread::sleep(ATTACH_MARGIN);
    let audit_start = cluster.audit_events()?.len();

    let started = Instant::now();
    let mut iteration = 0;
    while started.elapsed() < WORKLOAD && iteration < 50 {
        workload_iteration(&cluster, &dir, iteration)?;
        iteration += 1;
    }
    // Let the last responses reach the audit log and the capture.
    std::thread::sleep(Duration::from_secs(2));
    // Requests that complete from here on may miss the capture, which is about to stop.
    let audit_end = cluster.audit_events()?.len();
    let metrics = capture.scrape_metrics()?;
    let result = capture.stop()?;
    let requests: Vec<ApiRequest> = result
        .requests()?
        .into_iter()
        .filter(|r| r.role == Role::Server)
        .collect();
    let audit = cluster.audit_events()?;
    let hooks = hooks_attached(&result.log);
    // Versions that send Audit-ID on watch responses get no fallback join.
    let join_without_audit_id = !kubernetes.sends_audit_id_on_watches();
    let report = compare(
        &audit,
        audit_start..audit_end,
        &requests,
        join_without_audit_id,
    );
    eprintln!(
        "fidelity on {kubernetes}: {iteration} workload iterations, {} ApiRequests, header hooks {}\n{}",
        requests.len(),
        if hooks { "attached" } else { "not attached" },
        report.table()
    );
    eprintln!("apiscope metrics at the end:\n{}", decode_metrics(&metrics));
    cluster.stop()?;

    assert!(
        iteration >= 2,
        "the workload ran only {iteration} iterations"
    );
    assert!(
        report.mismatches.is_empty(),
        "ApiRequests disagreeing with the audit log:\n{}",
        report.mismatches.join("\n")
    );
    assert!(
        report.unmatched_requests.is_empty(),
        "ApiRequests without an audit event:\n{}",
        report.unmatched_requests.join("\n")
    );
    // kubectl's connections are all opened after attaching: every one of its requests counts.
    let kubectl = report.by_client.get("kubectl").copied().unwrap_or_default();
    assert!(
        kubectl.audited > 20,
        "too few kubectl requests audited: {kubectl:?}"
    );
    assert_eq!(kubectl.matched, kubectl.audited, "kubectl requests missed");
    // Every matrix build is one the header hooks support: their absence is a failure, not a
    // reason to check less.
    assert!(hooks, "the HTTP/2 header hooks did not attach");
    // With the header hooks, requests on connections opened before attaching count too.
    let missed: Vec<&String> = report.missed.iter().collect();
    assert!(
        missed.is_empty(),
        "audited requests without an ApiRequest:\n{missed:#?}"
    );
    assert_eq!(report.undecodable, 0, "ApiRequests without request headers");
    // ...while the new connections (kubectl's) had their header hooks switched off, the wire
    // decoding them alone: the matches above include those requests.
    let samples = apiscope_e2e::bench::metrics_text::parse(&metrics);
    let switched_off = samples.iter().any(|s| {
        s.name == "apiscope_capture_header_hook_switches_total"
            && s.label("state") == Some("off")
            && s.value > 0.0
    });
    assert!(
        switched_off,
        "no connection had its header hooks switched off"
    );
    let skipped = apiscope_e2e::bench::metrics_text::total(
        &samples,
        "apiscope_capture_header_hooks_skipped_total",
    );
    assert!(
        skipped.is_some_and(|n| n > 0.0),
        "no header hook hit skipped: {skipped:?}"
    );
    if !join_without_audit_id {
        assert_eq!(report.matched_without_audit_id, 0);
    }
    Ok(())
}

/// Whether apiscope reported the header-level hooks as attached.
fn hooks_attached(log: &[String]) -> bool {
    log.iter()
        .any(|l| l.contains("header hooks attached") && !l.contains("\"count\":0"))
}

/// The decode-stage lines of a scrape, for the test log.
fn decode_metrics(scrape: &str) -> String {
    scrape
        .lines()
        .filter(|l| {
            !l.starts_with('#')
                && [
                    "apiscope_decode",
                    "apiscope_exchange",
                    "apiscope_reassembly",
                    "apiscope_capture",
                ]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .collect::<Vec<_>>()
        .join("\n")
}
