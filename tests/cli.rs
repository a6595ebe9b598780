//! The `cronwarden` binary as a user runs it: exit codes, golden outputs,
//! the malformed-input corpus, CRDs in sync, snapshot round trip.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use cronwarden::api::{CronJobFinding, Rule};
use cronwarden::engine::{Engine, Settings};
use cronwarden::scan::{Format, render, scan_paths};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cronwarden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cronwarden"))
        .args(args)
        .current_dir(root())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn fixed_now() -> Time {
    Time("2026-11-22T08:00:00Z".parse().unwrap())
}

/// Compare with a golden file; `UPDATE_GOLDEN=1` rewrites it.
fn golden(name: &str, actual: &str) {
    let path = root().join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing golden file {}", path.display()));
    assert_eq!(
        actual,
        want,
        "output differs from {} (UPDATE_GOLDEN=1 to accept)",
        path.display()
    );
}

#[test]
fn crds_in_repo_match_the_types() {
    let committed = std::fs::read_to_string(root().join("crds/cronwarden.io_crds.yaml")).unwrap();
    assert_eq!(
        committed,
        cronwarden::crd::crds_yaml(),
        "crds/ is stale: run `make crds`"
    );
    let out = cronwarden(&["crds"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), committed);
}

#[test]
fn golden_outputs_for_the_samples() {
    let engine = Engine::new(Settings::default()).unwrap();
    let result = scan_paths(&engine, &[root().join("config/samples")], &[]);
    assert!(result.errors.is_empty(), "{:?}", result.errors);
    for (format, file) in [
        (Format::Table, "samples.table.txt"),
        (Format::Json, "samples.json"),
        (Format::Yaml, "samples.yaml"),
        (Format::Sarif, "samples.sarif.json"),
    ] {
        let text = render(&result, format, &fixed_now());
        // Paths in SARIF are as given: make them relative to the repo.
        let text = text.replace(&format!("{}/", root().display()), "");
        golden(file, &text);
    }
}

#[test]
fn yaml_output_parses_back_into_findings() {
    let engine = Engine::new(Settings::default()).unwrap();
    let result = scan_paths(&engine, &[root().join("config/samples")], &[]);
    let text = render(&result, Format::Yaml, &fixed_now());
    let docs: Vec<CronJobFinding> = serde_saphyr::from_multiple(&text).unwrap();
    assert_eq!(docs.len(), result.evaluation.findings.len());
    assert!(docs.len() >= 8);
    let f = docs
        .iter()
        .find(|f| f.metadata.name.as_deref() == Some("invoice-export"))
        .unwrap();
    let status = f.status.as_ref().unwrap();
    assert_eq!(status.rules, "NotInBaseline");
    assert_eq!(
        f.metadata.labels.as_ref().unwrap()["cronwarden.io/severity"],
        "high"
    );
    assert_eq!(status.mitre.as_ref().unwrap().technique, "T1053.007");
    let json: serde_json::Value =
        serde_json::from_str(&render(&result, Format::Json, &fixed_now())).unwrap();
    assert_eq!(json["items"].as_array().unwrap().len(), docs.len());
    assert_eq!(json["items"][0]["apiVersion"], "cronwarden.io/v1alpha1");
    assert_eq!(json["items"][0]["kind"], "CronJobFinding");
}

#[test]
fn sarif_is_2_1_0_with_every_rule() {
    let out = cronwarden(&["scan", "config/samples", "-o", "sarif"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["version"], "2.1.0");
    assert_eq!(
        v["runs"][0]["tool"]["driver"]["rules"]
            .as_array()
            .unwrap()
            .len(),
        Rule::ALL.len()
    );
    let results = v["runs"][0]["results"].as_array().unwrap();
    assert!(
        results
            .iter()
            .any(|r| r["ruleId"] == "SuspiciousCommand" && r["level"] == "error")
    );
    assert!(results.iter().all(|r| {
        r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
            .as_str()
            .unwrap()
            .starts_with("config/samples/")
    }));
}

#[test]
fn exit_codes_follow_fail_on() {
    assert_eq!(
        cronwarden(&["scan", "config/samples"]).status.code(),
        Some(1)
    );
    assert_eq!(
        cronwarden(&["scan", "config/samples", "--fail-on", "critical"])
            .status
            .code(),
        Some(1)
    );
    let clean = cronwarden(&[
        "scan",
        "config/samples/00-namespaces.yaml",
        "config/samples/10-baseline-payments.yaml",
    ]);
    // Only the missing ledger-sync (medium) remains: under the default `high`.
    assert_eq!(
        clean.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&clean.stdout)
    );
    let medium = cronwarden(&[
        "scan",
        "config/samples/10-baseline-payments.yaml",
        "--fail-on",
        "medium",
    ]);
    assert_eq!(medium.status.code(), Some(1));
    assert_eq!(
        cronwarden(&["scan", "does/not/exist.yaml"]).status.code(),
        Some(2)
    );
}

#[test]
fn stdin_is_read_with_a_dash() {
    let text = std::fs::read(root().join("config/samples/30-cronjobs-heuristics.yaml")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cronwarden"))
        .args(["scan", "-", "-o", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&text).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["items"].as_array().unwrap().len(), 3);
}

#[test]
fn every_malformed_document_exits_2_and_is_named() {
    let dir = root().join("tests/malformed");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 12);
    for f in files {
        let rel = f.strip_prefix(root()).unwrap().to_str().unwrap().to_owned();
        let out = cronwarden(&["scan", &rel]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{rel}: {stderr}");
        assert!(!stderr.contains("panicked"), "{rel}: {stderr}");
        assert!(stderr.contains(&rel), "{rel} not named in: {stderr}");
    }
}

#[test]
fn malformed_messages_name_document_and_field() {
    let err = |f: &str| {
        String::from_utf8(cronwarden(&["scan", &format!("tests/malformed/{f}")]).stderr).unwrap()
    };
    assert!(
        err("05-second-document.yaml")
            .contains("(document 2): CronJob x/<unnamed>: field metadata.name: is required")
    );
    assert!(
        err("04-wrong-type.yaml").contains("field spec.jobTemplate.spec.template.spec.containers")
    );
    assert!(err("09-list-item.yaml").contains("(document 1, items[0])"));
    assert!(err("06-invalid-baseline.yaml").contains("field spec.approved[1]"));
    assert!(err("01-syntax.yaml").contains("line 4"));
}

#[test]
fn bad_input_keeps_the_findings_of_good_input() {
    let out = cronwarden(&[
        "scan",
        "config/samples/30-cronjobs-heuristics.yaml",
        "tests/malformed/02-no-schedule.yaml",
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["items"].as_array().unwrap().len(), 3);
}

fn temp_file(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

#[test]
fn snapshot_round_trip_has_no_baseline_findings() {
    let dir = tempfile::tempdir().unwrap();
    for extra in [&[][..], &["--pin-template", "--images", "repository"][..]] {
        let mut args = vec!["baseline", "snapshot", "config/samples"];
        args.extend_from_slice(extra);
        let out = cronwarden(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let snap = temp_file(
            dir.path(),
            "snap.yaml",
            &String::from_utf8(out.stdout).unwrap(),
        );
        // Scan the CronJobs against the snapshot alone (no other baselines).
        let cronjobs: Vec<&str> = vec![
            "config/samples/00-namespaces.yaml",
            "config/samples/20-cronjobs-payments.yaml",
            "config/samples/21-cronjobs-reports.yaml",
            "config/samples/30-cronjobs-heuristics.yaml",
        ];
        let mut scan_args = vec!["scan", "-o", "json"];
        scan_args.extend(cronjobs);
        scan_args.push(&snap);
        let out = cronwarden(&scan_args);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for item in v["items"].as_array().unwrap() {
            for viol in item["status"]["violations"].as_array().unwrap() {
                let rule = viol["rule"].as_str().unwrap();
                let r: cronwarden::api::Rule = rule.parse().unwrap();
                assert!(
                    r.is_heuristic(),
                    "{extra:?}: baseline rule {rule} on {}",
                    item["metadata"]["name"]
                );
            }
        }
    }
}

#[test]
fn snapshot_pins_the_hash_that_a_served_object_has() {
    let out = cronwarden(&[
        "baseline",
        "snapshot",
        "--pin-template",
        "tests/fixtures/cronjob-manifest.yaml",
    ]);
    let snap = String::from_utf8(out.stdout).unwrap();
    assert!(snap.contains("templateHash: sha256:"));
    let dir = tempfile::tempdir().unwrap();
    let path = temp_file(dir.path(), "snap.yaml", &snap);
    // The served fixture has the patched schedule; only that may differ.
    let out = cronwarden(&[
        "scan",
        "-o",
        "json",
        "tests/fixtures/cronjob-as-served.yaml",
        &path,
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rules: Vec<_> = v["items"][0]["status"]["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["rule"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(rules, vec!["ScheduleNotApproved"]);
}

/// `scan -o openreports`: one openreports.io/v1alpha1 Report per namespace
/// with findings, one result per violation, in the reports-api shape.
#[test]
fn openreports_output_is_one_report_per_namespace() {
    let out = cronwarden(&["scan", "config/samples", "-o", "openreports"]);
    assert_eq!(out.status.code(), Some(1), "findings in the samples");
    let text = String::from_utf8(out.stdout).unwrap();
    let engine = Engine::new(Settings::default()).unwrap();
    let result = scan_paths(&engine, &[root().join("config/samples")], &[]);
    let mut namespaces: Vec<&str> = result
        .evaluation
        .findings
        .iter()
        .map(|f| f.namespace.as_str())
        .collect();
    namespaces.dedup();
    let violations: usize = result
        .evaluation
        .findings
        .iter()
        .map(|f| f.violations.len())
        .sum();
    let docs: Vec<serde_json::Value> = text
        .split("---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_saphyr::from_str(d).expect("each document is valid YAML"))
        .collect();
    assert_eq!(docs.len(), namespaces.len());
    let mut results = 0;
    for (doc, ns) in docs.iter().zip(&namespaces) {
        assert_eq!(doc["apiVersion"], "openreports.io/v1alpha1");
        assert_eq!(doc["kind"], "Report");
        assert_eq!(doc["metadata"]["namespace"], *ns);
        let rs = doc["results"].as_array().unwrap();
        assert!(!rs.is_empty());
        let (mut fail, mut warn) = (0, 0);
        for r in rs {
            assert_eq!(r["policy"], "cronwarden");
            let rule: cronwarden::api::Rule = r["rule"].as_str().unwrap().parse().unwrap();
            let sev: cronwarden::api::Severity = r["severity"].as_str().unwrap().parse().unwrap();
            match r["result"].as_str().unwrap() {
                "fail" => {
                    fail += 1;
                    assert!(sev >= cronwarden::api::Severity::High, "{rule}")
                }
                "warn" => {
                    warn += 1;
                    assert!(sev < cronwarden::api::Severity::High, "{rule}")
                }
                other => panic!("unexpected result {other}"),
            }
            assert_eq!(r["resources"][0]["kind"], "CronJob");
            assert_eq!(r["resources"][0]["namespace"], *ns);
            assert!(r["properties"]["field"].is_string());
            assert!(r["timestamp"]["seconds"].is_i64());
        }
        assert_eq!(doc["summary"]["fail"], fail);
        assert_eq!(doc["summary"]["warn"], warn);
        results += rs.len();
    }
    assert_eq!(results, violations);
}

/// `scan --baselines` (SPEC 8): in CI the scanned folder is the change
/// under review. A ClusterCronJobBaseline added to it that approves
/// everything must not turn exit 1 into exit 0, nor may a Namespace in it
/// relabel a namespace out of the platform's selector.
#[test]
fn a_baseline_in_the_scanned_change_cannot_approve_it() {
    let dir = tempfile::tempdir().unwrap();
    let platform = temp_file(
        dir.path(),
        "platform.yaml",
        r#"apiVersion: cronwarden.io/v1alpha1
kind: ClusterCronJobBaseline
metadata: {name: platform}
spec:
  namespaceSelector: {matchLabels: {tier: prod}}
  approved:
    - namePattern: "*"
      images: ["registry.corp.example/*"]
      requireDigest: true
---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {tier: prod}}
"#,
    );
    let change = dir.path().join("change");
    std::fs::create_dir(&change).unwrap();
    temp_file(
        &change,
        "cronjob.yaml",
        r#"apiVersion: batch/v1
kind: CronJob
metadata: {name: sync, namespace: shop}
spec:
  schedule: "0 2 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: main, image: "ghcr.io/evil/tool:1"}]
"#,
    );
    let change_path = change.to_str().unwrap().to_owned();
    // Without the trojan baseline: the platform's guardrail fires.
    let out = cronwarden(&["scan", &change_path, "--baselines", &platform]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    temp_file(
        &change,
        "approve-everything.yaml",
        r#"apiVersion: cronwarden.io/v1alpha1
kind: ClusterCronJobBaseline
metadata: {name: aa-approve}
spec:
  approved:
    - namePattern: "*"
      namespaces: [shop]
      waive: [HostPathMount, PrivilegedJobTemplate, SuspiciousCommand]
---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {tier: dev}}
"#,
    );
    // Scanned as one folder, the change approves itself (and relabels
    // the namespace out of the platform's selector): the trap.
    let out = cronwarden(&["scan", &platform, &change_path]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // With --baselines, both are ignored and counted; exit 1 stays.
    let out = cronwarden(&["scan", &change_path, "--baselines", &platform]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("ImageNotApproved"), "{stdout}");
    assert!(
        stdout.contains("scanned 1 CronJob and 1 baseline:"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "ignored in the scanned input (--baselines gives them): 1 baseline, 1 Namespace, 0 RBAC objects"
        ),
        "{stdout}"
    );
    // A CronJob in a --baselines path is not scanned, and said so.
    let out = cronwarden(&["scan", &platform, "--baselines", &change_path]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("not scanned: 1 CronJob or Job in the --baselines paths"),
        "{stdout}"
    );
    // Repeatable; bad input in a --baselines path is still bad input.
    let broken = temp_file(dir.path(), "broken.yaml", "kind: [\n");
    let out = cronwarden(&[
        "scan",
        &change_path,
        "--baselines",
        &platform,
        "--baselines",
        &broken,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("broken.yaml"));
}

/// `baseline snapshot --cluster` (SPEC 8): every entry names the namespace
/// its CronJob was seen in, so the approval of `sync` in one namespace can
/// never be borrowed by a CronJob named `sync` in another.
#[test]
fn a_cluster_snapshot_scopes_each_entry_to_its_namespace() {
    let out = cronwarden(&["baseline", "snapshot", "--cluster", "config/samples"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut entries = 0;
    for doc in cronwarden::manifest::split_documents(&text) {
        let b: cronwarden::api::ClusterCronJobBaseline = serde_saphyr::from_str(doc.1).unwrap();
        let ns = b
            .metadata
            .name
            .as_deref()
            .unwrap()
            .strip_prefix("snapshot-")
            .unwrap()
            .to_owned();
        for e in &b.spec.approved {
            assert_eq!(e.namespaces, vec![ns.clone()], "{e:?}");
            entries += 1;
        }
    }
    assert!(entries > 3, "{text}");
    // Merged into one baseline governing every namespace, the entries of
    // `payments` do not approve a namesake in a tenant namespace.
    let dir = tempfile::tempdir().unwrap();
    let snap = temp_file(
        dir.path(),
        "snap.yaml",
        &text.replace("namespaceSelector:", "x-unused:"),
    );
    let tenant = temp_file(
        dir.path(),
        "tenant.yaml",
        &std::fs::read_to_string(root().join("config/samples/20-cronjobs-payments.yaml"))
            .unwrap()
            .replace("namespace: payments", "namespace: tenant"),
    );
    let out = cronwarden(&["scan", "-o", "json", &tenant, "--baselines", &snap]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = v["items"].as_array().unwrap();
    assert!(!items.is_empty());
    for item in items {
        let rules: Vec<&str> = item["status"]["violations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["rule"].as_str().unwrap())
            .collect();
        assert!(rules.contains(&"NotInBaseline"), "{item}");
    }
}

/// The settings `config/` ships are settings the binary accepts (SPEC 9):
/// the Deployment's args, and the ConfigMap's `config.yaml` at the path
/// they name, parsed and resolved exactly as `cronwarden run` does.
#[test]
fn the_shipped_settings_are_accepted_by_the_binary() {
    use clap::{CommandFactory, FromArgMatches};
    use cronwarden::cli::{Cli, Command as Sub};
    let read = |p: &str| std::fs::read_to_string(root().join(p)).unwrap();
    let configmap: serde_json::Value =
        serde_saphyr::from_str(&read("config/manager/config.yaml")).unwrap();
    let data = configmap["data"]["config.yaml"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = temp_file(dir.path(), "config.yaml", data);
    let manager = read("config/manager/manager.yaml");
    let deployment: serde_json::Value = cronwarden::manifest::split_documents(&manager)
        .into_iter()
        .map(|(_, d)| serde_saphyr::from_str::<serde_json::Value>(d).unwrap())
        .find(|d| d["kind"] == "Deployment")
        .expect("config/manager/manager.yaml holds the Deployment");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let mut argv = vec!["cronwarden".to_owned()];
    for a in container["args"].as_array().unwrap() {
        let a = a.as_str().unwrap();
        argv.push(if a == "/etc/cronwarden/config.yaml" {
            config.clone()
        } else {
            a.to_owned()
        });
    }
    // The ConfigMap is mounted where the args say.
    let mounts = container["volumeMounts"].to_string();
    assert!(mounts.contains("/etc/cronwarden"), "{mounts}");
    let matches = Cli::command()
        .try_get_matches_from(&argv)
        .expect("the Deployment's args parse");
    let cli = Cli::from_arg_matches(&matches).unwrap();
    let Sub::Run(args) = cli.command else {
        panic!("the Deployment runs `cronwarden run`")
    };
    let sub = matches.subcommand_matches("run").unwrap();
    if let Err(e) = args.resolve(sub) {
        panic!("config/manager/config.yaml is rejected by the binary: {e}");
    }
}

/// `cronwarden run --check-config` (issue 29): one line per problem and
/// exit 2, without starting anything; the shipped settings file passes the
/// settings part.
#[test]
fn check_config_names_each_problem_on_its_own_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cronwarden"))
        .args([
            "run",
            "--check-config",
            "--allowed-registry",
            "[",
            "--metrics-cert",
            "/nonexistent/tls.crt",
            "--metrics-key",
            "/nonexistent/tls.key",
        ])
        .env("KUBECONFIG", dir.path().join("no-such-kubeconfig"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .current_dir(root())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(lines[0].starts_with("error: settings:"), "{stderr}");
    assert!(
        lines[1].starts_with("error: metrics TLS: --metrics-cert:"),
        "{stderr}"
    );
    assert!(
        lines[2].starts_with("error: no Kubernetes client configuration"),
        "{stderr}"
    );
    // A settings file the binary rejects is the first (and only) line.
    let bad = temp_file(dir.path(), "bad.yaml", "trustedNamespaces: [x]\n");
    let out = Command::new(env!("CARGO_BIN_EXE_cronwarden"))
        .args(["run", "--check-config", "--config", &bad])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field"));
}
