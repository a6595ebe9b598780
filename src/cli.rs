//! Command-line definitions shared by the binary and its tests.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::api::{Rule, Severity};
use crate::engine::Settings;
use crate::engine::normalize::parse_duration;
use crate::error::SettingsError;
use crate::scan::Format;
use crate::snapshot::ImageMode;

#[derive(Parser, Debug)]
#[command(
    name = "cronwarden",
    version,
    about = "CronJobs checked against a declared, approved baseline (MITRE ATT&CK T1053.007)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the controller against the cluster (in-cluster config or kubeconfig).
    Run(Box<RunArgs>),
    /// Scan manifest files offline and report deviations.
    Scan(ScanArgs),
    /// Read Kubernetes audit log lines (plain or gzip) and evaluate every
    /// CronJob and Job written in them, naming who wrote it.
    Audit(AuditArgs),
    /// Work with baselines.
    #[command(subcommand)]
    Baseline(BaselineCommand),
    /// Print the CRD YAML.
    Crds,
}

#[derive(Subcommand, Debug)]
pub enum BaselineCommand {
    /// Write CronJobBaseline YAML approving the CronJobs given.
    Snapshot(SnapshotArgs),
}

/// Detection settings shared by `scan` and `run`.
#[derive(Args, Debug, Clone)]
pub struct EngineArgs {
    /// HighFrequencySchedule threshold where no baseline entry sets minInterval.
    #[arg(long, env = "CRONWARDEN_MIN_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub min_interval: Duration,
    /// Registry allowed for images (glob, repeatable); none = UnapprovedRegistry off.
    #[arg(
        long = "allowed-registry",
        env = "CRONWARDEN_ALLOWED_REGISTRIES",
        value_delimiter = ','
    )]
    pub allowed_registries: Vec<String>,
    /// Heuristic rule to switch off (repeatable).
    #[arg(long = "disable-rule", env = "CRONWARDEN_DISABLED_RULES", value_delimiter = ',', value_parser = parse_rule)]
    pub disabled_rules: Vec<Rule>,
    /// Global severity override, RULE=SEVERITY (repeatable).
    #[arg(long = "severity", env = "CRONWARDEN_SEVERITY_OVERRIDES", value_delimiter = ',', value_parser = parse_override)]
    pub severity_overrides: Vec<(Rule, Severity)>,
}

impl EngineArgs {
    pub fn settings(&self) -> Settings {
        Settings {
            min_interval: self.min_interval,
            disabled_rules: self.disabled_rules.iter().copied().collect(),
            registry_allowlist: self.allowed_registries.clone(),
            severity_overrides: self
                .severity_overrides
                .iter()
                .copied()
                .collect::<BTreeMap<_, _>>(),
        }
    }
}

fn parse_rule(s: &str) -> Result<Rule, String> {
    s.trim().parse()
}

fn parse_severity(s: &str) -> Result<Severity, String> {
    s.trim().parse()
}

fn parse_override(s: &str) -> Result<(Rule, Severity), String> {
    let (r, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected RULE=SEVERITY, got {s:?}"))?;
    Ok((parse_rule(r)?, parse_severity(v)?))
}

/// What `scan` and `audit` share: the output, the exit code, the engine.
#[derive(Args, Debug)]
pub struct ReportArgs {
    #[arg(long, short, value_enum, default_value = "table")]
    pub output: Format,
    /// Exit 1 when a finding is at or above this severity.
    #[arg(long, default_value = "high", value_parser = parse_severity)]
    pub fail_on: Severity,
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Args, Debug)]
pub struct ScanArgs {
    /// Files or folders (recursive *.yaml, *.yml, *.json); `-` reads stdin.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Take baselines, Namespaces and RBAC objects from these files or
    /// folders only (repeatable). For CI: the scanned paths are the change
    /// under review, and a baseline inside them must not approve itself;
    /// those found there are ignored and counted in the summary.
    #[arg(long = "baselines")]
    pub baselines: Vec<PathBuf>,
    #[command(flatten)]
    pub report: ReportArgs,
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// Audit log files (JSON lines of audit.k8s.io/v1 Event or EventList; gzip is detected); `-` reads stdin.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Baseline manifests (files or folders) to evaluate against; none = the heuristics only.
    #[arg(long = "baselines")]
    pub baselines: Vec<PathBuf>,
    #[command(flatten)]
    pub report: ReportArgs,
}

#[derive(Args, Debug)]
pub struct SnapshotArgs {
    /// Manifest files or folders; `-` reads stdin.
    #[arg(required_unless_present = "from_cluster")]
    pub paths: Vec<PathBuf>,
    /// Read the CronJobs from the cluster (kubeconfig or in-cluster) instead of files.
    #[arg(long)]
    pub from_cluster: bool,
    /// With --from-cluster: namespaces to read (repeatable); none = all.
    #[arg(long = "namespace", short = 'n', requires = "from_cluster")]
    pub namespaces: Vec<String>,
    /// With --from-cluster: label selector over CronJobs.
    #[arg(long, short = 'l', requires = "from_cluster")]
    pub selector: Option<String>,
    /// Name of the generated baselines (one per namespace).
    #[arg(long, default_value = "snapshot")]
    pub name: String,
    /// Approve images exactly as found, or their repository at any tag.
    #[arg(long, value_enum, default_value = "exact")]
    pub images: ImageMode,
    /// Pin each entry's security-relevant template hash.
    #[arg(long)]
    pub pin_template: bool,
    /// Mark entries required, so a deleted CronJob is reported.
    #[arg(long)]
    pub required: bool,
    /// Approve the field managers that own the spec now (from managedFields).
    #[arg(long)]
    pub managers: bool,
    /// Emit ClusterCronJobBaselines (the platform tier), one per namespace
    /// selecting it by name, instead of CronJobBaselines.
    #[arg(long)]
    pub cluster: bool,
}

/// `cronwarden run`: the controller. Every setting is a flag, an environment
/// variable, or a key of the optional `--config` file (flags and environment
/// win over the file).
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub engine: EngineArgs,
    /// YAML settings file (for a ConfigMap mount); see config/manager/config.yaml.
    #[arg(long, env = "CRONWARDEN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Namespaces to watch (repeatable); none = all.
    #[arg(
        long = "namespace",
        env = "CRONWARDEN_NAMESPACES",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,
    /// Namespaces never evaluated (repeatable).
    #[arg(
        long = "exclude-namespace",
        env = "CRONWARDEN_EXCLUDED_NAMESPACES",
        value_delimiter = ','
    )]
    pub excluded_namespaces: Vec<String>,
    /// How long resolved findings are kept before deletion.
    #[arg(long, env = "CRONWARDEN_RETENTION", default_value = "7d", value_parser = parse_duration)]
    pub retention: Duration,
    /// Allow baselines with `enforcement: Suspend` to suspend CronJobs.
    #[arg(long, env = "CRONWARDEN_ALLOW_ENFORCEMENT")]
    pub allow_enforcement: bool,
    /// Address of /metrics: HTTPS, for callers the API server authenticates (TokenReview) and allows to get /metrics (SubjectAccessReview).
    #[arg(long, env = "CRONWARDEN_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: std::net::SocketAddr,
    /// PEM certificate chain of /metrics (default: a self-signed one made at start-up).
    #[arg(long, env = "CRONWARDEN_METRICS_CERT", requires = "metrics_key")]
    pub metrics_cert: Option<PathBuf>,
    /// PEM private key of --metrics-cert.
    #[arg(long, env = "CRONWARDEN_METRICS_KEY", requires = "metrics_cert")]
    pub metrics_key: Option<PathBuf>,
    /// Serve /metrics over plain HTTP to anyone, without authentication (local runs).
    #[arg(long, env = "CRONWARDEN_METRICS_INSECURE", conflicts_with_all = ["metrics_cert", "metrics_key"])]
    pub metrics_insecure: bool,
    /// Address of /healthz and /readyz (plain HTTP).
    #[arg(long, env = "CRONWARDEN_PROBE_ADDR", default_value = "0.0.0.0:8081")]
    pub probe_addr: std::net::SocketAddr,
    #[arg(
        long,
        env = "CRONWARDEN_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: crate::telemetry::LogFormat,
    /// Hold a coordination.k8s.io Lease so only one replica writes.
    #[arg(long, env = "CRONWARDEN_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    #[arg(
        long,
        env = "CRONWARDEN_LEASE_NAME",
        default_value = "cronwarden-leader"
    )]
    pub lease_name: String,
    /// Namespace of the Lease (default: the Pod's namespace, else cronwarden-system).
    #[arg(long, env = "POD_NAMESPACE")]
    pub pod_namespace: Option<String>,
    /// Holder identity (default: the Pod name, else the host name and PID).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// How long a Lease lasts without renewal; the holder renews at half of it and stops writing at three quarters (its renew deadline), before another replica may take it.
    #[arg(long, env = "CRONWARDEN_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    /// API writes in flight at once.
    #[arg(long, env = "CRONWARDEN_WRITE_CONCURRENCY", default_value_t = 8)]
    pub write_concurrency: usize,
    /// Full re-evaluation period (retention, acknowledgement expiry, safety net).
    #[arg(long, env = "CRONWARDEN_RESYNC", default_value = "60s", value_parser = parse_duration)]
    pub resync: Duration,
    /// Watch Jobs too: lineage (ManualJobRun, ForgedJobLineage) and the heuristics on Jobs no CronJob covers.
    #[arg(long, env = "CRONWARDEN_WATCH_JOBS", default_value_t = true, action = clap::ArgAction::Set)]
    pub watch_jobs: bool,
    /// Ask the cluster (SubjectAccessReview) what each pod's service account may do: PowerfulServiceAccount.
    #[arg(long, env = "CRONWARDEN_CHECK_SERVICE_ACCOUNTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub check_service_accounts: bool,
    /// How long an answer about a service account is kept (RBAC changes drop it sooner).
    #[arg(long, env = "CRONWARDEN_POWER_TTL", default_value = "10m", value_parser = parse_duration)]
    pub power_ttl: Duration,
    /// SubjectAccessReviews per second at most.
    #[arg(long, env = "CRONWARDEN_SAR_QPS", default_value_t = 20.0)]
    pub sar_qps: f64,
    /// Longest backoff before a key (namespace) whose writes failed is retried.
    #[arg(long, env = "CRONWARDEN_RETRY_MAX", default_value = "60s", value_parser = parse_duration)]
    pub retry_max: Duration,
    /// Suspensions per minute at most, cluster-wide (enforcement's rate cap).
    #[arg(long, env = "CRONWARDEN_ENFORCEMENT_RATE", default_value_t = 10)]
    pub enforcement_rate: u32,
    /// /healthz fails when a watch has been failing, or the reconcile loop has not come round, for this long.
    #[arg(long, env = "CRONWARDEN_HEALTH_STALL", default_value = "3m", value_parser = parse_duration)]
    pub health_stall: Duration,
    #[command(flatten)]
    pub audit: AuditSourceArgs,
    /// Check the settings (flags, environment, --config file), the TLS
    /// material, the API server's reachability, the CRDs and RBAC as the
    /// controller would at start-up, print one line per problem, and exit
    /// 0 (ready to run) or 2, without starting anything.
    #[arg(long)]
    pub check_config: bool,
}

/// Where the controller reads audit events from (SPEC 7); none = no actor.
#[derive(Args, Debug, Clone, Default)]
pub struct AuditSourceArgs {
    /// Follow this JSON-lines audit log (kube-apiserver's log backend) from its end, across rotation.
    #[arg(long = "audit-log", env = "CRONWARDEN_AUDIT_LOG")]
    pub log: Option<PathBuf>,
    /// Serve kube-apiserver's audit webhook (batch mode) over HTTPS here.
    #[arg(long = "audit-webhook-addr", env = "CRONWARDEN_AUDIT_WEBHOOK_ADDR", requires_all = ["webhook_cert", "webhook_key"])]
    pub webhook_addr: Option<std::net::SocketAddr>,
    /// PEM certificate chain of the webhook's server certificate.
    #[arg(long = "audit-webhook-cert", env = "CRONWARDEN_AUDIT_WEBHOOK_CERT")]
    pub webhook_cert: Option<PathBuf>,
    /// PEM private key of the webhook's server certificate.
    #[arg(long = "audit-webhook-key", env = "CRONWARDEN_AUDIT_WEBHOOK_KEY")]
    pub webhook_key: Option<PathBuf>,
    /// PEM CA bundle: callers must present a client certificate it signed (mTLS).
    #[arg(
        long = "audit-webhook-client-ca",
        env = "CRONWARDEN_AUDIT_WEBHOOK_CLIENT_CA"
    )]
    pub webhook_client_ca: Option<PathBuf>,
    /// File holding the bearer token callers must send (compared in constant time).
    #[arg(
        long = "audit-webhook-token-file",
        env = "CRONWARDEN_AUDIT_WEBHOOK_TOKEN_FILE"
    )]
    pub webhook_token_file: Option<PathBuf>,
    /// Largest request body accepted (413 above), e.g. 8Mi.
    #[arg(long = "audit-webhook-max-body", env = "CRONWARDEN_AUDIT_WEBHOOK_MAX_BODY", default_value = "8Mi", value_parser = parse_size)]
    pub webhook_max_body: usize,
    /// Audited writes kept per CronJob for attribution.
    #[arg(
        long = "audit-writes-per-object",
        env = "CRONWARDEN_AUDIT_WRITES_PER_OBJECT",
        default_value_t = 4
    )]
    pub writes_per_object: usize,
    /// How long an audited write is kept for attribution.
    #[arg(long = "audit-window", env = "CRONWARDEN_AUDIT_WINDOW", default_value = "1h", value_parser = parse_duration)]
    pub window: Duration,
}

impl AuditSourceArgs {
    pub fn enabled(&self) -> bool {
        self.log.is_some() || self.webhook_addr.is_some()
    }
}

/// `8Mi`, `512Ki`, `1M`, `1048576`: a byte size as Kubernetes quantities spell it.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: usize = n.parse().map_err(|_| format!("not a size: {s:?}"))?;
    let mul: usize = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "k" | "K" => 1000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {s:?} (Ki, Mi, Gi, k, M, G)"
            ));
        }
    };
    n.checked_mul(mul)
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("size out of range: {s:?}"))
}

/// Keys of the `--config` file. Each is optional.
#[derive(serde::Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigFile {
    pub namespaces: Option<Vec<String>>,
    pub excluded_namespaces: Option<Vec<String>>,
    pub min_interval: Option<String>,
    pub allowed_registries: Option<Vec<String>>,
    pub disabled_rules: Option<Vec<String>>,
    pub severity_overrides: Option<BTreeMap<String, String>>,
    pub retention: Option<String>,
    pub allow_enforcement: Option<bool>,
    pub log_format: Option<crate::telemetry::LogFormat>,
    pub write_concurrency: Option<usize>,
}

impl RunArgs {
    /// Merge the config file under what flags and environment set; `m` are
    /// the matches of the `run` subcommand, to tell defaults from choices.
    pub fn resolve(mut self, m: &clap::ArgMatches) -> Result<RunArgs, SettingsError> {
        use clap::parser::ValueSource;
        let explicit = |id: &str| {
            matches!(
                m.value_source(id),
                Some(ValueSource::CommandLine) | Some(ValueSource::EnvVariable)
            )
        };
        if let Some(path) = &self.config {
            let file = |why: String| SettingsError::ConfigFile {
                path: path.clone(),
                why,
            };
            let text = std::fs::read_to_string(path).map_err(|e| file(e.to_string()))?;
            let f: ConfigFile = serde_saphyr::from_str(&text).map_err(|e| file(e.to_string()))?;
            let p = |field: &'static str, why: String| SettingsError::ConfigField {
                path: path.clone(),
                field,
                why,
            };
            if let (Some(v), false) = (f.namespaces, explicit("namespaces")) {
                self.namespaces = v;
            }
            if let (Some(v), false) = (f.excluded_namespaces, explicit("excluded_namespaces")) {
                self.excluded_namespaces = v;
            }
            if let (Some(v), false) = (f.min_interval, explicit("min_interval")) {
                self.engine.min_interval = parse_duration(&v).map_err(|e| p("minInterval", e))?;
            }
            if let (Some(v), false) = (f.allowed_registries, explicit("allowed_registries")) {
                self.engine.allowed_registries = v;
            }
            if let (Some(v), false) = (f.disabled_rules, explicit("disabled_rules")) {
                self.engine.disabled_rules = v
                    .iter()
                    .map(|r| parse_rule(r))
                    .collect::<Result<_, _>>()
                    .map_err(|e| p("disabledRules", e))?;
            }
            if let (Some(v), false) = (f.severity_overrides, explicit("severity_overrides")) {
                self.engine.severity_overrides = v
                    .iter()
                    .map(|(r, s)| Ok((parse_rule(r)?, parse_severity(s)?)))
                    .collect::<Result<_, String>>()
                    .map_err(|e| p("severityOverrides", e))?;
            }
            if let (Some(v), false) = (f.retention, explicit("retention")) {
                self.retention = parse_duration(&v).map_err(|e| p("retention", e))?;
            }
            if let (Some(v), false) = (f.allow_enforcement, explicit("allow_enforcement")) {
                self.allow_enforcement = v;
            }
            if let (Some(v), false) = (f.log_format, explicit("log_format")) {
                self.log_format = v;
            }
            if let (Some(v), false) = (f.write_concurrency, explicit("write_concurrency")) {
                self.write_concurrency = v.max(1);
            }
        }
        self.write_concurrency = self.write_concurrency.max(1);
        Ok(self)
    }

    pub fn lease_namespace(&self) -> String {
        self.pod_namespace
            .clone()
            .unwrap_or_else(|| "cronwarden-system".into())
    }

    pub fn watches(&self, namespace: &str) -> bool {
        !self.excluded_namespaces.iter().any(|n| n == namespace)
            && (self.namespaces.is_empty() || self.namespaces.iter().any(|n| n == namespace))
    }
}
