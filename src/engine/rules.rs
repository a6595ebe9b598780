//! Heuristic rules (SPEC 3.2): dangerous job templates whatever the baseline says.

use std::sync::OnceLock;

use regex::{RegexSet, RegexSetBuilder};

use super::normalize::is_mutable;
use super::{ContainerView, CronJobView, Finder, PodView};
use crate::api::{Rule, Severity};

pub const SENSITIVE_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// Container runtime sockets: mounting one of them, or a folder holding
/// one, gives the job the node.
pub const RUNTIME_SOCKETS: [&str; 8] = [
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/var/run/containerd/containerd.sock",
    "/run/containerd/containerd.sock",
    "/var/run/crio/crio.sock",
    "/run/crio/crio.sock",
    "/var/run/cri-dockerd.sock",
    "/run/k3s/containerd/containerd.sock",
];
/// Critical when mounted, or any folder above them (SPEC 3.2).
const CRITICAL_IF_ANCESTOR: [&str; 1] = ["/var/lib/kubelet"];
/// Critical when mounted, or anything below them.
const CRITICAL_SUBTREES: [&str; 4] = ["/etc", "/root", "/proc", "/var/lib/etcd"];

pub const DANGEROUS_CAPABILITIES: [&str; 4] = ["SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE", "ALL"];

/// Lexically normalise a host path: collapse `//`, `.` and `..`, drop the
/// trailing slash. `..` never climbs above `/`.
pub fn clean_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
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
    if RUNTIME_SOCKETS.iter().any(|s| is_ancestor_or_equal(&p, s)) {
        return (Severity::Critical, "a container runtime socket");
    }
    if CRITICAL_IF_ANCESTOR
        .iter()
        .any(|s| is_ancestor_or_equal(&p, s))
    {
        return (Severity::Critical, "the kubelet's state");
    }
    if CRITICAL_SUBTREES
        .iter()
        .any(|s| is_ancestor_or_equal(s, &p))
    {
        return (Severity::Critical, "node credentials or configuration");
    }
    (Severity::High, "a node path")
}

/// (label, pattern) pairs for SuspiciousCommand, matched case-insensitively
/// over a container's command and args joined by spaces.
const SUSPICIOUS: [(&str, &str); 12] = [
    (
        "download piped to a shell",
        r"\b(curl|wget|fetch)\b[^|;&]*\|\s*(sudo\s+)?(ba|z|da|k|a)?sh\b",
    ),
    (
        "download executed by a shell",
        r"\b(ba|z|da|k)?sh\b\s+-c\s+.{0,4}\$\(\s*(curl|wget)\b",
    ),
    (
        "download saved and executed",
        r"\b(curl|wget)\b[^;&|]*(-o|-O|--output)\s*\S+.*(&&|;)\s*(chmod\s+\+x|(ba|z|da)?sh\s)",
    ),
    (
        "base64-decoded payload run by a shell",
        r"base64\s+(-d|--decode|-D)\b[^;&]*\|\s*(ba|z|da|k)?sh\b",
    ),
    (
        "base64-decoded payload passed to eval",
        r"\beval\b.*base64\s+(-d|--decode|-D)\b",
    ),
    ("reverse shell over /dev/tcp", r"/dev/(tcp|udp)/"),
    (
        "reverse shell with nc -e",
        r"\b(nc|ncat|netcat)\b[^;&|]*\s-(e|c)\s",
    ),
    (
        "interactive shell redirected to the network",
        r"\b(ba|z)?sh\s+-i\b.*(>&|<&|\|)",
    ),
    ("reverse shell with socat exec", r"\bsocat\b.*\bexec:"),
    (
        "cryptocurrency miner",
        r"\b(xmrig|minerd|cpuminer|xmr-stak|ethminer|nbminer|t-rex)\b|stratum\+(tcp|ssl|tls)://",
    ),
    (
        "service-account token sent over the network",
        r"(/var)?/run/secrets/kubernetes\.io/serviceaccount.*\b(curl|wget|nc|ncat|scp|sendmail)\b|\b(curl|wget|nc|ncat|scp)\b.*(/var)?/run/secrets/kubernetes\.io/serviceaccount",
    ),
    (
        "kubeconfig sent over the network",
        r"(\.kube/config|kubeconfig|/etc/kubernetes/(admin|kubelet|super-admin)\.conf).*\b(curl|wget|nc|ncat|scp)\b|\b(curl|wget|nc|ncat|scp)\b.*(\.kube/config|/etc/kubernetes/(admin|kubelet|super-admin)\.conf)",
    ),
];

fn suspicious_set() -> &'static RegexSet {
    static SET: OnceLock<RegexSet> = OnceLock::new();
    SET.get_or_init(|| {
        RegexSetBuilder::new(SUSPICIOUS.iter().map(|(_, p)| *p))
            .case_insensitive(true)
            .dot_matches_new_line(true)
            .build()
            .expect("SuspiciousCommand patterns are constants and compile")
    })
}

/// Labels of the suspicious behaviours found in a command line.
pub fn suspicious_behaviours(command_line: &str) -> Vec<&'static str> {
    // `is_match` is allocation-free; almost every command line is innocent.
    if !suspicious_set().is_match(command_line) {
        return Vec::new();
    }
    suspicious_set()
        .matches(command_line)
        .into_iter()
        .map(|i| SUSPICIOUS[i].0)
        .collect()
}

pub fn command_line(c: &ContainerView) -> String {
    c.command
        .iter()
        .flatten()
        .chain(c.args.iter().flatten())
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn privileged(pod: &PodView, out: &mut Finder) {
    for (flag, on) in [
        ("hostPID", pod.host_pid),
        ("hostIPC", pod.host_ipc),
        ("hostNetwork", pod.host_network),
    ] {
        if on {
            out.push(
                Rule::PrivilegedJobTemplate,
                None,
                format!(
                    "pod shares the node's {} namespace ({flag}: true)",
                    &flag[4..]
                ),
                format!("{}.{flag}", super::POD_PATH),
                "false",
                "true",
            );
        }
    }
    for (path, c) in pod.containers() {
        if c.privileged {
            out.push(
                Rule::PrivilegedJobTemplate,
                None,
                format!("container {} is privileged", c.name),
                format!("{path}.securityContext.privileged"),
                "false",
                "true",
            );
        }
        if c.allow_privilege_escalation {
            out.push(
                Rule::PrivilegedJobTemplate,
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
            .filter(|cap| {
                let cap = cap.trim().to_ascii_uppercase();
                let cap = cap.strip_prefix("CAP_").unwrap_or(&cap);
                DANGEROUS_CAPABILITIES.contains(&cap)
            })
            .collect();
        if !added.is_empty() {
            let list = added
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            out.push(
                Rule::PrivilegedJobTemplate,
                None,
                format!("container {} adds capabilities {list}", c.name),
                format!("{path}.securityContext.capabilities.add"),
                format!("none of {}", DANGEROUS_CAPABILITIES.join(", ")),
                list,
            );
        }
    }
}

pub(super) fn host_paths(pod: &PodView, out: &mut Finder) {
    for v in &pod.host_paths {
        let (severity, what) = host_path_severity(&v.path);
        out.push(
            Rule::HostPathMount,
            Some(severity),
            format!("volume {} mounts hostPath {} ({what})", v.name, v.path),
            format!("{}.volumes[{}].hostPath.path", super::POD_PATH, v.index),
            "no hostPath volumes",
            v.path.clone(),
        );
    }
}

pub(super) fn suspicious_commands(pod: &PodView, out: &mut Finder) {
    thread_local! {
        // One buffer per thread: this runs for every container of every CronJob.
        static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    for (path, c) in pod.containers() {
        let found = LINE.with_borrow_mut(|line| {
            line.clear();
            for part in c.command.iter().flatten().chain(c.args.iter().flatten()) {
                if !line.is_empty() {
                    line.push(' ');
                }
                line.push_str(part);
            }
            if line.is_empty() {
                Vec::new()
            } else {
                suspicious_behaviours(line)
            }
        });
        if !found.is_empty() {
            let line = command_line(c);
            out.push(
                Rule::SuspiciousCommand,
                None,
                format!("container {} runs {}", c.name, found.join(", ")),
                format!("{path}.command"),
                "no download-and-execute, encoded payload, reverse shell, miner or credential exfiltration",
                line,
            );
        }
    }
}

pub(super) fn images(
    pod: &PodView,
    cache: &super::normalize::ImageCache,
    allowlist: Option<&Vec<super::normalize::Glob>>,
    mutable: bool,
    registry: bool,
    out: &mut Finder,
) {
    for (path, name, raw) in pod.image_sites() {
        let image = cache.get(raw);
        if mutable && is_mutable(&image) {
            let why = if image.tag.is_none() {
                "has no tag and no digest"
            } else {
                "uses the tag latest"
            };
            out.push(
                Rule::MutableImageReference,
                None,
                format!("container {name} image {raw} {why}"),
                format!("{path}.image"),
                "a version tag or a digest",
                raw.to_owned(),
            );
        }
        if let (true, Some(allow)) = (registry, allowlist)
            && (!image.valid || !allow.iter().any(|g| g.is_match(&image.registry)))
        {
            out.push(
                Rule::UnapprovedRegistry,
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

pub(super) fn history_erasure(spec: &CronJobView, out: &mut Finder) {
    if spec.successful_jobs_history_limit == Some(0) && spec.failed_jobs_history_limit == Some(0) {
        out.push(
            Rule::HistoryErasure,
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
                Rule::HistoryErasure,
                None,
                format!("ttlSecondsAfterFinished is {ttl}s: the Job and its Pods are deleted within a minute"),
                "spec.jobTemplate.spec.ttlSecondsAfterFinished".into(),
                ">= 60",
                ttl.to_string(),
            );
    }
}
