//! PowerfulServiceAccount (SPEC 3.7) against the cluster's own authorizer:
//! cluster-admin and a secrets reader are powerful, a plain account and one
//! whose token is not mounted are not, and removing the binding clears it.

use super::NS_POWER;
use crate::harness::Cluster;
use crate::harness::metric;
use crate::support::{Ctl, cronjob_yaml, ensure};

pub(super) async fn service_account_power_from_the_authorizer(
    c: &Cluster,
    ctl: &Ctl,
) -> Result<(), String> {
    let ns = NS_POWER;
    c.namespace(ns)?;
    c.apply(&format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: root, namespace: {ns}}}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: reader, namespace: {ns}}}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: plain, namespace: {ns}}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: e2e-power-root}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}}\nsubjects: [{{kind: ServiceAccount, name: root, namespace: {ns}}}]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: secret-reader, namespace: {ns}}}\nrules: [{{apiGroups: [\"\"], resources: [secrets], verbs: [get, list]}}]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: secret-reader, namespace: {ns}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: secret-reader}}\nsubjects: [{{kind: ServiceAccount, name: reader, namespace: {ns}}}]\n"
    ))?;
    let image = "registry.example.com/app:1.0.0";
    let sa = |name: &str| format!("          serviceAccountName: {name}\n");
    c.apply(&cronjob_yaml(
        ns,
        "as-root",
        "0 2 * * *",
        image,
        &sa("root"),
    ))?;
    c.apply(&cronjob_yaml(
        ns,
        "as-reader",
        "0 2 * * *",
        image,
        &sa("reader"),
    ))?;
    c.apply(&cronjob_yaml(
        ns,
        "as-plain",
        "0 2 * * *",
        image,
        &sa("plain"),
    ))?;
    c.apply(&cronjob_yaml(
        ns,
        "root-no-token",
        "0 2 * * *",
        image,
        &format!(
            "{}          automountServiceAccountToken: false\n",
            sa("root")
        ),
    ))?;
    let f = c
        .open_finding(ns, "as-root", &["PowerfulServiceAccount"])
        .await?;
    let msg = &f.status.unwrap().violations[0].message;
    ensure(
        msg.contains("cluster-wide: * on *") && msg.contains("SubjectAccessReview"),
        format!("as-root: {msg}"),
    )?;
    let f = c
        .open_finding(ns, "as-reader", &["PowerfulServiceAccount"])
        .await?;
    let msg = &f.status.unwrap().violations[0].message;
    ensure(
        msg.contains(&format!("in namespace {ns}: get secrets, list secrets"))
            && !msg.contains("cluster-wide"),
        format!("as-reader: {msg}"),
    )?;
    // Give the plain account and the unmounted token their rounds.
    ctl.settle(3).await?;
    for name in ["as-plain", "root-no-token"] {
        ensure(
            c.finding(ns, name).await.is_none(),
            format!("{name} has a finding"),
        )?;
    }
    // Taking the right away clears it.
    c.kubectl(&["delete", "rolebinding", "secret-reader", "-n", ns])?;
    c.resolved_finding(ns, "as-reader", "Resolved").await?;
    // Reviews are per service account, not per CronJob.
    let m = ctl.metrics().await;
    let reviews = metric(&m, "cronwarden_service_account_reviews_total", "");
    let sars = metric(&m, "cronwarden_subject_access_reviews_total", "");
    println!(
        "e2e     power: {reviews} service-account reviews, {sars} SubjectAccessReviews so far"
    );
    // as-root stays open: the restart scenario checks it is held, not
    // resolved and re-opened, while the new process asks again.
    Ok(())
}
