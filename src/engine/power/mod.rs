//! What a service account may do (SPEC 3.7), as an input of the engine:
//! the controller asks the cluster's authorizer (SubjectAccessReview,
//! `controller::access`), `scan` evaluates the RBAC objects of its input
//! (`offline`, an approximation). The engine only reads the answers.

pub mod offline;

use std::fmt;

/// One dangerous permission, as the SubjectAccessReview asks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Check {
    pub verb: &'static str,
    pub group: &'static str,
    pub resource: &'static str,
    pub subresource: &'static str,
    /// The resource is cluster-scoped: only a cluster-wide answer exists.
    pub cluster_scoped: bool,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.verb == "*" {
            return f.write_str("* on *");
        }
        write!(f, "{} {}", self.verb, self.resource)?;
        if !self.subresource.is_empty() {
            write!(f, "/{}", self.subresource)?;
        }
        Ok(())
    }
}

const fn c(
    verb: &'static str,
    group: &'static str,
    resource: &'static str,
    subresource: &'static str,
    cluster_scoped: bool,
) -> Check {
    Check {
        verb,
        group,
        resource,
        subresource,
        cluster_scoped,
    }
}

const RBAC: &str = "rbac.authorization.k8s.io";

/// The permissions SPEC 3.7 names, the first one (`*` on `*`) asked first:
/// granted cluster-wide, it says everything.
pub const CHECKS: &[Check] = &[
    c("*", "*", "*", "", false),
    c("create", "", "pods", "", false),
    c("create", "", "pods", "exec", false),
    c("create", "", "pods", "attach", false),
    c("get", "", "secrets", "", false),
    c("list", "", "secrets", "", false),
    c("create", RBAC, "roles", "", false),
    c("patch", RBAC, "roles", "", false),
    c("create", RBAC, "rolebindings", "", false),
    c("patch", RBAC, "rolebindings", "", false),
    c("create", RBAC, "clusterroles", "", true),
    c("patch", RBAC, "clusterroles", "", true),
    c("create", RBAC, "clusterrolebindings", "", true),
    c("patch", RBAC, "clusterrolebindings", "", true),
    c("escalate", RBAC, "roles", "", false),
    c("escalate", RBAC, "clusterroles", "", true),
    c("bind", RBAC, "roles", "", false),
    c("bind", RBAC, "clusterroles", "", true),
    c("impersonate", "", "users", "", true),
    c("impersonate", "", "groups", "", true),
    c("impersonate", "", "serviceaccounts", "", false),
    c("create", "batch", "cronjobs", "", false),
    c("patch", "batch", "cronjobs", "", false),
    c("create", "batch", "jobs", "", false),
    c("patch", "batch", "jobs", "", false),
    c("create", "apps", "daemonsets", "", false),
    c("patch", "apps", "daemonsets", "", false),
    c("create", "apps", "deployments", "", false),
    c("patch", "apps", "deployments", "", false),
    c("get", "", "nodes", "proxy", true),
    c("create", "", "nodes", "proxy", true),
];

/// What one service account may do of [`CHECKS`], and where.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Power {
    /// Allowed in every namespace (or on a cluster-scoped resource).
    pub cluster: Vec<Check>,
    /// Allowed in the service account's own namespace only.
    pub namespace: Vec<Check>,
}

impl Power {
    pub fn is_empty(&self) -> bool {
        self.cluster.is_empty() && self.namespace.is_empty()
    }

    /// `cluster-wide: * on *; in payments: get secrets, list secrets`.
    pub fn describe(&self, ns: &str) -> String {
        let list = |v: &[Check]| {
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut parts = Vec::new();
        if !self.cluster.is_empty() {
            parts.push(format!("cluster-wide: {}", list(&self.cluster)));
        }
        if !self.namespace.is_empty() {
            parts.push(format!("in namespace {ns}: {}", list(&self.namespace)));
        }
        parts.join("; ")
    }
}

/// The answer for one service account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Not asked yet (the controller re-evaluates once it is).
    Pending,
    Known(Power),
    /// The authorizer could not be asked: reported, not assumed harmless.
    Failed(String),
}

/// Where the engine reads answers from.
pub trait PowerSource: Send + Sync {
    fn power(&self, namespace: &str, service_account: &str) -> Answer;
    /// Shown in messages: `SubjectAccessReview` or `offline RBAC approximation`.
    fn label(&self) -> &'static str;
}
