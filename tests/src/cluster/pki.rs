//! The test cluster's certificates, made with the `openssl` CLI: one CA that signs every serving and
//! client certificate (and, for kube-controller-manager, CSRs), plus the service-account key pair.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

const OPENSSL: &str = "openssl";
/// Long enough for any test run, short enough that a leaked key is worthless soon.
const VALIDITY_DAYS: &str = "7";

/// A certificate and its private key, both PEM files.
#[derive(Debug, Clone)]
pub struct CertPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Every file the control plane needs for TLS and service-account tokens.
#[derive(Debug, Clone)]
pub struct ClusterPki {
    pub ca: CertPair,
    pub etcd_server: CertPair,
    pub apiserver_serving: CertPair,
    pub apiserver_etcd_client: CertPair,
    pub admin_client: CertPair,
    pub controller_manager_client: CertPair,
    pub scheduler_client: CertPair,
    pub service_account_private_key: PathBuf,
    pub service_account_public_key: PathBuf,
}

/// Subject alternative names for anything serving on loopback. The `kubernetes.default*` names and
/// the first service IP match what in-cluster clients would dial.
const APISERVER_SANS: &str = "IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,\
DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:10.0.0.1";
const LOOPBACK_SANS: &str = "IP:127.0.0.1,DNS:localhost";

impl ClusterPki {
    /// Creates all keys and certificates in `dir` (which must exist).
    pub fn create(dir: &Path) -> Result<ClusterPki> {
        let ca = create_ca(dir)?;
        let issue = |name: &str, subject: &str, sans: Option<&str>| -> Result<CertPair> {
            issue_cert(dir, &ca, name, subject, sans)
                .with_context(|| format!("issuing the {name} certificate ({subject})"))
        };
        // etcd uses one certificate for serving and for its (unused, single-member) peer link.
        let etcd_server = issue("etcd-server", "/CN=etcd-server", Some(LOOPBACK_SANS))?;
        let apiserver_serving = issue("apiserver", "/CN=kube-apiserver", Some(APISERVER_SANS))?;
        let apiserver_etcd_client = issue(
            "apiserver-etcd-client",
            "/CN=kube-apiserver-etcd-client",
            None,
        )?;
        // O=system:masters is bound to cluster-admin by RBAC's bootstrap policy.
        let admin_client = issue("admin", "/O=system:masters/CN=apiscope-admin", None)?;
        // These user names are what RBAC's bootstrap roles and bindings expect.
        let controller_manager_client = issue(
            "kube-controller-manager",
            "/CN=system:kube-controller-manager",
            None,
        )?;
        let scheduler_client = issue("kube-scheduler", "/CN=system:kube-scheduler", None)?;

        let service_account_private_key = dir.join("service-account.key");
        let service_account_public_key = dir.join("service-account.pub");
        generate_key(&service_account_private_key)?;
        run_openssl(&[
            "pkey",
            "-in",
            path_str(&service_account_private_key)?,
            "-pubout",
            "-out",
            path_str(&service_account_public_key)?,
        ])
        .context("deriving the service-account public key")?;

        Ok(ClusterPki {
            ca,
            etcd_server,
            apiserver_serving,
            apiserver_etcd_client,
            admin_client,
            controller_manager_client,
            scheduler_client,
            service_account_private_key,
            service_account_public_key,
        })
    }
}

fn create_ca(dir: &Path) -> Result<CertPair> {
    let pair = CertPair {
        cert: dir.join("ca.crt"),
        key: dir.join("ca.key"),
    };
    generate_key(&pair.key)?;
    run_openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        path_str(&pair.key)?,
        "-subj",
        "/CN=apiscope-test-ca",
        "-days",
        VALIDITY_DAYS,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        "-out",
        path_str(&pair.cert)?,
    ])
    .context("creating the test CA")?;
    Ok(pair)
}

/// Issues a leaf certificate valid for both server and client auth: etcd's peer and client
/// listeners check both usages on one certificate, and it costs nothing elsewhere.
fn issue_cert(
    dir: &Path,
    ca: &CertPair,
    name: &str,
    subject: &str,
    sans: Option<&str>,
) -> Result<CertPair> {
    let pair = CertPair {
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
    };
    let csr = dir.join(format!("{name}.csr"));
    let extensions = dir.join(format!("{name}.ext"));
    let mut extension_text = String::from(
        "basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth,clientAuth\n",
    );
    if let Some(sans) = sans {
        extension_text.push_str(&format!("subjectAltName={sans}\n"));
    }
    fs::write(&extensions, extension_text)
        .with_context(|| format!("writing {}", extensions.display()))?;

    generate_key(&pair.key)?;
    run_openssl(&[
        "req",
        "-new",
        "-key",
        path_str(&pair.key)?,
        "-subj",
        subject,
        "-out",
        path_str(&csr)?,
    ])?;
    run_openssl(&[
        "x509",
        "-req",
        "-in",
        path_str(&csr)?,
        "-CA",
        path_str(&ca.cert)?,
        "-CAkey",
        path_str(&ca.key)?,
        // A random serial per certificate; no serial file to share between certificates.
        "-set_serial",
        &random_serial(name),
        "-days",
        VALIDITY_DAYS,
        "-extfile",
        path_str(&extensions)?,
        "-out",
        path_str(&pair.cert)?,
    ])?;
    // Best effort: the CSR and extension files are only inputs.
    let _ = fs::remove_file(&csr);
    let _ = fs::remove_file(&extensions);
    Ok(pair)
}

/// EC P-256 keys: generated in milliseconds (RSA takes far longer), and every component
/// (Go's crypto/tls, kube's keyutil for service-account tokens, etcd) accepts them.
fn generate_key(path: &Path) -> Result<()> {
    run_openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        path_str(path)?,
    ])
    .with_context(|| format!("generating key {}", path.display()))
}

fn random_serial(salt: &str) -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::BuildHasher;
    // RandomState is randomly seeded per instance: good enough for unique test serials.
    let serial = RandomState::new().hash_one(salt) >> 1;
    format!("0x{serial:016x}")
}

fn run_openssl(args: &[&str]) -> Result<()> {
    let output = Command::new(OPENSSL)
        .args(args)
        .output()
        .with_context(|| format!("running `{OPENSSL}` (is the openssl CLI installed?)"))?;
    if !output.status.success() {
        bail!(
            "`{OPENSSL} {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

pub(crate) fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("path is not UTF-8: {}", path.display()))
}
