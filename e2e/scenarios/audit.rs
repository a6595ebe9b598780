//! Who did it (SPEC 2.4, 7): the API server writes the shipped audit policy's
//! events to a log file and to the webhook; a controller reading both puts
//! the real caller on findings, whether a ServiceAccount or someone
//! impersonating, and its webhook refuses what it must.

use std::process::Command;
use std::time::Duration;

use super::NS_AUDIT;
use crate::harness::{Cluster, http_get, metric};
use crate::support::{Ctl, DEADLINE, cronjob_yaml, ensure, wait};

/// `(http code, curl's exit status)` of a POST to the webhook.
fn post(c: &Cluster, port: u16, cert: Option<&str>, body_file: &std::path::Path) -> (String, i32) {
    let dir = &c.audit.as_ref().unwrap().dir;
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "10",
    ])
    .arg("--cacert")
    .arg(dir.join("ca.crt"))
    .args(["-H", "Content-Type: application/json", "--data-binary"])
    .arg(format!("@{}", body_file.display()));
    if let Some(name) = cert {
        cmd.arg("--cert")
            .arg(dir.join(format!("{name}.crt")))
            .arg("--key")
            .arg(dir.join(format!("{name}.key")));
    }
    cmd.arg(format!("https://127.0.0.1:{port}/audit"));
    match cmd.output() {
        Ok(o) => (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            o.status.code().unwrap_or(-1),
        ),
        Err(e) => (format!("curl: {e}"), -1),
    }
}

async fn actor_of(c: &Cluster, ns: &str, name: &str) -> Option<cronwarden::api::Actor> {
    c.finding(ns, name)
        .await
        .and_then(|f| f.status)
        .and_then(|s| s.actor)
}

/// Each source alone: a controller following the log, then one serving
/// the webhook, each attributing a CronJob created with a ServiceAccount
/// token and one created by the admin impersonating alice.
pub(super) async fn actor_from_log_and_webhook(c: &Cluster, ctl: &mut Ctl) -> Result<(), String> {
    let Some(audit) = &c.audit else {
        println!("e2e   (audit: skipped, the cluster under test is not ours to configure)");
        return Ok(());
    };
    let ns = NS_AUDIT;
    c.namespace(ns)?;
    c.apply(&format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: deployer, namespace: {ns}}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: cronjob-writer, namespace: {ns}}}\nrules:\n- apiGroups: [batch]\n  resources: [cronjobs]\n  verbs: [create, get, list, update, patch]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: cronjob-writers, namespace: {ns}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: cronjob-writer}}\nsubjects:\n- {{kind: ServiceAccount, name: deployer, namespace: {ns}}}\n- {{kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}}\n"
    ))?;
    let token = c.kubectl(&["create", "token", "deployer", "-n", ns, "--duration=1h"])?;
    let token = token.trim();
    let sa_user = format!("system:serviceaccount:{ns}:deployer");
    let kc = c.token_kubeconfig("deployer", token)?;
    let manifest = |name: &str| {
        let p = c.dir.path().join(format!("{name}.yaml"));
        // Every minute: HighFrequencySchedule, so there is a finding.
        std::fs::write(
            &p,
            cronjob_yaml(ns, name, "* * * * *", "registry.example.com/x:1", ""),
        )
        .unwrap();
        p
    };
    for (source, flags) in [
        ("log", audit.log_flags()),
        ("webhook", audit.webhook_flags()),
    ] {
        ctl.proc.terminate();
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        *ctl = c.start_controller(&format!("cronwarden-audit-{source}"), &flags);
        ctl.ready().await?;
        let by_sa = format!("by-sa-{source}");
        let by_alice = format!("by-alice-{source}");
        // A ServiceAccount with its own token.
        let p = manifest(&by_sa);
        crate::harness::kubectl_in(&c.kubectl, &kc, &["create", "-f", p.to_str().unwrap()])?;
        // The admin impersonating alice.
        let p = manifest(&by_alice);
        c.kubectl(&[
            "create",
            "-f",
            p.to_str().unwrap(),
            "--as=alice",
            "--as-group=devs",
        ])?;
        let a = wait(
            &format!("the ServiceAccount as actor ({source})"),
            DEADLINE,
            || async { actor_of(c, ns, &by_sa).await.filter(|a| a.user == sa_user) },
        )
        .await?;
        ensure(
            a.verb == "create"
                && a.audit_id.is_some()
                && a.groups.iter().any(|g| g == "system:serviceaccounts"),
            format!("actor of {by_sa}: {a:?}"),
        )?;
        let a = wait(
            &format!("the impersonator as actor ({source})"),
            DEADLINE,
            || async { actor_of(c, ns, &by_alice).await },
        )
        .await?;
        ensure(
            a.user == "e2e-admin"
                && a.impersonated_user.as_deref() == Some("alice")
                && a.impersonated_groups.iter().any(|g| g == "devs"),
            format!("actor of {by_alice}: {a:?}"),
        )?;
        let printed = c.kubectl(&["get", "cjf", "-n", ns, &by_sa])?;
        ensure(
            printed.contains("ACTOR") && printed.contains(&sa_user),
            format!("printer columns:\n{printed}"),
        )?;
        // One Warning per rule, whenever the actor arrived.
        let events = c.events_about(ns, &by_sa, "HighFrequencySchedule").await;
        ensure(
            events.len() == 1,
            format!("{} HighFrequencySchedule Events for {by_sa}", events.len()),
        )?;
        // Only this source was read.
        let m = ctl.metrics().await;
        let writes = |s: &str| {
            metric(
                &m,
                "cronwarden_audit_events_received_total",
                &format!("source=\"{s}\",reason=\"write\""),
            )
        };
        let other = if source == "log" { "webhook" } else { "log" };
        ensure(
            writes(source) >= 2.0 && writes(other) == 0.0,
            format!(
                "writes received: {source} {}, {other} {}",
                writes(source),
                writes(other)
            ),
        )?;
    }

    // The webhook refuses what it must and stays up.
    let batch = c.dir.path().join("batch.json");
    std::fs::write(
        &batch,
        "{\"kind\":\"EventList\",\"apiVersion\":\"audit.k8s.io/v1\",\"items\":[]}",
    )
    .unwrap();
    let malformed = c.dir.path().join("malformed.json");
    std::fs::write(&malformed, "{\"kind\":\"EventList\",\"items\":[").unwrap();
    let huge = c.dir.path().join("huge.json");
    std::fs::write(&huge, vec![b' '; 9 << 20]).unwrap();
    let port = audit.webhook_port;
    let no_cert = post(c, port, None, &batch);
    let stranger = post(c, port, Some("stranger"), &batch);
    let bad = post(c, port, Some("client"), &malformed);
    let big = post(c, port, Some("client"), &huge);
    let good = post(c, port, Some("client"), &batch);
    ensure(
        no_cert.0 == "000"
            && stranger.0 == "000"
            && bad.0 == "400"
            && big.0 == "413"
            && good.0 == "200",
        format!(
            "no cert {no_cert:?}, unknown CA {stranger:?}, malformed {bad:?}, 9 MiB {big:?}, valid {good:?}"
        ),
    )?;
    ensure(
        http_get(ctl.port, "/healthz").await.is_some(),
        "/healthz after the refusals",
    )?;
    let m = ctl.metrics().await;
    let refused = metric(
        &m,
        "cronwarden_audit_events_rejected_total",
        "source=\"webhook\"",
    );
    ensure(
        refused >= 4.0,
        format!("{refused} webhook rejections counted, want 4"),
    )?;
    // Still attributing.
    let p = manifest("after-refusals");
    c.kubectl(&["create", "-f", p.to_str().unwrap(), "--as=alice"])?;
    wait(
        "an actor after the refusals",
        Duration::from_secs(30),
        || async {
            actor_of(c, ns, "after-refusals")
                .await
                .filter(|a| a.impersonated_user.as_deref() == Some("alice"))
        },
    )
    .await?;
    Ok(())
}
