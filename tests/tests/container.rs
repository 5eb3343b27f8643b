//! A container-hosted kube-apiserver (root): it runs in a mount namespace of its own, from a
//! binary at a path that does not exist on the host, as a static pod's container does. apiscope
//! finds it by process name, attaches through `/proc/<pid>/exe`, and decodes its requests; they
//! match the apiserver's audit log. `apiscope doctor` finds it the same way and says what capture
//! attaches.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use apiscope::vocabulary::Role;
use apiscope_e2e::apiscope::{ApiscopeCapture, apiscope_binary, require_root, test_dir};
use apiscope_e2e::cluster::{ClusterOptions, KubernetesVersion, TestCluster, for_each_version};
use apiscope_e2e::fidelity::compare;

/// A name no other apiserver on a shared machine has: apiscope attaches to every process of
/// that name, and must not probe other people's clusters.
const CONTAINER_BINARY: &str = "kube-apiserver-ctr";

#[test]
fn container_hosted_apiserver_is_found_by_name_attached_and_decoded() -> Result<()> {
    if !require_root("the container-hosted apiserver test") {
        return Ok(());
    }
    for_each_version(container_hosted_on)
}

fn container_hosted_on(kubernetes: KubernetesVersion) -> Result<()> {
    let cluster = TestCluster::start(ClusterOptions {
        kubernetes,
        container_binary_name: Some(CONTAINER_BINARY.into()),
        ..ClusterOptions::default()
    })?;
    let pid = cluster.apiserver_pid();
    let inside = cluster.container_binary_path().context("container path")?;
    // The premise: the process runs that binary, in another mount namespace, and the path
    // exists only there (reached from the host through /proc/<pid>/root).
    ensure!(
        std::fs::read_link(format!("/proc/{pid}/exe"))? == inside,
        "/proc/{pid}/exe is not {}",
        inside.display()
    );
    ensure!(
        !inside.exists(),
        "{} exists on the host: not a container-like setup",
        inside.display()
    );
    let via_root = Path::new(&format!("/proc/{pid}/root")).join(inside.strip_prefix("/")?);
    ensure!(via_root.is_file(), "{} missing", via_root.display());
    ensure!(
        std::fs::read_link("/proc/self/ns/mnt")?
            != std::fs::read_link(format!("/proc/{pid}/ns/mnt"))?,
        "the apiserver shares our mount namespace"
    );

    check_doctor(pid, &kubernetes)?;

    let dir = test_dir(&format!("container-{kubernetes}"))?;
    let mut capture = ApiscopeCapture::start(&dir, &["--process-name", CONTAINER_BINARY])?;
    let attached = capture.wait_for_log(
        &["attached", &format!("\"pid\":{pid}")],
        Duration::from_secs(30),
    )?;
    ensure!(
        attached.contains(&inside.display().to_string()),
        "attach log does not name the in-container path: {attached}"
    );
    std::thread::sleep(Duration::from_secs(1));
    let audit_start = cluster.audit_events()?.len();
    let name = format!("container-e2e-{}", std::process::id());
    cluster.kubectl_ok(&[
        "create",
        "configmap",
        &name,
        "--namespace",
        "default",
        "--from-literal=k=v",
    ])?;
    cluster.kubectl_ok(&["get", "configmap", &name, "--namespace", "default"])?;
    cluster.kubectl_ok(&["get", "namespaces"])?;
    cluster.kubectl_ok(&["delete", "configmap", &name, "--namespace", "default"])?;
    std::thread::sleep(Duration::from_secs(2));
    let audit_end = cluster.audit_events()?.len();
    let result = capture.stop()?;
    let requests: Vec<_> = result
        .requests()?
        .into_iter()
        .filter(|r| r.role == Role::Server)
        .collect();
    let audit = cluster.audit_events()?;
    cluster.stop()?;

    let report = compare(
        &audit,
        audit_start..audit_end,
        &requests,
        !kubernetes.sends_audit_id_on_watches(),
    );
    eprintln!(
        "container-hosted {kubernetes}: {} ApiRequests\n{}",
        requests.len(),
        report.table()
    );
    ensure!(
        report.mismatches.is_empty() && report.unmatched_requests.is_empty(),
        "{:#?}\n{:#?}",
        report.mismatches,
        report.unmatched_requests
    );
    let kubectl = report.by_client.get("kubectl").copied().unwrap_or_default();
    ensure!(
        kubectl.audited >= 4 && kubectl.matched == kubectl.audited,
        "kubectl requests: {kubectl:?}"
    );
    ensure!(
        requests
            .iter()
            .any(|r| r.verb == "create" && r.name == name && r.code == Some(201)),
        "the create of {name} was not decoded"
    );
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

/// `apiscope doctor --process-name` on the container-hosted apiserver: every check passes and the
/// report names what capture needs (Go and Kubernetes releases, probes, header hooks, attach).
/// Then on this test's own process, which is no Go program: a failure, said so, exit status 1.
fn check_doctor(pid: u32, kubernetes: &KubernetesVersion) -> Result<()> {
    let run = |args: &[&str]| -> Result<(bool, String)> {
        let output = Command::new(apiscope_binary())
            .arg("doctor")
            .args(args)
            .output()
            .context("running apiscope doctor")?;
        Ok((
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        ))
    };
    let (ok, report) = run(&["--process-name", CONTAINER_BINARY])?;
    ensure!(ok, "apiscope doctor failed on the apiserver:\n{report}");
    ensure!(!report.contains("FAIL"), "a failed check:\n{report}");
    for expected in [
        format!("ok    pid {pid} ("),
        format!("Kubernetes v{}", kubernetes.release()),
        "go1.".to_string(),
        "header hooks available".to_string(),
        "tls_read_record".to_string(),
        "http2_process_headers".to_string(),
        "detached again".to_string(),
    ] {
        ensure!(report.contains(&expected), "no {expected:?} in:\n{report}");
    }
    let (ok, report) = run(&["--pid", &std::process::id().to_string()])?;
    ensure!(
        !ok,
        "apiscope doctor passed on a Rust test binary:\n{report}"
    );
    ensure!(
        report.contains("FAIL") && report.contains("not a Go binary"),
        "the failure does not say why:\n{report}"
    );
    Ok(())
}
