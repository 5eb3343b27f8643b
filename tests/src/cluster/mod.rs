//! A real local Kubernetes control plane for end-to-end tests: etcd (TLS, client-cert auth),
//! kube-apiserver of a chosen [`KubernetesVersion`] (default: the newest of the matrix) with a
//! RequestResponse audit log, and optionally kube-controller-manager and kube-scheduler, all on
//! loopback with free ports, in one work directory.
//!
//! The apiserver is a direct child process, so [`TestCluster::apiserver_pid`] is the real
//! kube-apiserver (eBPF capture attaches through `/proc/<pid>/exe`). Nothing outlives the
//! cluster: [`TestCluster::stop`] and `Drop` stop every component (SIGTERM, bounded wait,
//! SIGKILL), and every child is also tied to the cluster's lifetime with `PR_SET_PDEATHSIG`, which
//! covers a test process that is itself killed. The work directory is removed at the end unless
//! `APISCOPE_KEEP_CLUSTER=1`.

mod audit;
mod pki;
pub mod process;
mod version;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

pub use audit::{AuditEvent, AuditObjectRef};
pub use pki::{CertPair, ClusterPki};
use process::{ManagedProcess, Spawner, free_loopback_ports, log_shows_port_conflict, poll_until};
pub use version::{KubernetesVersion, VERSIONS_ENV, for_each_version};

/// Set to `1` to keep the work directory (certificates, logs, audit log) after teardown.
pub const KEEP_CLUSTER_ENV: &str = "APISCOPE_KEEP_CLUSTER";

const APISERVER_READY_TIMEOUT: Duration = Duration::from_secs(60);
const ETCD_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long kube-controller-manager / kube-scheduler get to show up in the audit log.
const COMPONENT_READY_TIMEOUT: Duration = Duration::from_secs(45);
/// Teardown grace per component. Clients are stopped before the apiserver, so it has no open
/// watches left and exits within a second or two.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// On SIGTERM, a 1.20 apiserver closes its listener at once but then waits for open requests,
/// watches included, for up to `--request-timeout` (60 s): with kube-controller-manager or
/// kube-scheduler watching, a graceful stop takes the full minute. A restart waits this long,
/// then SIGKILLs, as kubelet would after a pod's grace period.
pub const APISERVER_RESTART_GRACE: Duration = Duration::from_secs(10);
const KUBECTL_TIMEOUT: Duration = Duration::from_secs(120);
const SERVICE_CLUSTER_IP_RANGE: &str = "10.0.0.0/24";
const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const ADMIN_USER: &str = "apiscope-admin";

/// What to start. `Default` gives etcd and kube-apiserver of the newest version only.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Which build runs: its binaries come from [`KubernetesVersion::bin_dir`].
    pub kubernetes: KubernetesVersion,
    /// Also start kube-controller-manager (and wait until all its controllers have started).
    pub controller_manager: bool,
    /// Also start kube-scheduler (and wait until its informers list pods).
    pub scheduler: bool,
    /// Another kube-apiserver binary of the same version (its flags follow `kubernetes`);
    /// default: the stripped build in [`KubernetesVersion::bin_dir`].
    pub apiserver_binary: Option<PathBuf>,
    /// Where certificates, data, logs and the audit log go; must be absent or empty. Default: a
    /// fresh directory under the system temp dir.
    pub workdir: Option<PathBuf>,
    /// Appended after the harness's own flags, so they override them (pflag: last one wins).
    pub extra_apiserver_args: Vec<String>,
    /// Run kube-apiserver the way a container runtime does: in a mount namespace of its own,
    /// from a copy with this file name at [`TestCluster::container_binary_path`], a path that
    /// exists only inside that namespace (a tmpfs mounted there; the host sees an empty
    /// directory). The pid is still kube-apiserver's own (`unshare` and `sh` exec it).
    pub container_binary_name: Option<String>,
}

/// A running local control plane. Stopped by [`TestCluster::stop`] or on drop.
pub struct TestCluster {
    workdir: PathBuf,
    kubernetes: KubernetesVersion,
    /// Whether we created `workdir` (then it is removed), or it existed empty (then it is emptied).
    created_workdir: bool,
    pki: ClusterPki,
    kubeconfig: PathBuf,
    audit_log: PathBuf,
    audit_policy: PathBuf,
    apiserver_binary: PathBuf,
    extra_apiserver_args: Vec<String>,
    container_binary_name: Option<String>,
    apiserver_port: u16,
    etcd_client_port: u16,
    etcd: Option<ManagedProcess>,
    apiserver: Option<ManagedProcess>,
    controller_manager: Option<ManagedProcess>,
    scheduler: Option<ManagedProcess>,
    stopped: bool,
    /// Declared last: dropped after the components above have been stopped.
    spawner: Spawner,
}

impl TestCluster {
    /// Starts etcd and kube-apiserver (and the components `opts` asks for) and returns once the
    /// apiserver's `/readyz` says ok and the optional components are at work (seen in the
    /// audit log).
    pub fn start(opts: ClusterOptions) -> Result<TestCluster> {
        let apiserver_binary = match opts.apiserver_binary {
            Some(path) => path,
            None => kubernetes_binary(opts.kubernetes, "kube-apiserver")?,
        };
        require_file(opts.kubernetes, &apiserver_binary, "kube-apiserver")?;
        let (workdir, created_workdir) = prepare_workdir(opts.workdir)?;
        let setup = || -> Result<(ClusterPki, Spawner)> {
            let pki =
                ClusterPki::create(&make_dir(&workdir, "pki")?).context("creating certificates")?;
            Ok((pki, Spawner::new()?))
        };
        let (pki, spawner) = match setup() {
            Ok(setup) => setup,
            Err(error) => {
                if !keep_cluster() {
                    let _ = remove_workdir(&workdir, created_workdir);
                }
                return Err(error);
            }
        };

        // From here on, an error drops `cluster`, which stops whatever was started.
        let mut cluster = TestCluster {
            pki,
            kubeconfig: workdir.join("admin.kubeconfig"),
            audit_log: workdir.join("audit.log"),
            audit_policy: workdir.join("audit-policy.yaml"),
            workdir,
            kubernetes: opts.kubernetes,
            created_workdir,
            apiserver_binary,
            extra_apiserver_args: opts.extra_apiserver_args,
            container_binary_name: opts.container_binary_name,
            apiserver_port: 0,
            etcd_client_port: 0,
            etcd: None,
            apiserver: None,
            controller_manager: None,
            scheduler: None,
            stopped: false,
            spawner,
        };
        cluster.start_etcd()?;
        cluster.start_apiserver()?;
        if opts.controller_manager {
            cluster.start_controller_manager()?;
        }
        if opts.scheduler {
            cluster.start_scheduler()?;
        }
        Ok(cluster)
    }

    /// The Kubernetes build this cluster runs.
    pub fn kubernetes(&self) -> KubernetesVersion {
        self.kubernetes
    }

    /// The admin kubeconfig: a client certificate in group `system:masters`.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The pid of the kube-apiserver process itself (no wrapper), current after restarts; 0 if
    /// it is not running (a restart failed).
    pub fn apiserver_pid(&self) -> u32 {
        self.apiserver.as_ref().map_or(0, ManagedProcess::pid)
    }

    pub fn apiserver_port(&self) -> u16 {
        self.apiserver_port
    }

    /// `https://127.0.0.1:<port>`
    pub fn apiserver_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.apiserver_port)
    }

    /// The kube-apiserver binary this cluster runs (for a container-hosted apiserver: the host
    /// file its in-namespace copy was made from).
    pub fn apiserver_binary(&self) -> &Path {
        &self.apiserver_binary
    }

    /// Where a container-hosted apiserver's binary is, as the apiserver sees it (the path does
    /// not exist outside its mount namespace); `None` for an ordinary one.
    pub fn container_binary_path(&self) -> Option<PathBuf> {
        let name = self.container_binary_name.as_ref()?;
        Some(self.container_root().join(name))
    }

    fn container_root(&self) -> PathBuf {
        self.workdir.join("container-root")
    }

    /// The JSON-lines audit log: policy level RequestResponse for every request, all stages,
    /// written in blocking mode (an event is on disk before its response is sent).
    pub fn audit_log(&self) -> &Path {
        &self.audit_log
    }

    /// Every audit event written so far (a partially written last line is skipped).
    pub fn audit_events(&self) -> Result<Vec<AuditEvent>> {
        audit::read_events(&self.audit_log)
    }

    /// Polls the audit log until an event matches, bounded by `timeout`.
    pub fn wait_for_audit_event(
        &self,
        what: &str,
        timeout: Duration,
        mut matches: impl FnMut(&AuditEvent) -> bool,
    ) -> Result<AuditEvent> {
        poll_until(what, timeout, Duration::from_millis(200), || {
            Ok(self
                .audit_events()?
                .into_iter()
                .find(|event| matches(event)))
        })
    }

    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// Certificates: the CA (`ca.cert` verifies the apiserver), the admin client pair, etc.
    pub fn pki(&self) -> &ClusterPki {
        &self.pki
    }

    /// The apiserver's stdout/stderr (appended to across restarts).
    pub fn apiserver_log(&self) -> PathBuf {
        self.workdir.join("kube-apiserver.log")
    }

    /// Stops kube-apiserver (SIGTERM, up to [`APISERVER_RESTART_GRACE`], then SIGKILL), starts
    /// it again with the same arguments and port, waits until it is ready, returns the new pid.
    pub fn restart_apiserver(&mut self) -> Result<u32> {
        self.restart_apiserver_with_grace(APISERVER_RESTART_GRACE)
    }

    /// [`TestCluster::restart_apiserver`] with another grace period between SIGTERM and SIGKILL:
    /// `Duration::ZERO` is close to a crash; about 65 s lets 1.20 drain open watches fully.
    pub fn restart_apiserver_with_grace(&mut self, grace: Duration) -> Result<u32> {
        let mut old = self
            .apiserver
            .take()
            .context("kube-apiserver is not running")?;
        old.terminate(grace)?;
        let apiserver = ManagedProcess::start(
            &self.spawner,
            old.name,
            &old.program,
            old.args.clone(),
            old.log_path.clone(),
        )?;
        self.apiserver = Some(apiserver);
        self.wait_apiserver_ready()?;
        Ok(self.apiserver_pid())
    }

    /// Runs `kubectl --kubeconfig <admin> ARGS` (bounded to two minutes) and returns its output
    /// whatever the exit status.
    pub fn kubectl(&self, args: &[&str]) -> Result<Output> {
        let kubectl = find_program("kubectl", &["/usr/bin/kubectl"])
            .context("kubectl not found (looked in /usr/bin and PATH)")?;
        let mut command = Command::new(kubectl);
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            // A private discovery cache: nothing written to ~/.kube.
            .arg("--cache-dir")
            .arg(self.workdir.join("kubectl-cache"))
            .args(args)
            .env_remove("KUBECONFIG");
        let scratch = self.workdir.join("kubectl-output");
        run_bounded(command, &scratch, KUBECTL_TIMEOUT)
            .with_context(|| format!("running kubectl {}", args.join(" ")))
    }

    /// Starts `kubectl --kubeconfig <admin> ARGS` in the background, its output in `log`, for a
    /// request that stays open (a watch). The caller ends it; [`BackgroundKubectl`] kills it on drop.
    pub fn kubectl_background(&self, args: &[&str], log: &Path) -> Result<BackgroundKubectl> {
        let kubectl = find_program("kubectl", &["/usr/bin/kubectl"])
            .context("kubectl not found (looked in /usr/bin and PATH)")?;
        let output = std::fs::File::create(log)?;
        let child = Command::new(kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.workdir.join("kubectl-cache"))
            .args(args)
            .env_remove("KUBECONFIG")
            .stdin(std::process::Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .spawn()
            .with_context(|| format!("starting kubectl {}", args.join(" ")))?;
        Ok(BackgroundKubectl(child))
    }

    /// Like [`TestCluster::kubectl`], but fails unless kubectl exits 0; returns its stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> Result<String> {
        let output = self.kubectl(args)?;
        if !output.status.success() {
            bail!(
                "kubectl {} failed ({}): {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Starts kube-controller-manager (leader election off, no serving ports) with its own
    /// client certificate, and waits until it has started all its controllers.
    pub fn start_controller_manager(&mut self) -> Result<()> {
        if self.controller_manager.is_some() {
            bail!("kube-controller-manager is already running");
        }
        let binary = kubernetes_binary(self.kubernetes, "kube-controller-manager")?;
        let kubeconfig = self.write_kubeconfig(
            "kube-controller-manager",
            "system:kube-controller-manager",
            &self.pki.controller_manager_client,
        )?;
        let pki = &self.pki;
        let mut args = vec![
            flag("kubeconfig", &kubeconfig),
            "--leader-elect=false".into(),
            // No serving: nothing to scrape, and no ports to collide.
            "--secure-port=0".into(),
            flag(
                "service-account-private-key-file",
                &pki.service_account_private_key,
            ),
            flag("root-ca-file", &pki.ca.cert),
            // Each controller gets its own service account, as in real clusters.
            "--use-service-account-credentials=true".into(),
            flag("cluster-signing-cert-file", &pki.ca.cert),
            flag("cluster-signing-key-file", &pki.ca.key),
            format!("--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}"),
            "--v=1".into(),
        ];
        if self.kubernetes.has_insecure_port_flags() {
            args.push("--port=0".into());
        }
        let log = self.workdir.join("kube-controller-manager.log");
        let process =
            ManagedProcess::start(&self.spawner, "kube-controller-manager", &binary, args, log)?;
        self.controller_manager = Some(process);
        // Fully started, not merely connected: while kube-controller-manager 1.20 starts its
        // controllers it creates their service accounts and exits (klog.Fatal) if the apiserver
        // is unreachable, e.g. restarted by a test. Its shared informers start only after every
        // controller has been started, so their LIST of pods marks the end of that window.
        self.wait_component_ready(
            "kube-controller-manager",
            |cluster| cluster.controller_manager.as_mut(),
            |event| {
                lists_pods(event)
                    && event.user_agent.as_deref().is_some_and(|agent| {
                        agent.starts_with("kube-controller-manager/")
                            && agent.ends_with("/shared-informers")
                    })
            },
        )
    }

    /// Starts kube-scheduler (leader election off, no serving ports) with its own client
    /// certificate, and waits until its informers list pods.
    pub fn start_scheduler(&mut self) -> Result<()> {
        if self.scheduler.is_some() {
            bail!("kube-scheduler is already running");
        }
        let binary = kubernetes_binary(self.kubernetes, "kube-scheduler")?;
        let kubeconfig = self.write_kubeconfig(
            "kube-scheduler",
            "system:kube-scheduler",
            &self.pki.scheduler_client,
        )?;
        let mut args = vec![
            flag("kubeconfig", &kubeconfig),
            "--leader-elect=false".into(),
            "--secure-port=0".into(),
            "--v=1".into(),
        ];
        if self.kubernetes.has_insecure_port_flags() {
            args.push("--port=0".into());
        }
        let log = self.workdir.join("kube-scheduler.log");
        let process = ManagedProcess::start(&self.spawner, "kube-scheduler", &binary, args, log)?;
        self.scheduler = Some(process);
        // Its informers listing pods: authenticated, authorized and about to schedule.
        self.wait_component_ready(
            "kube-scheduler",
            |cluster| cluster.scheduler.as_mut(),
            |event| lists_pods(event) && event.username.as_deref() == Some("system:kube-scheduler"),
        )
    }

    /// `(component, pid)` for every running component: etcd, kube-apiserver, and the optional ones.
    pub fn component_pids(&self) -> Vec<(&'static str, u32)> {
        [
            &self.etcd,
            &self.apiserver,
            &self.controller_manager,
            &self.scheduler,
        ]
        .into_iter()
        .flatten()
        .map(|process| (process.name, process.pid()))
        .collect()
    }

    /// Fails (with the log's tail) if any started component has exited.
    pub fn check_running(&mut self) -> Result<()> {
        for process in [
            self.etcd.as_mut(),
            self.apiserver.as_mut(),
            self.controller_manager.as_mut(),
            self.scheduler.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            process.ensure_running()?;
        }
        Ok(())
    }

    /// Stops every component and removes the work directory (unless `APISCOPE_KEEP_CLUSTER=1`).
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        // Clients first, etcd last, so the apiserver shuts down against a live store.
        let mut first_error = None;
        for mut process in [
            self.scheduler.take(),
            self.controller_manager.take(),
            self.apiserver.take(),
            self.etcd.take(),
        ]
        .into_iter()
        .flatten()
        {
            if let Err(error) = process.terminate(STOP_GRACE) {
                first_error.get_or_insert(error);
            }
        }
        if keep_cluster() {
            eprintln!(
                "apiscope test cluster: {KEEP_CLUSTER_ENV}=1, keeping {}",
                self.workdir.display()
            );
        } else if let Err(error) = remove_workdir(&self.workdir, self.created_workdir) {
            first_error.get_or_insert(error);
        }
        first_error.map_or(Ok(()), Err)
    }

    fn start_etcd(&mut self) -> Result<()> {
        // A modern apiserver needs the etcd its release pins (Debian's 3.4 makes it serve
        // consistent LISTs from etcd instead of its watch cache); v1.20.2 runs Debian's.
        let etcd = match self.kubernetes.etcd_binary() {
            Some(etcd) => {
                require_file(self.kubernetes, &etcd, "etcd")?;
                etcd
            }
            None => find_program("etcd", &["/usr/bin/etcd"]).context(
                "etcd not found: install Debian's etcd-server (scripts/install-packages.sh)",
            )?,
        };
        let data_dir = self.workdir.join("etcd-data");
        let log = self.workdir.join("etcd.log");
        // One retry: another process may grab a port between our probe and etcd's bind.
        for attempt in 0..2 {
            let ports = free_loopback_ports(2)?;
            let (client_url, peer_url) = (
                format!("https://127.0.0.1:{}", ports[0]),
                format!("https://127.0.0.1:{}", ports[1]),
            );
            let pki = &self.pki;
            let args = vec![
                "--name=apiscope-test".into(),
                flag("data-dir", &data_dir),
                format!("--listen-client-urls={client_url}"),
                format!("--advertise-client-urls={client_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=apiscope-test={peer_url}"),
                "--initial-cluster-state=new".into(),
                flag("cert-file", &pki.etcd_server.cert),
                flag("key-file", &pki.etcd_server.key),
                flag("trusted-ca-file", &pki.ca.cert),
                "--client-cert-auth=true".into(),
                flag("peer-cert-file", &pki.etcd_server.cert),
                flag("peer-key-file", &pki.etcd_server.key),
                flag("peer-trusted-ca-file", &pki.ca.cert),
                "--peer-client-cert-auth=true".into(),
                "--logger=zap".into(),
                "--log-outputs=stderr".into(),
            ];
            let process = ManagedProcess::start(&self.spawner, "etcd", &etcd, args, log.clone())?;
            self.etcd = Some(process);
            self.etcd_client_port = ports[0];
            match self.wait_etcd_ready() {
                Ok(()) => return Ok(()),
                Err(error) if attempt == 0 && log_shows_port_conflict(&log) => {
                    eprintln!("apiscope test cluster: etcd port taken, retrying: {error:#}");
                    if let Some(mut etcd) = self.etcd.take() {
                        etcd.terminate(STOP_GRACE)?;
                    }
                    let _ = fs::remove_dir_all(&data_dir);
                }
                Err(error) => return Err(error),
            }
        }
        bail!("etcd did not start")
    }

    fn wait_etcd_ready(&mut self) -> Result<()> {
        let url = format!("https://127.0.0.1:{}/health", self.etcd_client_port);
        let client = self.pki.apiserver_etcd_client.clone();
        let ca = self.pki.ca.cert.clone();
        poll_until(
            "etcd /health",
            ETCD_READY_TIMEOUT,
            Duration::from_millis(100),
            || {
                self.etcd
                    .as_mut()
                    .context("etcd is not running")?
                    .ensure_running()?;
                let response = https_get(&url, &ca, &client)?;
                Ok((response.status == 200 && response.body.contains("true")).then_some(()))
            },
        )
        .map_err(|error| explain_failure(error, self.etcd.as_mut(), "etcd did not become healthy"))
    }

    fn start_apiserver(&mut self) -> Result<()> {
        fs::write(&self.audit_policy, AUDIT_POLICY)
            .with_context(|| format!("writing {}", self.audit_policy.display()))?;
        let log = self.apiserver_log();
        for attempt in 0..2 {
            self.apiserver_port = free_loopback_ports(1)?[0];
            let (program, args) = self.apiserver_command()?;
            let process = ManagedProcess::start(
                &self.spawner,
                "kube-apiserver",
                &program,
                args,
                log.clone(),
            )?;
            self.apiserver = Some(process);
            match self.wait_apiserver_ready() {
                Ok(()) => break,
                Err(error) if attempt == 0 && log_shows_port_conflict(&log) => {
                    eprintln!("apiscope test cluster: apiserver port taken, retrying: {error:#}");
                    if let Some(mut apiserver) = self.apiserver.take() {
                        apiserver.terminate(STOP_GRACE)?;
                    }
                    // The retry must not see the failed attempt's message in the shared log.
                    let _ = fs::rename(&log, self.workdir.join("kube-apiserver.port-conflict.log"));
                }
                Err(error) => return Err(error),
            }
        }
        self.write_kubeconfig("admin", ADMIN_USER, &self.pki.admin_client)?;
        Ok(())
    }

    /// The program and arguments that start kube-apiserver, directly or container-hosted.
    fn apiserver_command(&self) -> Result<(PathBuf, Vec<String>)> {
        let Some(binary) = self.container_binary_path() else {
            return Ok((self.apiserver_binary.clone(), self.apiserver_args()));
        };
        let root = self.container_root();
        fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        // Private propagation: the tmpfs (and the copy in it) stay invisible to the host.
        let script = r#"set -e; mount -t tmpfs -o size=512m apiscope-container "$1"; cp "$2" "$3"; binary="$3"; shift 3; exec "$binary" "$@""#;
        let mut args = vec![
            "--mount".to_string(),
            "--propagation".into(),
            "private".into(),
            "--".into(),
            "/bin/sh".into(),
            "-c".into(),
            script.into(),
            "sh".into(),
            root.display().to_string(),
            self.apiserver_binary.display().to_string(),
            binary.display().to_string(),
        ];
        args.extend(self.apiserver_args());
        let unshare = find_program("unshare", &["/usr/bin/unshare"])
            .context("unshare not found (util-linux)")?;
        Ok((unshare, args))
    }

    fn apiserver_args(&self) -> Vec<String> {
        let pki = &self.pki;
        let mut args = vec![
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={}", self.apiserver_port),
            // Default is /var/run/kubernetes, for self-signed certs we never need.
            flag("cert-dir", &self.workdir.join("apiserver-certs")),
            flag("tls-cert-file", &pki.apiserver_serving.cert),
            flag("tls-private-key-file", &pki.apiserver_serving.key),
            flag("client-ca-file", &pki.ca.cert),
            "--authorization-mode=Node,RBAC".into(),
            format!("--etcd-servers=https://127.0.0.1:{}", self.etcd_client_port),
            flag("etcd-cafile", &pki.ca.cert),
            flag("etcd-certfile", &pki.apiserver_etcd_client.cert),
            flag("etcd-keyfile", &pki.apiserver_etcd_client.key),
            flag("service-account-key-file", &pki.service_account_public_key),
            flag(
                "service-account-signing-key-file",
                &pki.service_account_private_key,
            ),
            format!("--service-account-issuer={SERVICE_ACCOUNT_ISSUER}"),
            format!("--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}"),
            // The reconciler would publish 127.0.0.1 as the `kubernetes` service's endpoint, which
            // Endpoints validation rejects (loopback): it would only log an error every 10 s.
            "--endpoint-reconciler-type=none".into(),
            flag("audit-policy-file", &self.audit_policy),
            flag("audit-log-path", &self.audit_log),
            "--audit-log-format=json".into(),
            // The audit log is the test oracle: an event must be on disk when its request ends.
            "--audit-log-mode=blocking".into(),
            // One file for the whole run (lumberjack's default rotates at 100 MB).
            "--audit-log-maxsize=100000".into(),
        ];
        if self.kubernetes.has_insecure_port_flags() {
            // In 1.20 a dummy flag already (anything but 0 is rejected); gone in 1.24.
            args.push("--insecure-port=0".into());
        }
        args.extend(self.extra_apiserver_args.iter().cloned());
        args
    }

    fn wait_apiserver_ready(&mut self) -> Result<()> {
        let url = format!("{}/readyz", self.apiserver_url());
        let client = self.pki.admin_client.clone();
        let ca = self.pki.ca.cert.clone();
        let mut last_answer = String::from("no answer yet");
        let result = poll_until(
            "kube-apiserver /readyz",
            APISERVER_READY_TIMEOUT,
            Duration::from_millis(250),
            || {
                self.apiserver
                    .as_mut()
                    .context("kube-apiserver is not running")?
                    .ensure_running()?;
                let response = https_get(&url, &ca, &client)?;
                last_answer = format!("HTTP {}: {}", response.status, response.body.trim());
                Ok((response.status == 200).then_some(()))
            },
        );
        result.map_err(|error| {
            let what =
                format!("kube-apiserver did not become ready (last /readyz answer: {last_answer})");
            explain_failure(error, self.apiserver.as_mut(), &what)
        })
    }

    /// Waits until a successful request of the component's shows up in the audit log: proof
    /// that it authenticated and is working, not merely running.
    fn wait_component_ready(
        &mut self,
        component: &str,
        process: impl Fn(&mut TestCluster) -> Option<&mut ManagedProcess>,
        is_ready_request: impl Fn(&AuditEvent) -> bool,
    ) -> Result<()> {
        let result = poll_until(
            &format!("{component}'s requests in the audit log"),
            COMPONENT_READY_TIMEOUT,
            Duration::from_millis(250),
            || {
                process(self)
                    .with_context(|| format!("{component} is not running"))?
                    .ensure_running()?;
                // A streaming list (watch) never completes while the component runs: its start
                // is the answer.
                let found = self.audit_events()?.iter().any(|event| {
                    (event.stage == "ResponseComplete" || event.stage == "ResponseStarted")
                        && event.response_code.is_some_and(|code| code < 400)
                        && is_ready_request(event)
                });
                Ok(found.then_some(()))
            },
        );
        result.map_err(|error| {
            let what = format!("{component} did not get going against the apiserver");
            explain_failure(error, process(self), &what)
        })
    }

    /// Writes a kubeconfig for `user` authenticating with `client`, returns its path.
    fn write_kubeconfig(&self, name: &str, user: &str, client: &CertPair) -> Result<PathBuf> {
        let path = self.workdir.join(format!("{name}.kubeconfig"));
        let text = format!(
            "apiVersion: v1
kind: Config
clusters:
- name: apiscope-test
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: {user}
  user:
    client-certificate: {cert}
    client-key: {key}
contexts:
- name: apiscope-test
  context:
    cluster: apiscope-test
    user: {user}
current-context: apiscope-test
",
            server = self.apiserver_url(),
            ca = self.pki.ca.cert.display(),
            cert = client.cert.display(),
            key = client.key.display(),
        );
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if let Err(error) = self.shutdown() {
            eprintln!("apiscope test cluster: teardown: {error:#}");
        }
    }
}

/// Adds `what` and the component's log tail to a failed wait, unless the component exited: then
/// the error already says so and carries the tail.
fn explain_failure(
    error: anyhow::Error,
    process: Option<&mut ManagedProcess>,
    what: &str,
) -> anyhow::Error {
    let Some(process) = process else {
        return error.context(what.to_string());
    };
    if !matches!(process.exited(), Ok(None)) {
        return error.context(what.to_string());
    }
    let tail = process.log_tail();
    error.context(format!(
        "{what}; last lines of {}:\n{tail}",
        process.log_path.display()
    ))
}

/// An informer's initial list of pods: a LIST, or from v1.35 on (client-go's `WatchListClient`
/// is on by default) a watch with `sendInitialEvents=true` that streams the list.
fn lists_pods(event: &AuditEvent) -> bool {
    event.resource() == Some("pods")
        && (event.verb == "list"
            || (event.verb == "watch" && event.request_uri.contains("sendInitialEvents=true")))
}

/// Every request at RequestResponse level, every stage: the richest oracle the apiserver offers.
const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: RequestResponse
";

/// `$APISCOPE_CACHE` (default `$HOME/.cache/apiscope`), where scripts keep built artifacts.
pub fn apiscope_cache() -> PathBuf {
    match std::env::var_os("APISCOPE_CACHE") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
            PathBuf::from(home).join(".cache/apiscope")
        }
    }
}

/// A binary an install script built: `$VARIABLE` if set, else the `VARIABLE=path` line the script
/// wrote to `$APISCOPE_CACHE/<env_file>`. `None` if neither names an existing file.
pub fn cached_binary(variable: &str, env_file: &str) -> Option<PathBuf> {
    let from_env = std::env::var_os(variable)
        .filter(|value| !value.is_empty())
        .map(PathBuf::from);
    let from_cache = || {
        let text = std::fs::read_to_string(apiscope_cache().join(env_file)).ok()?;
        let prefix = format!("{variable}=");
        text.lines()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
            .map(|path| PathBuf::from(path.trim()))
    };
    from_env.or_else(from_cache).filter(|path| path.is_file())
}

/// The path of one built Kubernetes binary of `version`, or an error saying how to build it.
pub fn kubernetes_binary(version: KubernetesVersion, name: &str) -> Result<PathBuf> {
    let path = version.bin_dir().join(name);
    require_file(version, &path, name)?;
    Ok(path)
}

fn require_file(version: KubernetesVersion, path: &Path, what: &str) -> Result<()> {
    if !path.is_file() {
        bail!(
            "{what} not found at {}: build Kubernetes {version} with `{}` (or run `make \
             setup`, which builds the matrix)",
            path.display(),
            version.build_command()
        );
    }
    Ok(())
}

fn keep_cluster() -> bool {
    std::env::var(KEEP_CLUSTER_ENV).is_ok_and(|value| value == "1")
}

/// Creates the work directory, or checks that a given one is empty (we never clobber files).
/// Returns whether we created it.
fn prepare_workdir(requested: Option<PathBuf>) -> Result<(PathBuf, bool)> {
    let dir = match requested {
        Some(dir) => dir,
        None => {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.subsec_nanos());
            std::env::temp_dir().join(format!(
                "apiscope-cluster-{}-{nanos:09}",
                std::process::id()
            ))
        }
    };
    let dir =
        std::path::absolute(&dir).with_context(|| format!("making {} absolute", dir.display()))?;
    if dir.exists() {
        let mut entries = fs::read_dir(&dir)
            .with_context(|| format!("reading work directory {}", dir.display()))?;
        if entries.next().is_some() {
            bail!(
                "work directory {} is not empty; remove it (a previous cluster's leftovers?)",
                dir.display()
            );
        }
        Ok((dir, false))
    } else {
        fs::create_dir_all(&dir)
            .with_context(|| format!("creating work directory {}", dir.display()))?;
        Ok((dir, true))
    }
}

fn remove_workdir(dir: &Path, created: bool) -> Result<()> {
    if created {
        return fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()));
    }
    // It existed empty before us: everything in it is ours.
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let removed = if path.is_dir() && !path.is_symlink() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        removed.with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}

fn make_dir(parent: &Path, name: &str) -> Result<PathBuf> {
    let dir = parent.join(name);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn flag(name: &str, path: &Path) -> String {
    format!("--{name}={}", path.display())
}

/// The first of `candidates` that exists, else `name` found on PATH.
fn find_program(name: &str, candidates: &[&str]) -> Option<PathBuf> {
    let preferred = candidates.iter().map(PathBuf::from);
    let on_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    preferred.chain(on_path).find(|path| path.is_file())
}

struct HttpResponse {
    status: u16,
    body: String,
}

/// One HTTPS GET with a client certificate, through the curl CLI. Connection failures are an
/// answer (status 0), not an error: callers poll until the server is up.
fn https_get(url: &str, ca: &Path, client: &CertPair) -> Result<HttpResponse> {
    let output = Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--max-time",
            "5",
            "--write-out",
            "\n%{http_code}",
        ])
        .arg("--cacert")
        .arg(ca)
        .arg("--cert")
        .arg(&client.cert)
        .arg("--key")
        .arg(&client.key)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .context("running curl (install Debian's curl: scripts/install-packages.sh)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let (body, status) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    let status = status.trim().parse().unwrap_or(0);
    let body = if status == 0 {
        String::from_utf8_lossy(&output.stderr).into_owned()
    } else {
        body.to_string()
    };
    Ok(HttpResponse { status, body })
}

/// Runs `command` to completion, killing it after `timeout`. Output goes through files in
/// `scratch_dir`, so a chatty child cannot block on a full pipe while we poll it.
fn run_bounded(mut command: Command, scratch_dir: &Path, timeout: Duration) -> Result<Output> {
    fs::create_dir_all(scratch_dir)
        .with_context(|| format!("creating {}", scratch_dir.display()))?;
    let unique = format!(
        "{:?}-{}",
        thread::current().id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos())
    )
    .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "");
    let stdout_path = scratch_dir.join(format!("{unique}.stdout"));
    let stderr_path = scratch_dir.join(format!("{unique}.stderr"));
    let mut child = command
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout_path)?)
        .stderr(fs::File::create(&stderr_path)?)
        .spawn()?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("still running after {timeout:?}; killed");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let output = Output {
        status,
        stdout: fs::read(&stdout_path)?,
        stderr: fs::read(&stderr_path)?,
    };
    let _ = fs::remove_file(&stdout_path);
    let _ = fs::remove_file(&stderr_path);
    Ok(output)
}

/// A kubectl started by [`TestCluster::kubectl_background`]; killed when dropped.
pub struct BackgroundKubectl(std::process::Child);

impl BackgroundKubectl {
    /// Kills kubectl (ending its request from the client side) and reaps it.
    pub fn stop(mut self) -> Result<()> {
        self.0.kill()?;
        self.0.wait()?;
        Ok(())
    }
}

impl Drop for BackgroundKubectl {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
