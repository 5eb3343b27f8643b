//! Records the golden decode fixtures (run by `make fixtures`, not by `make test`): a real
//! cluster, apiscope attached *before* kube-scheduler starts (so its protobuf LISTs and watches
//! are captured from the first byte) and one round of the mixed kubectl workload. Every recorded kubectl request is checked against the audit log before the
//! recording and its expected ApiRequests are written to exporter/tests/fixtures/decode/.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};
use apiscope::vocabulary::Role;
use apiscope_e2e::apiscope::{ApiscopeCapture, require_root, test_dir};
use apiscope_e2e::cluster::{ClusterOptions, KubernetesVersion, TestCluster, VERSIONS_ENV};
use apiscope_e2e::fidelity::compare;
use apiscope_e2e::workload::{setup_objects, workload_iteration};

#[test]
#[ignore = "writes fixtures; run with `make fixtures`"]
fn record_golden_fixtures() -> Result<()> {
    if !require_root("recording fixtures") {
        return Ok(());
    }
    // One recording per version asked for; by default the newest only (each is ~100 KB+).
    let versions = match std::env::var_os(VERSIONS_ENV) {
        Some(_) => KubernetesVersion::under_test()?,
        None => vec![KubernetesVersion::newest()],
    };
    for kubernetes in versions {
        record(kubernetes)?;
    }
    Ok(())
}

/// `cluster.pcapng.gz` is the v1.20.2 recording (the first one, kept under its old name);
/// the others carry their version: `cluster-v1.37.2.pcapng.gz`.
fn recording_name(kubernetes: KubernetesVersion) -> String {
    if kubernetes == KubernetesVersion::V1_20_2 {
        "cluster.pcapng.gz".into()
    } else {
        format!("cluster-{kubernetes}.pcapng.gz")
    }
}

fn record(kubernetes: KubernetesVersion) -> Result<()> {
    let mut cluster = TestCluster::start(ClusterOptions {
        kubernetes,
        ..ClusterOptions::default()
    })?;
    let dir = test_dir(&format!("golden-{kubernetes}"))?;
    setup_objects(&cluster, &dir)?;
    // By pid: another test cluster on the machine may run the same binary.
    let pid = cluster.apiserver_pid().to_string();
    let mut capture = ApiscopeCapture::start(&dir, &["--pid", &pid])?;
    capture.wait_attached(cluster.apiserver_pid())?;
    std::thread::sleep(Duration::from_secs(1));
    let audit_start = cluster.audit_events()?.len();
    // kube-scheduler alone brings protobuf LISTs and watches; kube-controller-manager's start-up
    // (hundreds of discovery and LIST requests) would make the fixture megabytes.
    cluster.start_scheduler()?;
    workload_iteration(&cluster, &dir, 0)?;
    std::thread::sleep(Duration::from_secs(2));
    let audit_end = cluster.audit_events()?.len();
    let result = capture.stop()?;
    let audit = cluster.audit_events()?;
    cluster.stop()?;

    let requests: Vec<_> = result
        .requests()?
        .into_iter()
        .filter(|r| r.role == Role::Server)
        .collect();
    let report = compare(
        &audit,
        audit_start..audit_end,
        &requests,
        !kubernetes.sends_audit_id_on_watches(),
    );
    eprintln!("{}", report.table());
    // The apiserver's loopback client connected before the capture started: its HPACK state is
    // unknown; every other client must be complete.
    let incomplete_clients: Vec<&String> = report
        .by_client
        .iter()
        .filter(|(client, rate)| {
            client.as_str() != "kube-apiserver" && rate.matched != rate.audited
        })
        .map(|(client, _)| client)
        .collect();
    if !report.mismatches.is_empty()
        || !report.unmatched_requests.is_empty()
        || !incomplete_clients.is_empty()
    {
        bail!(
            "not writing fixtures: the recording disagrees with the audit log\n{incomplete_clients:?}\n{:#?}\n{:#?}",
            report.mismatches,
            report.unmatched_requests
        );
    }

    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../exporter/tests/fixtures/decode");
    std::fs::create_dir_all(&fixtures)?;
    let raw = std::fs::read(&result.recording)?;
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(fixtures.join(recording_name(kubernetes)))?,
        flate2::Compression::best(),
    );
    gz.write_all(&raw)?;
    gz.finish()?;
    eprintln!(
        "recorded {kubernetes}: {} requests, {} bytes of pcapng; now run `APISCOPE_UPDATE_GOLDEN=1 cargo test --test golden`",
        requests.len(),
        raw.len()
    );
    Ok(())
}
