//! `apiscope-testcluster up`: a local Kubernetes control plane for demos and shell scripts.
//! Prints where everything is, writes the same as KEY=VALUE lines to `cluster.env` once the
//! cluster is ready, and tears down cleanly on SIGINT, SIGTERM or SIGHUP.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use apiscope_e2e::cluster::{ClusterOptions, KubernetesVersion, TestCluster};
use apiscope_e2e::dashboards;
use apiscope_e2e::jaeger::Jaeger;
use apiscope_e2e::kafka::KafkaBroker;
use apiscope_e2e::otelcol::Collector;
use apiscope_e2e::prometheus::Prometheus;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    version,
    about = "A real local Kubernetes control plane (etcd + kube-apiserver) for apiscope"
)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Start the cluster and keep it running until SIGINT/SIGTERM.
    Up {
        /// Work directory (absent or empty); also receives cluster.env. Default: a temp dir.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Kubernetes build to run, e.g. 1.37.2 or 1.34.4-pie (built by `make setup`).
        #[arg(long, default_value_t = KubernetesVersion::newest())]
        kubernetes: KubernetesVersion,
        /// Also run kube-controller-manager.
        #[arg(long)]
        controller_manager: bool,
        /// Also run kube-scheduler.
        #[arg(long)]
        scheduler: bool,
        /// Another kube-apiserver binary of that version (default: the build in $APISCOPE_CACHE).
        #[arg(long)]
        apiserver_binary: Option<PathBuf>,
        /// Also run the telemetry back ends on loopback: a Kafka broker, Jaeger (standing in
        /// for Tempo), Prometheus (scraping --scrape and the apiserver, receiving remote write,
        /// with dashboards/rules loaded) and the collector with otel-collector/production.yaml
        /// writing to them. Their addresses go to cluster.env.
        #[arg(long)]
        telemetry: bool,
        /// With --telemetry: apiscope's metrics address (HOST:PORT) for Prometheus to scrape.
        #[arg(long, default_value = "127.0.0.1:9464")]
        scrape: String,
        /// Extra kube-apiserver flags, after the harness's own (they win), e.g. `-- --v=2`.
        #[arg(last = true)]
        extra_apiserver_args: Vec<String>,
    },
}

fn main() -> Result<()> {
    // Blocked before any thread exists, so every thread inherits the mask and the signals stay
    // pending until `sigwait` below; a Ctrl-C during start-up tears down right after it.
    let signals = block_termination_signals()?;
    let Commands::Up {
        dir,
        kubernetes,
        controller_manager,
        scheduler,
        apiserver_binary,
        telemetry,
        scrape,
        extra_apiserver_args,
    } = Cli::parse().command;
    let cluster = TestCluster::start(ClusterOptions {
        kubernetes,
        controller_manager,
        scheduler,
        apiserver_binary,
        workdir: dir,
        extra_apiserver_args,
        container_binary_name: None,
    })?;

    let backends = if telemetry {
        match Backends::start(&cluster, &scrape) {
            Ok(backends) => Some(backends),
            Err(error) => {
                let _ = cluster.stop();
                return Err(error.context("starting the telemetry back ends"));
            }
        }
    } else {
        None
    };
    let env_file = cluster.workdir().join("cluster.env");
    let mut env = cluster_env(&cluster);
    if let Some(backends) = &backends {
        env.push_str(&backends.env());
    }
    write_atomically(&env_file, &env)?;
    print!("{env}");
    println!("APISCOPE_CLUSTER_ENV={}", env_file.display());
    println!(
        "# ready; Ctrl-C or SIGTERM (pid {}) stops the cluster",
        std::process::id()
    );
    std::io::stdout().flush()?;

    let mut cluster = cluster;
    let mut backends = backends;
    // Wakes every second to notice a component that died, so scripts are not left with a
    // cluster that silently stopped working.
    loop {
        if let Some(signal) = wait_for_signal(&signals, Duration::from_secs(1))? {
            eprintln!("apiscope-testcluster: signal {signal}, stopping");
            if let Some(backends) = backends {
                backends.stop();
            }
            return cluster.stop();
        }
        let died = cluster.check_running().and_then(|()| match &mut backends {
            Some(backends) => backends.check_running(),
            None => Ok(()),
        });
        if let Err(error) = died {
            if let Some(backends) = backends {
                backends.stop();
            }
            let _ = cluster.stop();
            return Err(error.context("a component died; cluster stopped"));
        }
    }
}

/// The telemetry back ends of `--telemetry`, each the test harness's own (the same processes and
/// configurations the end-to-end tests check).
struct Backends {
    kafka: KafkaBroker,
    jaeger: Jaeger,
    prometheus: Prometheus,
    collector: Collector,
}

impl Backends {
    fn start(cluster: &TestCluster, scrape: &str) -> Result<Backends> {
        let dir = cluster.workdir().join("telemetry");
        eprintln!("apiscope-testcluster: starting Kafka, Jaeger, Prometheus and the collector");
        let kafka = KafkaBroker::start(&dir.join("kafka"))?;
        let jaeger = Jaeger::start(&dir.join("jaeger"))?;
        let pki = cluster.pki();
        let prometheus = Prometheus::start(
            &dir.join("prometheus"),
            &format!(
                "  - job_name: apiscope\n    static_configs: [{{targets: ['{scrape}']}}]\n\
                 \x20 - job_name: apiserver\n    scheme: https\n    tls_config:\n      ca_file: {}\n      cert_file: {}\n      key_file: {}\n    static_configs: [{{targets: ['127.0.0.1:{}']}}]\n",
                pki.ca.cert.display(),
                pki.admin_client.cert.display(),
                pki.admin_client.key.display(),
                cluster.apiserver_port()
            ),
            &dashboards::rule_files()?,
        )?;
        let remote_write = format!("http://{}/api/v1/write", prometheus.address());
        let collector = Collector::start(
            &dir.join("otelcol"),
            &[
                ("KAFKA_BROKERS", kafka.bootstrap().as_str()),
                ("TEMPO_OTLP_ENDPOINT", jaeger.otlp_grpc_endpoint().as_str()),
                ("PROMETHEUS_REMOTE_WRITE_ENDPOINT", remote_write.as_str()),
            ],
        )?;
        Ok(Backends {
            kafka,
            jaeger,
            prometheus,
            collector,
        })
    }

    fn env(&self) -> String {
        [
            (
                "APISCOPE_OTLP_ENDPOINT",
                format!("http://{}", self.collector.otlp_grpc_endpoint()),
            ),
            ("APISCOPE_JAEGER_URL", self.jaeger.query_url()),
            (
                "APISCOPE_PROMETHEUS_URL",
                format!("http://{}", self.prometheus.address()),
            ),
            ("APISCOPE_KAFKA_BOOTSTRAP", self.kafka.bootstrap()),
        ]
        .iter()
        .map(|(key, value)| format!("{key}={value}\n"))
        .collect()
    }

    fn check_running(&mut self) -> Result<()> {
        self.collector.ensure_running()?;
        self.jaeger.ensure_running()?;
        self.kafka.ensure_running()
    }

    /// The collector first, so it can still deliver to the others.
    fn stop(self) {
        for (name, result) in [
            ("collector", self.collector.stop()),
            ("jaeger", self.jaeger.stop()),
            ("prometheus", self.prometheus.stop()),
            ("kafka", self.kafka.stop()),
        ] {
            if let Err(error) = result {
                eprintln!("apiscope-testcluster: stopping {name}: {error:#}");
            }
        }
    }
}

fn cluster_env(cluster: &TestCluster) -> String {
    let pki = cluster.pki();
    let lines = [
        ("KUBECONFIG", cluster.kubeconfig().display().to_string()),
        (
            "APISCOPE_KUBECONFIG",
            cluster.kubeconfig().display().to_string(),
        ),
        ("APISCOPE_APISERVER_URL", cluster.apiserver_url()),
        (
            "APISCOPE_KUBERNETES_VERSION",
            cluster.kubernetes().to_string(),
        ),
        (
            "APISCOPE_APISERVER_PORT",
            cluster.apiserver_port().to_string(),
        ),
        (
            "APISCOPE_APISERVER_PID",
            cluster.apiserver_pid().to_string(),
        ),
        (
            "APISCOPE_APISERVER_BINARY",
            cluster.apiserver_binary().display().to_string(),
        ),
        (
            "APISCOPE_AUDIT_LOG",
            cluster.audit_log().display().to_string(),
        ),
        ("APISCOPE_CA_CERT", pki.ca.cert.display().to_string()),
        (
            "APISCOPE_ADMIN_CERT",
            pki.admin_client.cert.display().to_string(),
        ),
        (
            "APISCOPE_ADMIN_KEY",
            pki.admin_client.key.display().to_string(),
        ),
        (
            "APISCOPE_CLUSTER_DIR",
            cluster.workdir().display().to_string(),
        ),
        ("APISCOPE_TESTCLUSTER_PID", std::process::id().to_string()),
    ];
    lines
        .iter()
        .map(|(key, value)| format!("{key}={value}\n"))
        .collect()
}

/// Scripts poll for cluster.env to know the cluster is ready: it must never be seen half-written.
fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let partial = path.with_extension("env.partial");
    fs::write(&partial, text).with_context(|| format!("writing {}", partial.display()))?;
    fs::rename(&partial, path).with_context(|| format!("renaming to {}", path.display()))
}

fn block_termination_signals() -> Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it before any use, and
    // pthread_sigmask only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, signal);
        }
        let error = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if error != 0 {
            bail!(
                "blocking signals: {}",
                std::io::Error::from_raw_os_error(error)
            );
        }
        Ok(set)
    }
}

/// One of the blocked signals, or `None` after `timeout`.
fn wait_for_signal(set: &libc::sigset_t, timeout: Duration) -> Result<Option<libc::c_int>> {
    let timeout = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `set` was initialised by block_termination_signals; a null siginfo is allowed.
    let signal = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &timeout) };
    if signal >= 0 {
        return Ok(Some(signal));
    }
    let error = std::io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(None),
        _ => bail!("waiting for a signal: {error}"),
    }
}
