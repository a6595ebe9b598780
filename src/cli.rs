//! Command-line definitions shared by the binary and its tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::api::{Rule, Severity};
use crate::engine::Settings;
use crate::engine::normalize::parse_duration;
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
    /// Scan manifest files offline and report deviations.
    Scan(ScanArgs),
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
    /// Namespace whose baselines may use namespaceSelector (repeatable).
    #[arg(
        long = "trusted-namespace",
        env = "CRONWARDEN_TRUSTED_NAMESPACES",
        value_delimiter = ',',
        default_value = "cronwarden-system"
    )]
    pub trusted_namespaces: Vec<String>,
    /// Global severity override, RULE=SEVERITY (repeatable).
    #[arg(long = "severity", env = "CRONWARDEN_SEVERITY_OVERRIDES", value_delimiter = ',', value_parser = parse_override)]
    pub severity_overrides: Vec<(Rule, Severity)>,
}

impl EngineArgs {
    pub fn settings(&self) -> Settings {
        Settings {
            trusted_namespaces: self
                .trusted_namespaces
                .iter()
                .cloned()
                .collect::<BTreeSet<_>>(),
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

#[derive(Args, Debug)]
pub struct ScanArgs {
    /// Files or folders (recursive *.yaml, *.yml, *.json); `-` reads stdin.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    #[arg(long, short, value_enum, default_value = "table")]
    pub output: Format,
    /// Exit 1 when a finding is at or above this severity.
    #[arg(long, default_value = "high", value_parser = parse_severity)]
    pub fail_on: Severity,
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Args, Debug)]
pub struct SnapshotArgs {
    /// Manifest files or folders; `-` reads stdin.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
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
}
