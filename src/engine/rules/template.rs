//! Template heuristics (SPEC 3.2): pod templates that are dangerous
//! whatever the baseline says (privileges, host paths, image references,
//! system namespaces, erased history).

use super::Ctx;
use crate::api::Severity;
use crate::engine::POD_PATH;
use crate::engine::normalize::is_mutable;
use crate::engine::verdict::Finder;

pub const SENSITIVE_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// Container runtime sockets and their folders (SPEC 3.2): mounting one,
/// a folder above one, or anything below one gives the job the node.
pub const RUNTIME_SOCKETS: [&str; 13] = [
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/run/containerd",
    "/var/run/containerd",
    "/run/k3s/containerd",
    "/var/run/crio",
    "/run/crio",
    "/var/run/cri-dockerd.sock",
    "/run/cri-dockerd.sock",
    "/run/podman",
    "/var/run/podman",
    "/var/lib/docker",
    "/var/lib/containerd",
];
/// Critical when mounted, or anything below them.
const CRITICAL_SUBTREES: [&str; 10] = [
    "/var/lib/kubelet",
    "/etc",
    "/root",
    "/home",
    "/proc",
    "/sys",
    "/dev",
    "/boot",
    "/var/lib/etcd",
    "/etc/kubernetes",
];

/// The Pod Security Standards *baseline* capabilities: adding anything
/// else (or `ALL`) is a privileged template (SPEC 3.2).
pub const BASELINE_CAPABILITIES: [&str; 13] = [
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
];

/// Lexically normalise a host path: collapse `//`, `.` and `..`, drop the
/// trailing slash. `..` never climbs above `/`.
pub fn clean_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.trim().split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

fn is_ancestor_or_equal(ancestor: &str, path: &str) -> bool {
    ancestor == "/" || path == ancestor || path.starts_with(&format!("{ancestor}/"))
}

/// Severity of a hostPath mount (SPEC 3.2, exact critical paths).
pub fn host_path_severity(path: &str) -> (Severity, &'static str) {
    let p = clean_path(path);
    if p == "/" {
        return (Severity::Critical, "the node's root filesystem");
    }
    if RUNTIME_SOCKETS
        .iter()
        .any(|s| is_ancestor_or_equal(&p, s) || is_ancestor_or_equal(s, &p))
    {
        return (Severity::Critical, "a container runtime socket");
    }
    if p.ends_with(".sock") {
        return (Severity::Critical, "a socket");
    }
    if CRITICAL_SUBTREES
        .iter()
        .any(|s| is_ancestor_or_equal(s, &p))
    {
        return (Severity::Critical, "node credentials, state or devices");
    }
    (Severity::High, "a node path")
}

/// An added capability outside the PSS baseline list (`CAP_` prefix and
/// case ignored).
pub fn is_privileged_capability(cap: &str) -> bool {
    let cap = cap.trim().to_ascii_uppercase();
    let cap = cap.strip_prefix("CAP_").unwrap_or(&cap);
    !BASELINE_CAPABILITIES.contains(&cap)
}

pub fn privileged(ctx: &Ctx, out: &mut Finder) {
    let Some(pod) = &ctx.cj.pod else { return };
    for (flag, on) in [
        ("hostPID", pod.host_pid),
        ("hostIPC", pod.host_ipc),
        ("hostNetwork", pod.host_network),
    ] {
        if on {
            out.push(
                None,
                format!(
                    "pod shares the node's {} namespace ({flag}: true)",
                    &flag[4..]
                ),
                format!("{}.{flag}", POD_PATH),
                "false",
                "true",
            );
        }
    }
    for (path, c) in pod.containers() {
        if c.privileged {
            out.push(
                None,
                format!("container {} is privileged", c.name),
                format!("{path}.securityContext.privileged"),
                "false",
                "true",
            );
        }
        if c.allow_privilege_escalation {
            out.push(
                None,
                format!("container {} allows privilege escalation", c.name),
                format!("{path}.securityContext.allowPrivilegeEscalation"),
                "false",
                "true",
            );
        }
        let added: Vec<&String> = c
            .capabilities_add
            .iter()
            .filter(|cap| is_privileged_capability(cap))
            .collect();
        if !added.is_empty() {
            let list = added
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            out.push(
                None,
                format!(
                    "container {} adds capabilities {list} (outside the Pod Security Standards baseline)",
                    c.name
                ),
                format!("{path}.securityContext.capabilities.add"),
                format!("only {}", BASELINE_CAPABILITIES.join(", ")),
                list,
            );
        }
        for what in &c.unconfined {
            let field = if what.starts_with("procMount") {
                "securityContext.procMount"
            } else if what.starts_with("seccomp") {
                "securityContext.seccompProfile.type"
            } else {
                "securityContext.appArmorProfile.type"
            };
            out.push(
                None,
                format!("container {} runs with {what}", c.name),
                format!("{path}.{field}"),
                "RuntimeDefault or Localhost (Default for procMount)",
                (*what).to_owned(),
            );
        }
    }
}

pub fn host_paths(ctx: &Ctx, out: &mut Finder) {
    let Some(pod) = &ctx.cj.pod else { return };
    for v in &pod.host_paths {
        let (severity, what) = host_path_severity(&v.path);
        out.push(
            Some(severity),
            format!("volume {} mounts hostPath {} ({what})", v.name, v.path),
            format!("{}.volumes[{}].hostPath.path", POD_PATH, v.index),
            "no hostPath volumes",
            v.path.clone(),
        );
    }
}

/// No tag and no digest, or tagged exactly `latest`.
pub fn mutable_images(ctx: &Ctx, out: &mut Finder) {
    let Some(pod) = &ctx.cj.pod else { return };
    for (path, name, raw) in pod.image_sites() {
        let image = ctx.engine.images.get(raw);
        if is_mutable(&image) {
            let why = if image.tag.is_none() {
                "has no tag and no digest"
            } else {
                "uses the tag latest"
            };
            out.push(
                None,
                format!("container {name} image {raw} {why}"),
                format!("{path}.image"),
                "a version tag or a digest",
                raw.to_owned(),
            );
        }
    }
}

/// A registry outside the global allowlist; off without an allowlist.
pub fn unapproved_registry(ctx: &Ctx, out: &mut Finder) {
    let (Some(pod), Some(allow)) = (&ctx.cj.pod, &ctx.engine.allowlist) else {
        return;
    };
    for (path, name, raw) in pod.image_sites() {
        let image = ctx.engine.images.get(raw);
        if !image.valid || !allow.iter().any(|g| g.is_match(&image.registry)) {
            out.push(
                None,
                format!(
                    "container {name} image {raw} comes from registry {}, not in the allowlist",
                    if image.valid {
                        image.registry.as_str()
                    } else {
                        "<unparseable>"
                    }
                ),
                format!("{path}.image"),
                "an allowlisted registry",
                raw.to_owned(),
            );
        }
    }
}

/// A CronJob in a system namespace that no cluster-tier entry approves: a
/// baseline written inside kube-system does not vouch for kube-system.
pub fn sensitive_namespace(ctx: &Ctx, out: &mut Finder) {
    let cj = ctx.cj;
    if ctx.cluster.is_none() && SENSITIVE_NAMESPACES.contains(&cj.namespace.as_str()) {
        out.push(
            None,
            format!(
                "CronJob {}/{} runs in system namespace {} without approval by a ClusterCronJobBaseline",
                cj.namespace, cj.name, cj.namespace
            ),
            "metadata.namespace".into(),
            "approved by a ClusterCronJobBaseline entry",
            cj.namespace.clone(),
        );
    }
}

pub fn history_erasure(ctx: &Ctx, out: &mut Finder) {
    let spec = ctx.cj;
    if spec.successful_jobs_history_limit == Some(0) && spec.failed_jobs_history_limit == Some(0) {
        out.push(
            None,
            "successfulJobsHistoryLimit and failedJobsHistoryLimit are both 0: finished Jobs vanish at once".into(),
            "spec.successfulJobsHistoryLimit".into(),
            "a history limit above 0",
            "0/0",
        );
    }
    if let Some(ttl) = spec.ttl_seconds_after_finished
        && ttl < 60
    {
        out.push(
                None,
                format!("ttlSecondsAfterFinished is {ttl}s: the Job and its Pods are deleted within a minute"),
                "spec.jobTemplate.spec.ttlSecondsAfterFinished".into(),
                ">= 60",
                ttl.to_string(),
            );
    }
}
