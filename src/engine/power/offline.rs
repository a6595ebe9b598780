//! `scan`'s approximation of PowerfulServiceAccount (SPEC 3.7): the RBAC
//! objects of the input (Roles, ClusterRoles, RoleBindings,
//! ClusterRoleBindings) evaluated the way the RBAC authorizer matches
//! rules. Labelled as such in every message: it knows only what the input
//! holds, plus the built-in roles `cluster-admin`, `admin`, `edit` and
//! `view` (their dangerous rules, as the API server bootstraps them), and
//! it reads aggregation from `matchLabels` only. No webhook authorizer, no
//! ServiceAccount-level automount setting.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject,
};

use super::{Answer, CHECKS, Check, Power, PowerSource};

#[derive(Clone, Debug, Default)]
pub struct OfflineRbac {
    pub roles: Vec<Role>,
    pub cluster_roles: Vec<ClusterRole>,
    pub role_bindings: Vec<RoleBinding>,
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let v = |x: &[&str]| Some(x.iter().map(|s| (*s).to_owned()).collect());
    PolicyRule {
        api_groups: v(groups),
        resources: v(resources),
        verbs: verbs.iter().map(|s| (*s).to_owned()).collect(),
        ..PolicyRule::default()
    }
}

/// The dangerous part of the built-in roles.
fn builtin(name: &str) -> Option<Vec<PolicyRule>> {
    let write = ["create", "patch", "update", "delete"];
    let workloads = || {
        vec![
            rule(&[""], &["pods", "pods/exec", "pods/attach"], &write),
            rule(&[""], &["secrets"], &["get", "list", "watch"]),
            rule(&[""], &["serviceaccounts"], &["impersonate"]),
            rule(&["batch"], &["cronjobs", "jobs"], &write),
            rule(&["apps"], &["daemonsets", "deployments"], &write),
        ]
    };
    match name {
        "cluster-admin" => Some(vec![rule(&["*"], &["*"], &["*"])]),
        "admin" => {
            let mut r = workloads();
            r.push(rule(
                &["rbac.authorization.k8s.io"],
                &["roles", "rolebindings"],
                &write,
            ));
            Some(r)
        }
        "edit" => Some(workloads()),
        "view" => Some(Vec::new()),
        _ => None,
    }
}

fn has(list: &[String], want: &str) -> bool {
    list.iter().any(|x| x == "*" || x == want)
}

/// Whether a rule allows a check, as the RBAC authorizer matches: `*`
/// requested needs `*` granted; `pods/exec` is matched by `pods/exec`,
/// `*/exec` or `*`; a rule limited to resourceNames never allows a
/// request that names no object.
fn allows(r: &PolicyRule, c: &Check) -> bool {
    if r.resource_names.as_ref().is_some_and(|n| !n.is_empty()) {
        return false;
    }
    let exact = |list: &[String], want: &str| {
        if want == "*" {
            list.iter().any(|x| x == "*")
        } else {
            has(list, want)
        }
    };
    let groups = r.api_groups.clone().unwrap_or_default();
    let resources = r.resources.clone().unwrap_or_default();
    let resource_ok = if c.resource == "*" {
        resources.iter().any(|x| x == "*")
    } else if c.subresource.is_empty() {
        has(&resources, c.resource)
    } else {
        let full = format!("{}/{}", c.resource, c.subresource);
        resources.iter().any(|x| {
            x == "*"
                || *x == full
                || *x == format!("*/{}", c.subresource)
                || *x == format!("{}/*", c.resource)
        })
    };
    exact(&r.verbs, c.verb) && exact(&groups, c.group) && resource_ok
}

fn is_subject(s: &Subject, ns: &str, sa: &str) -> bool {
    match s.kind.as_str() {
        "ServiceAccount" => s.name == sa && s.namespace.as_deref().unwrap_or(ns) == ns,
        "Group" => {
            s.name == "system:serviceaccounts"
                || s.name == format!("system:serviceaccounts:{ns}")
                || s.name == "system:authenticated"
        }
        "User" => s.name == format!("system:serviceaccount:{ns}:{sa}"),
        _ => false,
    }
}

fn selected(labels: &BTreeMap<String, String>, want: &BTreeMap<String, String>) -> bool {
    !want.is_empty() && want.iter().all(|(k, v)| labels.get(k) == Some(v))
}

impl OfflineRbac {
    /// Roles, ClusterRoles and both kinds of binding held.
    pub fn len(&self) -> usize {
        self.roles.len()
            + self.cluster_roles.len()
            + self.role_bindings.len()
            + self.cluster_role_bindings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.roles.is_empty()
            && self.cluster_roles.is_empty()
            && self.role_bindings.is_empty()
            && self.cluster_role_bindings.is_empty()
    }

    fn cluster_role_rules(&self, name: &str) -> Vec<PolicyRule> {
        let Some(cr) = self
            .cluster_roles
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(name))
        else {
            return builtin(name).unwrap_or_default();
        };
        let mut rules = cr.rules.clone().unwrap_or_default();
        if let Some(agg) = &cr.aggregation_rule {
            for sel in agg.cluster_role_selectors.iter().flatten() {
                let want = sel.match_labels.clone().unwrap_or_default();
                for other in &self.cluster_roles {
                    let labels = other.metadata.labels.clone().unwrap_or_default();
                    if other.metadata.name.as_deref() != Some(name) && selected(&labels, &want) {
                        rules.extend(other.rules.clone().unwrap_or_default());
                    }
                }
            }
        }
        rules
    }

    fn role_rules(&self, ns: &str, kind: &str, name: &str) -> Vec<PolicyRule> {
        match kind {
            "ClusterRole" => self.cluster_role_rules(name),
            _ => self
                .roles
                .iter()
                .find(|r| {
                    r.metadata.name.as_deref() == Some(name)
                        && r.metadata.namespace.as_deref() == Some(ns)
                })
                .and_then(|r| r.rules.clone())
                .unwrap_or_default(),
        }
    }

    pub fn evaluate(&self, ns: &str, sa: &str) -> Power {
        let cluster_rules: Vec<PolicyRule> = self
            .cluster_role_bindings
            .iter()
            .filter(|b| b.subjects.iter().flatten().any(|s| is_subject(s, ns, sa)))
            .flat_map(|b| self.cluster_role_rules(&b.role_ref.name))
            .collect();
        let ns_rules: Vec<PolicyRule> = self
            .role_bindings
            .iter()
            .filter(|b| b.metadata.namespace.as_deref() == Some(ns))
            .filter(|b| b.subjects.iter().flatten().any(|s| is_subject(s, ns, sa)))
            .flat_map(|b| self.role_rules(ns, &b.role_ref.kind, &b.role_ref.name))
            .collect();
        let mut p = Power::default();
        for c in CHECKS {
            if cluster_rules.iter().any(|r| allows(r, c)) {
                p.cluster.push(*c);
                if c.verb == "*" {
                    break;
                }
            } else if !c.cluster_scoped && ns_rules.iter().any(|r| allows(r, c)) {
                p.namespace.push(*c);
            }
        }
        p
    }
}

impl PowerSource for OfflineRbac {
    fn power(&self, namespace: &str, service_account: &str) -> Answer {
        Answer::Known(self.evaluate(namespace, service_account))
    }

    fn label(&self) -> &'static str {
        "offline RBAC approximation from the scanned manifests"
    }
}
