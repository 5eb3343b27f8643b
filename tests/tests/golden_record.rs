//! Records the golden decode fixtures (run by `make fixtures`, not by `make test`): a real
//! cluster, apiscope attached *before* kube-scheduler starts (so its protobuf LISTs and watches
//! are captured from the first byte) and one round of the mixed kubectl workload. Every recorded kubectl request is checked against the audit log before the
//! recording and its expected ApiRequests are written to exporter/tests/fixtures/decode/.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};
use apiscope::capture::Role;
use apiscope_e2e::apiscope::{ApiscopeCapture, require_root, test_dir};
use apiscope_e2e::cluster::{ClusterOptions, TestCluster};
use apiscope_e2e::fidelity::compare;
use apiscope_e2e::workload::{setup_objects, workload_iteration};

#[test]
#[ignore = "writes fixtures; run with `make fixtures`"]
fn record_golden_fixtures() -> Result<()> {
    if !require_root("recording fixtures") {
        return Ok(());
    }
    let mut cluster = TestCluster::start(ClusterOptions::default())?;
    let dir = test_dir("golden")?;
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
    let report = compare(&audit, audit_start..audit_end, &requests);
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
        std::fs::File::create(fixtures.join("cluster.pcapng.gz"))?,
        flate2::Compression::best(),
    );
    gz.write_all(&raw)?;
    gz.finish()?;
    eprintln!(
        "recorded {} requests, {} bytes of pcapng; now run `APISCOPE_UPDATE_GOLDEN=1 cargo test --test golden`",
        requests.len(),
        raw.len()
    );
    Ok(())
}
