//! The `cronwarden.io/v1alpha1` API: CRD types and the stable identifiers
//! (rule IDs, condition types, reasons, label keys) that users, exporters and
//! alert routes depend on. Everything here is API: renaming is a breaking change.

pub mod baseline;
pub mod catalogue;
pub mod finding;

pub use baseline::*;
pub use catalogue::{Rule, RuleInfo, RuleKind};
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
pub const CONDITION_RESTRICTED: &str = "Restricted";

pub mod reasons {
    pub const ACCEPTED: &str = "Accepted";
    pub const INVALID_SCHEDULE: &str = "InvalidSchedule";
    pub const INVALID_PATTERN: &str = "InvalidPattern";
    pub const INVALID_DURATION: &str = "InvalidDuration";
    pub const INVALID_ENTRY: &str = "InvalidEntry";
    /// Restricted=True: a namespace baseline relaxes what it may not.
    pub const RELAXATION_IGNORED: &str = "RelaxationIgnored";
    pub const NOT_RESTRICTED: &str = "NotRestricted";
    pub const VIOLATIONS_OPEN: &str = "ViolationsOpen";
    pub const RESOLVED: &str = "Resolved";
    pub const APPROVED: &str = "Approved";
    pub const CRONJOB_DELETED: &str = "CronJobDeleted";
    pub const JOB_DELETED: &str = "JobDeleted";
    pub const ACKNOWLEDGED: &str = "Acknowledged";
    pub const NOT_ACKNOWLEDGED: &str = "NotAcknowledged";
    pub const ACKNOWLEDGEMENT_EXPIRED: &str = "AcknowledgementExpired";
    /// Event reasons that are not rule IDs.
    pub const FINDING_RESOLVED: &str = "FindingResolved";
    pub const CRONJOB_SUSPENDED: &str = "CronJobSuspended";
    pub const BASELINE_REJECTED: &str = "BaselineRejected";
    pub const BASELINE_RESTRICTED: &str = "BaselineRestricted";
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
