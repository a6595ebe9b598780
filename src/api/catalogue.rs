//! The rule catalogue (SPEC 3): every detection rule declared once, in one
//! table. The `Rule` enum, its string form and parsing, the CRD schemas of
//! `waive` and `severityOverrides`, SARIF rule metadata, metric labels and
//! the README's rule table are all derived from the rows below, so a new
//! rule is one row here plus its evaluation function in `engine::rules`.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Severity;

/// Where a rule runs and what it compares against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleKind {
    /// Compares a CronJob with the entry of a governing tier (SPEC 3.1).
    Baseline,
    /// Dangerous whatever the baseline says; runs everywhere (SPEC 3.2).
    Heuristic,
    /// Whether a Job really came from its CronJob (SPEC 3.6).
    Lineage,
}

impl RuleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Baseline => "baseline",
            RuleKind::Heuristic => "heuristic",
            RuleKind::Lineage => "lineage",
        }
    }
}

/// One row of the catalogue.
#[derive(Debug, PartialEq, Eq)]
pub struct RuleInfo {
    /// Stable API: Event reason, violation `rule`, metric label.
    pub id: &'static str,
    pub severity: Severity,
    pub kind: RuleKind,
    /// One line, for SARIF `shortDescription` and tables.
    pub title: &'static str,
    /// When it fires.
    pub description: &'static str,
    /// MITRE ATT&CK tactic the deviation serves.
    pub tactic: &'static str,
    /// Whether a namespace-tier baseline may waive or lower it (SPEC 2.2);
    /// even then only while its effective severity is medium or lower.
    pub namespace_may_relax: bool,
}

macro_rules! catalogue {
    ($(
        $id:ident: $sev:ident, $kind:ident, relax $relax:literal, $tactic:literal,
            $title:literal, $desc:literal;
    )*) => {
        /// Detection rule IDs, in catalogue order.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
        pub enum Rule { $($id),* }

        impl Rule {
            pub const ALL: &'static [Rule] = &[$(Rule::$id),*];

            /// The catalogue row of this rule.
            pub fn info(self) -> &'static RuleInfo {
                match self {
                    $(Rule::$id => &RuleInfo {
                        id: stringify!($id),
                        severity: Severity::$sev,
                        kind: RuleKind::$kind,
                        title: $title,
                        description: $desc,
                        tactic: $tactic,
                        namespace_may_relax: $relax,
                    },)*
                }
            }
        }
    };
}

catalogue! {
    NotInBaseline: High, Baseline, relax false, "persistence",
        "CronJob not in the baseline",
        "the CronJob matches no approved entry of a tier that governs its namespace";
    ScheduleNotApproved: Medium, Baseline, relax false, "execution",
        "Schedule not approved",
        "schedule or timeZone not among the entry's, or more frequent than its minInterval";
    ImageNotApproved: High, Baseline, relax false, "execution",
        "Image not approved",
        "a container or initContainer image matches none of the entry's patterns, or lacks a digest under requireDigest";
    ServiceAccountNotApproved: High, Baseline, relax false, "privilege-escalation",
        "Service account not approved",
        "serviceAccountName (default `default`) not among the entry's";
    CommandNotApproved: High, Baseline, relax false, "execution",
        "Command not approved",
        "a container's command/args differ from the entry's (omitted = must be unset)";
    TemplateDrift: Medium, Baseline, relax false, "persistence",
        "Pod template drifted",
        "the security-relevant pod template hash differs from the entry's templateHash";
    DeployPathNotApproved: Medium, Baseline, relax false, "defense-evasion",
        "Deployment path not approved",
        "a field manager owning spec fields is not among the entry's managers";
    ApprovedCronJobMissing: Medium, Baseline, relax false, "defense-evasion",
        "Approved CronJob missing",
        "a `required` name entry has no live CronJob";
    HighFrequencySchedule: Medium, Heuristic, relax true, "execution",
        "Schedule fires very often",
        "the smallest gap between consecutive firings is under the threshold (5m, or the entry's minInterval)";
    PrivilegedJobTemplate: High, Heuristic, relax true, "privilege-escalation",
        "Privileged job template",
        "in any container or initContainer: privileged, allowPrivilegeEscalation, an added capability outside the Pod Security Standards baseline list (`ALL` included), seccomp/AppArmor `Unconfined`, procMount `Unmasked`; the node's PID/IPC/network namespace";
    HostPathMount: High, Heuristic, relax true, "privilege-escalation",
        "hostPath volume",
        "any hostPath volume; critical (path normalised) for `/`, container runtime sockets and their folders above and below, `*.sock`, and anything under `/var/lib/kubelet`, `/etc`, `/root`, `/home`, `/proc`, `/sys`, `/dev`, `/boot`, `/var/lib/etcd`";
    SuspiciousCommand: Critical, Heuristic, relax true, "execution",
        "Suspicious command",
        "categories: download-and-execute, encoded payload, reverse shell, cryptominer, credential theft (token, kubeconfig, cloud metadata or Secrets sent anywhere but the API server), cluster takeover (binding cluster-admin, nsenter into PID 1, chroot into a host mount); surfaces: command+args after `$(VAR)` expansion, env values, postStart/preStop exec hooks, exec probes, in containers and initContainers; shell scripts parsed (brush-parser), interpreter inline code read";
    MutableImageReference: Low, Heuristic, relax true, "persistence",
        "Mutable image reference",
        "an image with no tag and no digest, or tagged exactly `latest`";
    UnapprovedRegistry: High, Heuristic, relax true, "execution",
        "Registry outside the allowlist",
        "an image registry outside the global allowlist (only when one is set)";
    SensitiveNamespace: Medium, Heuristic, relax false, "privilege-escalation",
        "CronJob in a system namespace",
        "a CronJob in kube-system, kube-public or kube-node-lease not matched by a baseline entry";
    HistoryErasure: Low, Heuristic, relax true, "defense-evasion",
        "Job history erased",
        "successfulJobsHistoryLimit and failedJobsHistoryLimit both 0, or ttlSecondsAfterFinished under 60s";
    ManualJobRun: Low, Lineage, relax false, "execution",
        "Job run by hand from a CronJob",
        "a Job marked `cronjob.kubernetes.io/instantiate: manual` (what `kubectl create job --from=cronjob/…` writes): the CronJob's template run off its schedule";
    ForgedJobLineage: High, Lineage, relax false, "defense-evasion",
        "Job with a forged CronJob lineage",
        "a Job whose controller ownerReference names a CronJob that does not exist or has another uid, or whose pod template matches neither that CronJob's current template nor one it had while watched";
    PowerfulServiceAccount: High, Heuristic, relax false, "privilege-escalation",
        "Powerful service account",
        "the pod's service account, with a token mounted, may (by the cluster's own authorizer, SubjectAccessReview; offline, the input's RBAC objects) do `*` on `*`, create pods, pods/exec or pods/attach, get/list secrets, create/patch roles, rolebindings, clusterroles or clusterrolebindings, escalate/bind/impersonate, create/patch cronjobs, jobs, daemonsets or deployments, or reach nodes/proxy";
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        self.info().id
    }

    pub fn kind(self) -> RuleKind {
        self.info().kind
    }

    pub fn default_severity(self) -> Severity {
        self.info().severity
    }

    /// Heuristics run in every watched namespace and can be waived or
    /// disabled; baseline rules only where a baseline governs.
    pub fn is_heuristic(self) -> bool {
        self.kind() == RuleKind::Heuristic
    }

    /// The rules a baseline entry may name in `waive`.
    pub fn waivable() -> impl Iterator<Item = Rule> {
        Rule::ALL.iter().copied().filter(|r| r.is_heuristic())
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
            .iter()
            .copied()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown rule {s:?}"))
    }
}

/// The README's rule table, generated (a test keeps the README in step).
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| rule | kind | default | MITRE tactic | a team may relax | fires when |\n|---|---|---|---|---|---|\n",
    );
    for r in Rule::ALL {
        let i = r.info();
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            i.id,
            i.kind.as_str(),
            i.severity,
            i.tactic,
            if i.namespace_may_relax {
                "up to medium"
            } else {
                "no"
            },
            i.description
        ));
    }
    out
}

/// Schema of `waive`: a list of the waivable rule IDs, taken from the
/// catalogue, so the API server rejects any other name at apply time.
pub fn waive_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let ids: Vec<&str> = Rule::waivable().map(Rule::as_str).collect();
    schemars::json_schema!({
        "type": "array",
        "maxItems": ids.len(),
        "items": {"type": "string", "enum": ids},
    })
}

/// Schema of `severityOverrides`: one optional severity per rule ID, so an
/// unknown key is rejected by field validation at apply time.
pub fn severity_overrides_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let severity = g.subschema_for::<Severity>().to_value();
    let properties: serde_json::Map<String, serde_json::Value> = Rule::ALL
        .iter()
        .map(|r| (r.as_str().to_owned(), severity.clone()))
        .collect();
    schemars::json_schema!({
        "type": "object",
        "properties": properties,
    })
}
