//! The test-cluster harness against the real control plane: requests are audited, the controller
//! manager and scheduler really work against it, the apiserver restarts, and nothing outlives it.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use apiscope_e2e::cluster::{
    AuditEvent, ClusterOptions, KEEP_CLUSTER_ENV, KubernetesVersion, TestCluster, for_each_version,
};

const CONFIGMAP: &str = "apiscope-e2e-harness";

#[test]
fn control_plane_audits_requests_runs_controllers_and_restarts() -> Result<()> {
    for_each_version(control_plane_audits_requests_runs_controllers_and_restarts_on)
}

fn control_plane_audits_requests_runs_controllers_and_restarts_on(
    kubernetes: KubernetesVersion,
) -> Result<()> {
    let started = Instant::now();
    let mut cluster = TestCluster::start(ClusterOptions {
        kubernetes,
        controller_manager: kubernetes.has_controllers(),
        scheduler: kubernetes.has_controllers(),
        ..ClusterOptions::default()
    })?;
    eprintln!(
        "cluster with controller-manager and scheduler started in {:.1?}",
        started.elapsed()
    );

    // The pid is kube-apiserver itself, not a wrapper: eBPF capture relies on /proc/<pid>/exe.
    let first_pid = cluster.apiserver_pid();
    assert_eq!(
        std::fs::read_link(format!("/proc/{first_pid}/exe"))?,
        cluster.apiserver_binary().canonicalize()?
    );
    assert!(
        cluster
            .apiserver_url()
            .ends_with(&format!(":{}", cluster.apiserver_port()))
    );

    cluster.kubectl_ok(&[
        "create",
        "configmap",
        CONFIGMAP,
        "--namespace=default",
        "--from-literal=key=value",
    ])?;
    let value = cluster.kubectl_ok(&[
        "get",
        "configmap",
        CONFIGMAP,
        "--namespace=default",
        "-o",
        "jsonpath={.data.key}",
    ])?;
    assert_eq!(value, "value");
    cluster.kubectl_ok(&[
        "delete",
        "configmap",
        CONFIGMAP,
        "--namespace=default",
        "--wait=false",
    ])?;

    // Blocking audit mode: the events are on disk as soon as kubectl has its answers.
    let events = cluster.audit_events()?;
    for (verb, code) in [("create", 201), ("get", 200), ("delete", 200)] {
        let event = events
            .iter()
            .find(|event| is_admin_configmap_request(event, verb))
            .with_context(|| {
                format!("no ResponseComplete audit event for kubectl {verb} configmap")
            })?;
        assert_eq!(event.response_code, Some(code), "{verb}: {:?}", event.raw);
        assert!(
            is_uuid(&event.audit_id),
            "{verb}: auditID {:?}",
            event.audit_id
        );
        // RequestResponse level: bodies are in the event.
        if verb == "create" {
            assert_eq!(
                event.raw.pointer("/requestObject/data/key"),
                Some(&"value".into())
            );
        }
        // Every stage of one request carries the same auditID.
        assert!(
            events
                .iter()
                .any(|other| other.audit_id == event.audit_id && other.stage == "RequestReceived"),
            "{verb}: no RequestReceived event with auditID {}",
            event.audit_id
        );
    }

    let controllers = kubernetes.has_controllers();
    if controllers {
        assert_components_work(&cluster, &events)?;
    } else {
        eprintln!("{kubernetes} is built without kube-controller-manager and kube-scheduler");
    }

    let before_restart = cluster.audit_events()?.len();
    let new_pid = cluster.restart_apiserver()?;
    assert_ne!(new_pid, first_pid);
    assert!(
        !Path::new(&format!("/proc/{first_pid}")).exists(),
        "old apiserver still around"
    );
    assert_eq!(cluster.kubectl_ok(&["get", "--raw", "/readyz"])?, "ok");
    // The restarted apiserver appends to the same audit log, and the scheduler reconnects.
    if controllers {
        cluster.wait_for_audit_event(
            "kube-scheduler's requests after the restart",
            Duration::from_secs(60),
            |event| {
                event.sequence >= before_restart
                    && event.username.as_deref() == Some("system:kube-scheduler")
            },
        )?;
    } else {
        cluster.kubectl_ok(&["get", "namespaces"])?;
        ensure!(
            cluster.audit_events()?.len() > before_restart,
            "the restarted apiserver audits nothing"
        );
    }
    cluster.check_running()?;

    let pids = cluster.component_pids();
    assert_eq!(pids.len(), if controllers { 4 } else { 2 }, "{pids:?}");
    let workdir = cluster.workdir().to_path_buf();
    cluster.stop()?;
    for (component, pid) in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "{component} (pid {pid}) outlived the cluster"
        );
    }
    if std::env::var(KEEP_CLUSTER_ENV).as_deref() != Ok("1") {
        assert!(!workdir.exists(), "{} was not removed", workdir.display());
    }
    Ok(())
}

/// The controller manager and the scheduler authenticate with their own certificates, pass RBAC,
/// and do their jobs: controllers run under their own service accounts, and the scheduler lists.
fn assert_components_work(cluster: &TestCluster, events: &[AuditEvent]) -> Result<()> {
    let succeeded = |event: &AuditEvent| event.response_code.is_some_and(|code| code < 400);
    ensure!(
        events.iter().any(|event| {
            event.username.as_deref() == Some("system:kube-scheduler")
                && event
                    .user_agent
                    .as_deref()
                    .is_some_and(|agent| agent.starts_with("kube-scheduler/"))
                && succeeded(event)
        }),
        "no successful kube-scheduler request in the audit log"
    );
    ensure!(
        events.iter().any(|event| {
            event.username.as_deref() == Some("system:kube-controller-manager")
                && event
                    .user_agent
                    .as_deref()
                    .is_some_and(|agent| agent.starts_with("kube-controller-manager/"))
                && succeeded(event)
        }),
        "no successful kube-controller-manager request in the audit log"
    );
    // --use-service-account-credentials: the token controller must mint tokens and controllers
    // must then use them, which proves the service-account key pair works end to end.
    cluster.wait_for_audit_event(
        "a controller's request with its service-account token",
        Duration::from_secs(60),
        |event| {
            event
                .username
                .as_deref()
                .is_some_and(|user| user.starts_with("system:serviceaccount:kube-system:"))
                && event
                    .user_agent
                    .as_deref()
                    .is_some_and(|agent| agent.starts_with("kube-controller-manager/"))
                && succeeded(event)
        },
    )?;
    Ok(())
}

fn is_admin_configmap_request(event: &AuditEvent, verb: &str) -> bool {
    event.stage == "ResponseComplete"
        && event.verb == verb
        && event.username.as_deref() == Some("apiscope-admin")
        && event
            .user_agent
            .as_deref()
            .is_some_and(|agent| agent.starts_with("kubectl/"))
        && event.resource() == Some("configmaps")
        && event.namespace() == Some("default")
        && event.name() == Some(CONFIGMAP)
}

fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.iter().map(|group| group.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|group| group.chars().all(|c| c.is_ascii_hexdigit()))
}

#[test]
fn missing_apiserver_binary_says_how_to_build_it() {
    let error = TestCluster::start(ClusterOptions {
        apiserver_binary: Some("/nonexistent/kube-apiserver".into()),
        ..ClusterOptions::default()
    })
    .err()
    .expect("a cluster without an apiserver binary must not start");
    let message = format!("{error:#}");
    assert!(
        message.contains("scripts/build-kubernetes-modern.sh 1.37.2 --controllers"),
        "{message}"
    );
    assert!(message.contains("/nonexistent/kube-apiserver"), "{message}");
}

/// `apiscope-testcluster up`, as `make demo` uses it: cluster.env appears once the cluster is
/// ready, and SIGTERM tears everything down.
#[test]
fn testcluster_binary_writes_env_and_stops_on_sigterm() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("apiscope-testcluster-bin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let kubernetes = KubernetesVersion::under_test()?[0];
    let mut up = std::process::Command::new(env!("CARGO_BIN_EXE_apiscope-testcluster"))
        .arg("up")
        .arg("--kubernetes")
        .arg(kubernetes.to_string())
        .arg("--dir")
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let result = check_testcluster_binary(&dir, &mut up);
    // Whatever happened, leave nothing behind.
    if up.try_wait()?.is_none() {
        let _ = up.kill();
        let _ = up.wait();
    }
    result
}

fn check_testcluster_binary(dir: &Path, up: &mut std::process::Child) -> Result<()> {
    let env_file = dir.join("cluster.env");
    let deadline = Instant::now() + Duration::from_secs(90);
    while !env_file.exists() {
        ensure!(
            up.try_wait()?.is_none(),
            "apiscope-testcluster exited before cluster.env appeared"
        );
        ensure!(
            Instant::now() < deadline,
            "no {} after 90 s",
            env_file.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let env = std::fs::read_to_string(&env_file)?;
    let value = |key: &str| -> Result<String> {
        env.lines()
            .find_map(|line| line.strip_prefix(&format!("{key}=")))
            .map(str::to_owned)
            .with_context(|| format!("{key} missing from cluster.env:\n{env}"))
    };
    let apiserver_pid: u32 = value("APISCOPE_APISERVER_PID")?.parse()?;
    assert!(Path::new(&value("APISCOPE_KUBECONFIG")?).is_file());
    assert!(value("APISCOPE_APISERVER_URL")?.starts_with("https://127.0.0.1:"));
    assert!(Path::new(&value("APISCOPE_AUDIT_LOG")?).is_file());
    assert!(Path::new(&format!("/proc/{apiserver_pid}")).exists());
    assert!(!value("APISCOPE_KUBERNETES_VERSION")?.is_empty());

    // SAFETY: kill(2) on our own unreaped child.
    unsafe { libc::kill(up.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = up.try_wait()? {
            break status;
        }
        ensure!(
            Instant::now() < deadline,
            "apiscope-testcluster ignored SIGTERM for 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    ensure!(
        status.success(),
        "apiscope-testcluster exited with {status}"
    );
    ensure!(
        !Path::new(&format!("/proc/{apiserver_pid}")).exists(),
        "kube-apiserver outlived it"
    );
    if std::env::var(KEEP_CLUSTER_ENV).as_deref() != Ok("1") {
        ensure!(!dir.exists(), "{} was not removed", dir.display());
    }
    Ok(())
}
