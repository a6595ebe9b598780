//! Finds or starts a control plane the envtest way, installs the CRDs,
//! RBAC and admission policy, and runs `cronwarden run` as a
//! ServiceAccount-token client, so a missing permission fails the suite.
//! A kube-controller-manager, when the assets have one, runs the
//! namespace, garbage-collector and ClusterRole-aggregation controllers,
//! each as its own ServiceAccount as in a real cluster (the admission
//! policy lets exactly those delete findings). Everything started is
//! stopped on drop, also when a scenario panics.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A child process killed when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Proc {
        let file = std::fs::File::create(&log).expect("log file");
        let child = cmd
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            child,
            name: name.into(),
            log,
        }
    }

    /// SIGTERM, then wait (graceful: the controller releases its Lease).
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGKILL: a crash, nothing released.
    /// The exit code once the process has exited (-1 for a signal).
    pub fn exit_code(&mut self) -> Option<i32> {
        match self.child.try_wait() {
            Ok(Some(s)) => Some(s.code().unwrap_or(-1)),
            _ => None,
        }
    }

    /// Still running (not exited)?
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text
            .lines()
            .filter(|l| !l.contains("cert bypassed"))
            .collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // A wrapper (E2E_CONTROLLER_WRAPPER=heaptrack) runs the controller as
        // its child and does not pass a kill on: stop its children first.
        let _ = Command::new("pkill")
            .args(["-KILL", "-P", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub admin_kubeconfig: PathBuf,
    pub sa_kubeconfig: PathBuf,
    pub kubectl: PathBuf,
    pub client: Client,
    /// `Err(why)` when no kube-controller-manager runs the namespace,
    /// garbage-collector and ClusterRole-aggregation controllers.
    pub controller_manager: Result<(), String>,
    /// The API server's audit log and webhook target, when it runs here.
    pub audit: Option<AuditSetup>,
    // Order matters: the controller manager stops before the API server,
    // the API server before etcd.
    controller_manager_proc: Option<Proc>,
    apiserver: std::sync::Mutex<Option<Proc>>,
    /// How to start the API server again (`restart_apiserver`).
    apiserver_cmd: Option<(PathBuf, Vec<String>)>,
    _etcd: Option<Proc>,
}

fn spawn_apiserver(bin: &Path, args: &[String], d: &Path, n: usize) -> Proc {
    let mut cmd = Command::new(bin);
    cmd.args(args);
    Proc::spawn(
        "kube-apiserver",
        cmd,
        d.join(format!(
            "kube-apiserver{}.log",
            if n == 0 {
                String::new()
            } else {
                format!("-{n}")
            }
        )),
    )
}

/// kube-apiserver writes the shipped audit policy's events to a log file
/// and POSTs them to a webhook on `webhook_port` (mTLS: `client.crt` is
/// signed by `ca.crt`, which also signed the webhook's `server.crt`).
pub struct AuditSetup {
    pub log: PathBuf,
    pub webhook_port: u16,
    pub dir: PathBuf,
}

impl AuditSetup {
    /// The controller flags that follow the log.
    pub fn log_flags(&self) -> Vec<String> {
        vec!["--audit-log".into(), self.log.display().to_string()]
    }

    /// The controller flags that serve the webhook (mTLS).
    pub fn webhook_flags(&self) -> Vec<String> {
        let p = |f: &str| self.dir.join(f).display().to_string();
        vec![
            "--audit-webhook-addr".into(),
            format!("127.0.0.1:{}", self.webhook_port),
            "--audit-webhook-cert".into(),
            p("server.crt"),
            "--audit-webhook-key".into(),
            p("server.key"),
            "--audit-webhook-client-ca".into(),
            p("ca.crt"),
        ]
    }

    /// Certificates made with openssl, and the webhook kubeconfig.
    fn create(d: &Path) -> Result<AuditSetup, String> {
        let dir = d.join("audit");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let webhook_port = free_port();
        let run = |args: &[&str]| -> Result<(), String> {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .map_err(|e| format!("openssl: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "openssl {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ))
            }
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=e2e-audit-ca",
        ])?;
        for (name, cn, ext) in [
            (
                "server",
                "127.0.0.1",
                "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
            ),
            ("client", "kube-apiserver", "extendedKeyUsage=clientAuth\n"),
            ("stranger", "stranger", "extendedKeyUsage=clientAuth\n"),
        ] {
            std::fs::write(dir.join(format!("{name}.ext")), ext).map_err(|e| e.to_string())?;
            run(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={cn}"),
            ])?;
            // The stranger's certificate is self-signed: not by the CA.
            let (ca, cakey) = if name == "stranger" {
                ("stranger-ca.crt", "stranger.key")
            } else {
                ("ca.crt", "ca.key")
            };
            if name == "stranger" {
                run(&[
                    "req",
                    "-x509",
                    "-key",
                    "stranger.key",
                    "-out",
                    "stranger-ca.crt",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=stranger-ca",
                ])?;
            }
            run(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                ca,
                "-CAkey",
                cakey,
                "-CAcreateserial",
                "-out",
                &format!("{name}.crt"),
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
            ])?;
        }
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: cronwarden\n  cluster:\n    server: https://127.0.0.1:{webhook_port}/audit\n    certificate-authority: {ca}\nusers:\n- name: kube-apiserver\n  user:\n    client-certificate: {crt}\n    client-key: {key}\ncontexts:\n- name: audit\n  context: {{cluster: cronwarden, user: kube-apiserver}}\ncurrent-context: audit\n",
            ca = dir.join("ca.crt").display(),
            crt = dir.join("client.crt").display(),
            key = dir.join("client.key").display(),
        );
        std::fs::write(dir.join("webhook.kubeconfig"), kubeconfig).map_err(|e| e.to_string())?;
        Ok(AuditSetup {
            log: d.join("audit.log"),
            webhook_port,
            dir,
        })
    }

    /// kube-apiserver's flags for the shipped policy, both backends.
    fn apiserver_flags(&self) -> Vec<String> {
        vec![
            format!(
                "--audit-policy-file={}",
                root().join("config/audit/policy.yaml").display()
            ),
            format!("--audit-log-path={}", self.log.display()),
            "--audit-log-format=json".into(),
            "--audit-log-mode=blocking".into(),
            format!(
                "--audit-webhook-config-file={}",
                self.dir.join("webhook.kubeconfig").display()
            ),
            "--audit-webhook-mode=batch".into(),
            "--audit-webhook-batch-max-wait=1s".into(),
            "--audit-webhook-initial-backoff=1s".into(),
        ]
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn have(dir: &Path, bin: &str) -> bool {
    dir.join(bin).is_file()
}

pub fn kubectl_in(kubectl: &Path, kubeconfig: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(kubectl)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .current_dir(root())
        .output()
        .map_err(|e| format!("kubectl: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "kubectl {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

async fn client_for(kubeconfig: &Path) -> Client {
    let kc = Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    Client::try_from(cfg).expect("client")
}

impl Cluster {
    /// `Err(why)` when there is no API server to test against.
    pub async fn start() -> Result<Cluster, String> {
        let dir = tempfile::Builder::new()
            .prefix("cronwarden-e2e-")
            .tempdir()
            .unwrap();
        let assets = PathBuf::from(
            std::env::var("KUBEBUILDER_ASSETS")
                .unwrap_or_else(|_| "/usr/local/kubebuilder/bin".into()),
        );
        let kubectl = if have(&assets, "kubectl") {
            assets.join("kubectl")
        } else {
            PathBuf::from("kubectl")
        };
        if let Ok(kc) = std::env::var("E2E_KUBECONFIG") {
            // A real cluster runs its own controller manager.
            let cm = ControllerManager {
                proc: None,
                missing: Ok(()),
            };
            return Cluster::installed(dir, PathBuf::from(kc), kubectl, cm, None, None).await;
        }
        for bin in ["kube-apiserver", "etcd", "kubectl"] {
            if !have(&assets, bin) {
                return Err(format!(
                    "no {bin} in {} (set KUBEBUILDER_ASSETS) and E2E_KUBECONFIG is not set",
                    assets.display()
                ));
            }
        }
        let d = dir.path();
        let etcd_port = free_port();
        let api_port = free_port();
        let mut etcd_cmd = Command::new(assets.join("etcd"));
        etcd_cmd.args([
            "--data-dir",
            d.join("etcd").to_str().unwrap(),
            "--listen-client-urls",
            &format!("http://127.0.0.1:{etcd_port}"),
            "--advertise-client-urls",
            &format!("http://127.0.0.1:{etcd_port}"),
            "--listen-peer-urls",
            "http://127.0.0.1:0",
            "--unsafe-no-fsync",
        ]);
        let etcd = Proc::spawn("etcd", etcd_cmd, d.join("etcd.log"));
        let key = d.join("sa.key");
        let ok = Command::new("openssl")
            .args(["genrsa", "-out", key.to_str().unwrap(), "2048"])
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            return Err("openssl is needed to make the service-account signing key".into());
        }
        let token = "e2e-admin-token";
        std::fs::write(
            d.join("tokens.csv"),
            format!("{token},e2e-admin,e2e-admin,\"system:masters\"\n"),
        )
        .unwrap();
        let audit = AuditSetup::create(d)?;
        let mut api_args: Vec<String> = audit.apiserver_flags();
        api_args.extend(
            [
                &format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
                &format!("--secure-port={api_port}"),
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                &format!("--cert-dir={}", d.join("certs").display()),
                &format!("--service-account-key-file={}", key.display()),
                &format!("--service-account-signing-key-file={}", key.display()),
                "--service-account-issuer=https://kubernetes.default.svc",
                &format!("--token-auth-file={}", d.join("tokens.csv").display()),
                "--authorization-mode=RBAC",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
            ]
            .map(String::from),
        );
        let api_bin = assets.join("kube-apiserver");
        let apiserver = spawn_apiserver(&api_bin, &api_args, d, 0);
        let admin = d.join("admin.kubeconfig");
        std::fs::write(&admin, kubeconfig(api_port, token)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if kubectl_in(&kubectl, &admin, &["get", "--raw", "/readyz"]).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "kube-apiserver did not become ready:\n{}",
                    apiserver.tail(20)
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let cm = ControllerManager::start(&assets, &admin, d);
        let mut c =
            Cluster::installed(dir, admin, kubectl, cm, Some(apiserver), Some(etcd)).await?;
        c.audit = Some(audit);
        c.apiserver_cmd = Some((api_bin, api_args));
        Ok(c)
    }

    /// A client for the admin kubeconfig, with the CRDs and RBAC installed.
    async fn installed(
        dir: tempfile::TempDir,
        admin_kubeconfig: PathBuf,
        kubectl: PathBuf,
        cm: ControllerManager,
        apiserver: Option<Proc>,
        etcd: Option<Proc>,
    ) -> Result<Cluster, String> {
        let client = client_for(&admin_kubeconfig).await;
        let mut c = Cluster {
            dir,
            admin_kubeconfig,
            sa_kubeconfig: PathBuf::new(),
            kubectl,
            client,
            controller_manager: cm.missing,
            audit: None,
            controller_manager_proc: cm.proc,
            apiserver: std::sync::Mutex::new(apiserver),
            apiserver_cmd: None,
            _etcd: etcd,
        };
        c.install().await?;
        Ok(c)
    }

    /// Stop kube-apiserver (SIGTERM), leave it down for `down`, start it
    /// again with the same flags and etcd; returns once it is ready. `Err`
    /// when this cluster's API server is not ours to restart.
    pub async fn restart_apiserver(&self, down: Duration) -> Result<(), String> {
        let Some((bin, args)) = &self.apiserver_cmd else {
            return Err("the API server is not run by this harness".into());
        };
        {
            let mut g = self.apiserver.lock().unwrap();
            if let Some(p) = g.as_mut() {
                p.terminate();
            }
            *g = None;
        }
        tokio::time::sleep(down).await;
        let p = spawn_apiserver(bin, args, self.dir.path(), 1);
        *self.apiserver.lock().unwrap() = Some(p);
        let deadline = Instant::now() + Duration::from_secs(90);
        while self.kubectl(&["get", "--raw", "/readyz"]).is_err() {
            if Instant::now() > deadline {
                return Err("kube-apiserver did not come back".into());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok(())
    }

    /// A second kube-apiserver on the same etcd under another key prefix:
    /// a cluster where nothing is installed (no CRDs, no RBAC for the
    /// controller; the admin token works). Without the audit flags, so the
    /// audit scenarios see only the main server. Returns it with an admin
    /// kubeconfig once it is ready; `Err` when this harness does not run
    /// the API server (E2E_KUBECONFIG).
    pub async fn bare_apiserver(&self) -> Result<(Proc, PathBuf), String> {
        let Some((bin, args)) = &self.apiserver_cmd else {
            return Err("the API server is not run by this harness".into());
        };
        let d = self.dir.path().join("bare");
        std::fs::create_dir_all(&d).unwrap();
        let port = free_port();
        let mut bare: Vec<String> = args
            .iter()
            .filter(|a| {
                !a.starts_with("--audit-")
                    && !a.starts_with("--secure-port=")
                    && !a.starts_with("--cert-dir=")
            })
            .cloned()
            .collect();
        bare.extend([
            format!("--secure-port={port}"),
            format!("--cert-dir={}", d.join("certs").display()),
            "--etcd-prefix=/cronwarden-e2e-bare".into(),
        ]);
        let p = spawn_apiserver(bin, &bare, &d, 0);
        let kc = d.join("admin.kubeconfig");
        std::fs::write(&kc, kubeconfig(port, "e2e-admin-token")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(90);
        while kubectl_in(&self.kubectl, &kc, &["get", "--raw", "/readyz"]).is_err() {
            if Instant::now() > deadline {
                return Err(format!(
                    "the bare kube-apiserver did not become ready:\n{}",
                    p.tail(20)
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok((p, kc))
    }

    pub fn kubectl(&self, args: &[&str]) -> Result<String, String> {
        kubectl_in(&self.kubectl, &self.admin_kubeconfig, args)
    }

    /// The last lines of the kube-controller-manager's log, when it runs here.
    pub fn controller_manager_tail(&self, lines: usize) -> Option<String> {
        self.controller_manager_proc.as_ref().map(|p| p.tail(lines))
    }

    /// CRDs, the project's RBAC and admission policy, and a kubeconfig with
    /// the ServiceAccount's token.
    async fn install(&mut self) -> Result<(), String> {
        self.kubectl(&[
            "apply",
            "--server-side",
            "-f",
            "crds/cronwarden.io_crds.yaml",
        ])?;
        self.kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/clustercronjobbaselines.cronwarden.io",
            "crd/cronjobbaselines.cronwarden.io",
            "crd/cronjobfindings.cronwarden.io",
        ])?;
        let _ = self.kubectl(&["create", "namespace", "cronwarden-system"]);
        self.kubectl(&["apply", "--server-side", "-k", "config/rbac"])?;
        self.kubectl(&["apply", "--server-side", "-k", "config/admission"])?;
        self.admission_enforced().await?;
        let token = self.kubectl(&[
            "create",
            "token",
            "cronwarden",
            "-n",
            "cronwarden-system",
            "--duration=6h",
        ])?;
        self.sa_kubeconfig = self.token_kubeconfig("sa", token.trim())?;
        Ok(())
    }

    /// A kubeconfig that authenticates with `token` only (a ServiceAccount's).
    pub fn token_kubeconfig(&self, name: &str, token: &str) -> Result<PathBuf, String> {
        let server = self.kubectl(&[
            "config",
            "view",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.server}",
        ])?;
        let path = self.dir.path().join(format!("{name}.kubeconfig"));
        std::fs::write(&path, kubeconfig_for(&server, token)).unwrap();
        Ok(path)
    }

    /// The API server loads a new admission policy asynchronously: wait
    /// until it refuses the admin a (dry-run) finding, so no scenario
    /// races it.
    async fn admission_enforced(&self) -> Result<(), String> {
        let path = self.dir.path().join("admission-probe.yaml");
        std::fs::write(
            &path,
            "apiVersion: cronwarden.io/v1alpha1\nkind: CronJobFinding\nmetadata: {name: admission-probe, namespace: cronwarden-system}\nspec:\n  subject: {apiVersion: batch/v1, kind: CronJob, namespace: cronwarden-system, name: admission-probe}\n",
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.kubectl(&["create", "--dry-run=server", "-f", path.to_str().unwrap()]) {
                Err(e) if e.contains("cronwarden-findings") => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    return Err(format!("admission policy probe failed: {e}"));
                }
                Ok(_) if Instant::now() > deadline => {
                    return Err(
                        "the cronwarden-findings admission policy is not enforced after 30s".into(),
                    );
                }
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    /// Start `cronwarden run` as the ServiceAccount.
    /// `/metrics` is plain HTTP without authentication (`--metrics-insecure`)
    /// on `metrics_port`; `/healthz`, `/readyz` are on `probe_port`.
    pub fn controller(
        &self,
        name: &str,
        metrics_port: u16,
        probe_port: u16,
        extra: &[&str],
    ) -> Proc {
        // E2E_CONTROLLER_WRAPPER runs the scale benchmark's controller under
        // a profiler, e.g. `heaptrack` with a `--features sysalloc` build.
        let mut cmd = match std::env::var("E2E_CONTROLLER_WRAPPER") {
            Ok(w) if name == "bench-scale" => {
                let mut c = Command::new(w);
                c.arg(env!("CARGO_BIN_EXE_cronwarden"));
                c
            }
            _ => Command::new(env!("CARGO_BIN_EXE_cronwarden")),
        };
        cmd.arg("run")
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .args(["--probe-addr", &format!("127.0.0.1:{probe_port}")])
            .arg("--metrics-insecure")
            .args([
                "--resync",
                "2s",
                "--lease-duration",
                "4s",
                "--retention",
                "15s",
                "--sar-qps",
                "500",
            ])
            .args(extra)
            .env("KUBECONFIG", &self.sa_kubeconfig)
            .env("POD_NAMESPACE", "cronwarden-system")
            .env("POD_NAME", name)
            .env(
                "RUST_LOG",
                "info,kube_client=error,cronwarden::controller::publish=debug",
            );
        Proc::spawn(name, cmd, self.dir.path().join(format!("{name}.log")))
    }
}

/// The kube-controller-manager, or why there is none.
struct ControllerManager {
    proc: Option<Proc>,
    missing: Result<(), String>,
}

impl ControllerManager {
    /// Only the controllers the scenarios rely on. Each uses its own
    /// ServiceAccount (`--use-service-account-credentials`): as the admin,
    /// the namespace controller's deletes would be refused by the
    /// admission policy and namespaces would never finish terminating.
    fn start(assets: &Path, admin: &Path, d: &Path) -> ControllerManager {
        let bin = "kube-controller-manager";
        if !have(assets, bin) {
            return ControllerManager {
                proc: None,
                missing: Err(format!("no {bin} in {}", assets.display())),
            };
        }
        let mut cmd = Command::new(assets.join(bin));
        cmd.args([
            &format!("--kubeconfig={}", admin.display()),
            "--controllers=clusterrole-aggregation-controller,namespace-controller,garbage-collector-controller,cronjob-controller,job-controller,serviceaccount-controller",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            "--use-service-account-credentials=true",
        ]);
        ControllerManager {
            proc: Some(Proc::spawn(bin, cmd, d.join(format!("{bin}.log")))),
            missing: Ok(()),
        }
    }
}

fn kubeconfig(port: u16, token: &str) -> String {
    kubeconfig_for(&format!("https://127.0.0.1:{port}"), token)
}

fn kubeconfig_for(server: &str, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: true\nusers:\n- name: e2e\n  user:\n    token: {token}\ncontexts:\n- name: e2e\n  context: {{cluster: e2e, user: e2e}}\ncurrent-context: e2e\n"
    )
}

pub fn free_metrics_port() -> u16 {
    free_port()
}

/// GET a path from a local HTTP endpoint (the controller's metrics or probe port).
pub async fn http_get(port: u16, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200")
        .then(|| body.to_owned())
        .or_else(|| head.starts_with("HTTP/1.1 200").then(|| body.to_owned()))
}

/// Sum of a metric's samples whose label text contains `filter`.
pub fn metric(text: &str, name: &str, filter: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.starts_with(name)
                && (l[name.len()..].starts_with('{') || l[name.len()..].starts_with(' '))
        })
        .filter(|l| l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}
