//! The mixed kubectl workload of the fidelity test and the golden recordings: reads, writes,
//! apply, server-side apply, dry-run, 404/409/422 errors, a watch the server ends, a large
//! gzip-compressed LIST and a non-resource request.

use std::fmt::Write as _;

use anyhow::{Context, Result, bail};

use crate::cluster::TestCluster;

/// Objects the workload needs, made before attaching.
pub fn setup_objects(cluster: &TestCluster, dir: &std::path::Path) -> Result<()> {
    cluster.kubectl_ok(&["create", "namespace", "fidelity"])?;
    // Enough data that a LIST of these is over the apiserver's 128 KiB gzip threshold.
    let mut list = String::from("apiVersion: v1\nkind: List\nitems:\n");
    let filler = "x".repeat(4096);
    for i in 0..48 {
        let _ = write!(
            list,
            "- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: big-{i}\n    namespace: fidelity\n  data:\n    filler: {filler}\n"
        );
    }
    let path = dir.join("big.yaml");
    std::fs::write(&path, list)?;
    cluster.kubectl_ok(&["apply", "-f", path.to_str().context("path")?])?;
    Ok(())
}

/// One round of a mixed workload: reads, writes, apply, server-side apply, dry-run, errors, a
/// watch that the server ends, a large gzip-compressed LIST and a non-resource request.
pub fn workload_iteration(cluster: &TestCluster, dir: &std::path::Path, i: usize) -> Result<()> {
    let name = format!("fid-{i}");
    let ns = ["--namespace", "fidelity"];
    let with_ns = |args: &[&str]| -> Vec<String> {
        args.iter()
            .chain(ns.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let ok = |args: Vec<String>| -> Result<String> {
        cluster.kubectl_ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let expect_fail = |args: Vec<String>, needle: &str| -> Result<()> {
        let out = cluster.kubectl(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || !stderr.contains(needle) {
            bail!("kubectl {args:?} should fail with {needle:?}: {stderr}");
        }
        Ok(())
    };
    ok(with_ns(&[
        "create",
        "configmap",
        &name,
        "--from-literal=k=v",
    ]))?;
    ok(with_ns(&["get", "configmap", &name, "--output", "json"]))?;
    ok(with_ns(&["get", "configmaps"]))?;
    ok(with_ns(&["label", "configmap", &name, "round=r"]))?;
    let manifest = dir.join(format!("apply-{i}.yaml"));
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\n  namespace: fidelity\ndata:\n  round: \"{i}\"\n"
        ),
    )?;
    let manifest = manifest.to_str().context("path")?.to_owned();
    ok(vec!["apply".into(), "-f".into(), manifest.clone()])?;
    ok(vec![
        "apply".into(),
        "--server-side".into(),
        "--field-manager=fidelity".into(),
        "--force-conflicts".into(),
        "-f".into(),
        manifest,
    ])?;
    ok(with_ns(&[
        "create",
        "configmap",
        &format!("dry-{i}"),
        "--dry-run=server",
    ]))?;
    expect_fail(
        with_ns(&["get", "configmap", "does-not-exist"]),
        "not found",
    )?;
    expect_fail(
        with_ns(&["create", "configmap", &name, "--from-literal=k=v"]),
        "already exists",
    )?;
    expect_fail(
        with_ns(&["create", "configmap", "Not_A_Valid_Name"]),
        "Invalid",
    )?;
    ok(vec![
        "get".into(),
        "--raw".into(),
        "/api/v1/namespaces/fidelity/configmaps?watch=1&timeoutSeconds=1".into(),
    ])?;
    // The LIST of the big ConfigMaps comes back gzip-compressed.
    ok(vec![
        "get".into(),
        "--raw".into(),
        "/api/v1/namespaces/fidelity/configmaps?labelSelector=".into(),
    ])?;
    ok(vec!["get".into(), "--raw".into(), "/version".into()])?;
    ok(with_ns(&["delete", "configmap", &name]))?;
    Ok(())
}
