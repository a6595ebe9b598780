//! The `cronwarden.io/v1alpha1` API: CRD types and the stable identifiers
//! (rule IDs, condition types, reasons, label keys) that users, exporters and
//! alert routes depend on. Everything here is API: renaming is a breaking change.

pub mod baseline;
pub mod finding;

pub use baseline::*;
pub use finding::*;

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "cronwarden.io";
pub const VERSION: &str = "v1alpha1";
pub const API_VERSION: &str = "cronwarden.io/v1alpha1";

/// Field manager for every server-side apply the controller makes.
pub const FIELD_MANAGER: &str = "cronwarden";
/// `reportingController` of every Event.
pub const REPORTING_CONTROLLER: &str = "cronwarden.io/controller";

pub const LABEL_SEVERITY: &str = "cronwarden.io/severity";
pub const LABEL_STATE: &str = "cronwarden.io/state";
pub const LABEL_RULE_PREFIX: &str = "rule.cronwarden.io/";
pub const ANNOTATION_SUSPENDED_BY: &str = "cronwarden.io/suspended-by";

pub const CONDITION_ACCEPTED: &str = "Accepted";
pub const CONDITION_ACTIVE: &str = "Active";
pub const CONDITION_ACKNOWLEDGED: &str = "Acknowledged";

pub mod reasons {
    pub const ACCEPTED: &str = "Accepted";
    pub const INVALID_SCHEDULE: &str = "InvalidSchedule";
    pub const INVALID_PATTERN: &str = "InvalidPattern";
    pub const INVALID_DURATION: &str = "InvalidDuration";
    pub const INVALID_ENTRY: &str = "InvalidEntry";
    pub const NAMESPACE_SELECTOR_IGNORED: &str = "NamespaceSelectorIgnored";
    pub const VIOLATIONS_OPEN: &str = "ViolationsOpen";
    pub const RESOLVED: &str = "Resolved";
    pub const APPROVED: &str = "Approved";
    pub const CRONJOB_DELETED: &str = "CronJobDeleted";
    pub const ACKNOWLEDGED: &str = "Acknowledged";
    pub const NOT_ACKNOWLEDGED: &str = "NotAcknowledged";
    pub const ACKNOWLEDGEMENT_EXPIRED: &str = "AcknowledgementExpired";
    /// Event reasons that are not rule IDs.
    pub const FINDING_RESOLVED: &str = "FindingResolved";
    pub const CRONJOB_SUSPENDED: &str = "CronJobSuspended";
    pub const BASELINE_REJECTED: &str = "BaselineRejected";
}

/// Severity of a violation, ordered so that `max()` is the worst.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// SARIF `level` for this severity.
    pub fn sarif_level(self) -> &'static str {
        match self {
            Severity::Info | Severity::Low => "note",
            Severity::Medium => "warning",
            Severity::High | Severity::Critical => "error",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Severity::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown severity {s:?} (info, low, medium, high, critical)"))
    }
}

/// Detection rule IDs. Stable API: the Event `reason`, a violation's `rule`
/// and the `rule` metric label.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum Rule {
    // Baseline rules (SPEC 3.1)
    NotInBaseline,
    ScheduleNotApproved,
    ImageNotApproved,
    ServiceAccountNotApproved,
    CommandNotApproved,
    TemplateDrift,
    DeployPathNotApproved,
    ApprovedCronJobMissing,
    // Heuristic rules (SPEC 3.2)
    HighFrequencySchedule,
    PrivilegedJobTemplate,
    HostPathMount,
    SuspiciousCommand,
    MutableImageReference,
    UnapprovedRegistry,
    SensitiveNamespace,
    HistoryErasure,
}

impl Rule {
    pub const ALL: [Rule; 16] = [
        Rule::NotInBaseline,
        Rule::ScheduleNotApproved,
        Rule::ImageNotApproved,
        Rule::ServiceAccountNotApproved,
        Rule::CommandNotApproved,
        Rule::TemplateDrift,
        Rule::DeployPathNotApproved,
        Rule::ApprovedCronJobMissing,
        Rule::HighFrequencySchedule,
        Rule::PrivilegedJobTemplate,
        Rule::HostPathMount,
        Rule::SuspiciousCommand,
        Rule::MutableImageReference,
        Rule::UnapprovedRegistry,
        Rule::SensitiveNamespace,
        Rule::HistoryErasure,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::NotInBaseline => "NotInBaseline",
            Rule::ScheduleNotApproved => "ScheduleNotApproved",
            Rule::ImageNotApproved => "ImageNotApproved",
            Rule::ServiceAccountNotApproved => "ServiceAccountNotApproved",
            Rule::CommandNotApproved => "CommandNotApproved",
            Rule::TemplateDrift => "TemplateDrift",
            Rule::DeployPathNotApproved => "DeployPathNotApproved",
            Rule::ApprovedCronJobMissing => "ApprovedCronJobMissing",
            Rule::HighFrequencySchedule => "HighFrequencySchedule",
            Rule::PrivilegedJobTemplate => "PrivilegedJobTemplate",
            Rule::HostPathMount => "HostPathMount",
            Rule::SuspiciousCommand => "SuspiciousCommand",
            Rule::MutableImageReference => "MutableImageReference",
            Rule::UnapprovedRegistry => "UnapprovedRegistry",
            Rule::SensitiveNamespace => "SensitiveNamespace",
            Rule::HistoryErasure => "HistoryErasure",
        }
    }

    /// Heuristics run in every watched namespace and can be waived or disabled;
    /// baseline rules only where a baseline governs.
    pub fn is_heuristic(self) -> bool {
        matches!(
            self,
            Rule::HighFrequencySchedule
                | Rule::PrivilegedJobTemplate
                | Rule::HostPathMount
                | Rule::SuspiciousCommand
                | Rule::MutableImageReference
                | Rule::UnapprovedRegistry
                | Rule::SensitiveNamespace
                | Rule::HistoryErasure
        )
    }

    pub fn default_severity(self) -> Severity {
        use Severity::*;
        match self {
            Rule::NotInBaseline => High,
            Rule::ScheduleNotApproved => Medium,
            Rule::ImageNotApproved => High,
            Rule::ServiceAccountNotApproved => High,
            Rule::CommandNotApproved => High,
            Rule::TemplateDrift => Medium,
            Rule::DeployPathNotApproved => Medium,
            Rule::ApprovedCronJobMissing => Medium,
            Rule::HighFrequencySchedule => Medium,
            Rule::PrivilegedJobTemplate => High,
            Rule::HostPathMount => High,
            Rule::SuspiciousCommand => Critical,
            Rule::MutableImageReference => Low,
            Rule::UnapprovedRegistry => High,
            Rule::SensitiveNamespace => Medium,
            Rule::HistoryErasure => Low,
        }
    }

    /// One line for the rule catalogue, SARIF rule metadata and `--help`.
    pub fn description(self) -> &'static str {
        match self {
            Rule::NotInBaseline => "The CronJob matches no approved baseline entry.",
            Rule::ScheduleNotApproved => {
                "The schedule or time zone is not among the approved ones, or fires more often than the entry's minInterval."
            }
            Rule::ImageNotApproved => {
                "An image matches none of the approved patterns, or lacks a digest where requireDigest is set."
            }
            Rule::ServiceAccountNotApproved => {
                "The service account is not among the approved ones."
            }
            Rule::CommandNotApproved => {
                "A container's command or args differ from the approved ones."
            }
            Rule::TemplateDrift => {
                "The security-relevant pod template hash differs from the pinned templateHash."
            }
            Rule::DeployPathNotApproved => {
                "A field manager owning spec fields is not among the approved deployment paths."
            }
            Rule::ApprovedCronJobMissing => "A required approved CronJob does not exist.",
            Rule::HighFrequencySchedule => {
                "The schedule fires more often than the minimum interval."
            }
            Rule::PrivilegedJobTemplate => {
                "Privileged container, host namespaces, privilege escalation or dangerous added capabilities."
            }
            Rule::HostPathMount => "The job mounts a hostPath volume.",
            Rule::SuspiciousCommand => {
                "Download-and-execute, encoded payloads, reverse shells, miners or credential exfiltration."
            }
            Rule::MutableImageReference => {
                "An image has no tag and no digest, or uses the tag latest."
            }
            Rule::UnapprovedRegistry => {
                "An image comes from a registry outside the global allowlist."
            }
            Rule::SensitiveNamespace => {
                "A CronJob in a kube-* system namespace is not approved by a baseline."
            }
            Rule::HistoryErasure => {
                "Job history or TTL settings make finished Jobs and Pods vanish quickly."
            }
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Rule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Rule::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown rule {s:?}"))
    }
}
