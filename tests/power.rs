//! PowerfulServiceAccount (SPEC 3.7) offline: `scan` evaluates the RBAC
//! objects of its input the way the RBAC authorizer matches rules.

mod common;

use common::*;
use cronwarden::api::Rule;
use cronwarden::engine::power::offline::OfflineRbac;
use cronwarden::engine::power::{Answer, PowerSource};
use serde_json::{Value, json};

fn with_sa(ns: &str, name: &str, sa: &str) -> Value {
    with(
        cronjob(ns, name),
        &format!("{POD}/serviceAccountName"),
        json!(sa),
    )
}

fn role(ns: &str, name: &str, rules: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": name, "namespace": ns}, "rules": rules})
}

fn cluster_role(name: &str, labels: Value, rules: Value, aggregate: Option<Value>) -> Value {
    let mut v = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": name, "labels": labels}, "rules": rules});
    if let Some(a) = aggregate {
        v["aggregationRule"] = json!({"clusterRoleSelectors": [{"matchLabels": a}]});
    }
    v
}

fn binding(ns: Option<&str>, role_kind: &str, role: &str, subject: Value) -> Value {
    match ns {
        Some(ns) => json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": format!("{role}-b"), "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
            "subjects": [subject]}),
        None => json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": format!("{role}-b")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
            "subjects": [subject]}),
    }
}

fn sa_subject(ns: &str, name: &str) -> Value {
    json!({"kind": "ServiceAccount", "name": name, "namespace": ns})
}

fn power_message(objs: &[Value], name: &str) -> Option<String> {
    let e = evaluate(objs);
    e.findings
        .iter()
        .find(|f| f.name == name)?
        .violations
        .iter()
        .find(|v| v.rule == Rule::PowerfulServiceAccount)
        .map(|v| v.message.clone())
}

#[test]
fn cluster_admin_and_a_secrets_reader_are_powerful_a_plain_account_is_not() {
    let objs = vec![
        with_sa("apps", "admin-job", "root"),
        with_sa("apps", "reader-job", "reader"),
        with_sa("apps", "plain-job", "plain"),
        binding(
            None,
            "ClusterRole",
            "cluster-admin",
            sa_subject("apps", "root"),
        ),
        role(
            "apps",
            "secret-reader",
            json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]),
        ),
        binding(
            Some("apps"),
            "Role",
            "secret-reader",
            sa_subject("apps", "reader"),
        ),
        role(
            "apps",
            "lister",
            json!([{"apiGroups": [""], "resources": ["configmaps", "pods"], "verbs": ["get", "list"]}]),
        ),
        binding(Some("apps"), "Role", "lister", sa_subject("apps", "plain")),
    ];
    let m = power_message(&objs, "admin-job").unwrap();
    assert!(m.contains("cluster-wide: * on *"), "{m}");
    assert!(m.contains("offline RBAC approximation"), "{m}");
    let m = power_message(&objs, "reader-job").unwrap();
    assert!(
        m.contains("in namespace apps: get secrets, list secrets"),
        "{m}"
    );
    assert!(power_message(&objs, "plain-job").is_none());
}

#[test]
fn no_token_mounted_no_power_and_a_projected_token_counts() {
    let mut objs = vec![binding(
        None,
        "ClusterRole",
        "cluster-admin",
        sa_subject("apps", "root"),
    )];
    objs.push(with(
        with_sa("apps", "off", "root"),
        &format!("{POD}/automountServiceAccountToken"),
        json!(false),
    ));
    let projected = with(
        with(
            with_sa("apps", "projected", "root"),
            &format!("{POD}/automountServiceAccountToken"),
            json!(false),
        ),
        &format!("{POD}/volumes"),
        json!([{"name": "t", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}]),
    );
    objs.push(projected);
    assert!(power_message(&objs, "off").is_none());
    assert!(power_message(&objs, "projected").is_some());
}

#[test]
fn rbac_matching_follows_the_authorizer() {
    let load = |v: Vec<Value>| -> OfflineRbac { load(&v).inventory.rbac };
    // Groups of every service account; subresources by `*/exec`;
    // resourceNames never allow an unnamed request; `*` verbs only from `*`.
    let r = load(vec![
        role(
            "apps",
            "exec-any",
            json!([{"apiGroups": [""], "resources": ["*/exec"], "verbs": ["create"]}]),
        ),
        binding(
            Some("apps"),
            "Role",
            "exec-any",
            json!({"kind": "Group", "name": "system:serviceaccounts:apps", "apiGroup": "rbac.authorization.k8s.io"}),
        ),
        role(
            "apps",
            "named",
            json!([{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["one"], "verbs": ["get"]}]),
        ),
        binding(Some("apps"), "Role", "named", sa_subject("apps", "x")),
        cluster_role(
            "almost",
            json!({}),
            json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list"]}]),
            None,
        ),
        binding(None, "ClusterRole", "almost", sa_subject("apps", "x")),
    ]);
    let Answer::Known(p) = r.power("apps", "x") else {
        panic!()
    };
    let d = p.describe("apps");
    assert!(d.contains("in namespace apps: create pods/exec"), "{d}");
    assert!(d.contains("cluster-wide: get secrets, list secrets"), "{d}");
    assert!(!d.contains("* on *"), "{d}");
    // Other namespaces' bindings do not reach.
    let Answer::Known(p) = r.power("other", "x") else {
        panic!()
    };
    assert!(!p.describe("other").contains("pods/exec"));
}

#[test]
fn aggregated_and_built_in_cluster_roles() {
    let objs = vec![
        with_sa("apps", "agg", "agg"),
        with_sa("apps", "edit", "editor"),
        with_sa("apps", "view", "viewer"),
        cluster_role(
            "aggregate",
            json!({}),
            json!([]),
            Some(json!({"x/agg": "true"})),
        ),
        cluster_role(
            "piece",
            json!({"x/agg": "true"}),
            json!([{"apiGroups": ["apps"], "resources": ["daemonsets"], "verbs": ["create"]}]),
            None,
        ),
        binding(None, "ClusterRole", "aggregate", sa_subject("apps", "agg")),
        binding(
            Some("apps"),
            "ClusterRole",
            "edit",
            sa_subject("apps", "editor"),
        ),
        binding(
            Some("apps"),
            "ClusterRole",
            "view",
            sa_subject("apps", "viewer"),
        ),
    ];
    assert!(
        power_message(&objs, "agg")
            .unwrap()
            .contains("cluster-wide: create daemonsets")
    );
    let m = power_message(&objs, "edit").unwrap();
    assert!(m.contains("in namespace apps: create pods"), "{m}");
    assert!(power_message(&objs, "view").is_none());
}

#[test]
fn without_rbac_in_the_input_the_rule_is_silent_and_a_team_cannot_waive_it() {
    assert!(power_message(&[with_sa("apps", "j", "root")], "j").is_none());
    let objs = vec![
        with_sa("apps", "j", "root"),
        binding(
            None,
            "ClusterRole",
            "cluster-admin",
            sa_subject("apps", "root"),
        ),
        baseline(
            "apps",
            "team",
            json!([{"name": "j", "schedules": ["0 2 * * *"], "images": ["registry.example.com/*"], "waive": ["PowerfulServiceAccount"]}]),
        ),
    ];
    let e = evaluate(&objs);
    let f = e.findings.iter().find(|f| f.name == "j").unwrap();
    assert!(
        f.rules().contains(&Rule::PowerfulServiceAccount),
        "a namespace baseline cannot waive it"
    );
}
