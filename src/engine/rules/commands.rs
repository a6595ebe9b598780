//! Command analysis (SuspiciousCommand, SPEC 3.3): what a container runs.

use std::sync::OnceLock;

use regex::{RegexSet, RegexSetBuilder};

use super::Ctx;
use super::baseline::command_line;
use crate::engine::verdict::Finder;

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
            .expect("the command patterns are constants and compile")
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

pub fn suspicious(ctx: &Ctx, out: &mut Finder) {
    let Some(pod) = &ctx.cj.pod else { return };
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
                None,
                format!("container {} runs {}", c.name, found.join(", ")),
                format!("{path}.command"),
                "no download-and-execute, encoded payload, reverse shell, miner or credential exfiltration",
                line,
            );
        }
    }
}
