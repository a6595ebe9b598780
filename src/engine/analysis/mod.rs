//! Command analysis (SPEC 3.3): what a pod template makes a node execute.
//!
//! Every exec surface of a container is read as the kubelet runs it:
//! `command` + `args` after Kubernetes `$(VAR)` expansion from `env`, each
//! literal `env` value, `lifecycle.postStart`/`preStop` exec handlers
//! (not expanded by the kubelet) and exec probes (expanded from static
//! env). Shell scripts are parsed with `brush-parser` and walked by a
//! small abstract interpreter ([`shell`]) that follows what flows where:
//! pipes, `&&`/`;`, subshells, `$(…)`, backticks, `<(…)`, here-strings,
//! quoting, variables and the files a script writes. Interpreter inline
//! code (python, perl, ruby, node, php, powershell, lua) is read by
//! [`inline`]. What a script does is decided per program in [`programs`].
//!
//! Work is bounded: scripts over [`MAX_SCRIPT`] bytes, or that don't parse,
//! are read as plain tokens; nesting and steps are capped. Results are
//! memoised per distinct surface ([`cache`]), so 10,000 CronJobs running
//! the same few command lines cost a few parses.

mod expand;
mod inline;
mod programs;
mod shell;
pub mod words;

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use k8s_openapi::api::core::v1::{Container, EnvVar, ExecAction, Lifecycle, Probe};
use rustc_hash::FxHashMap as HashMap;

pub use expand::expand;

use super::verdict::bounded;

/// The six behaviours SuspiciousCommand reports (SPEC 3.3), each critical.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    DownloadExecute,
    EncodedPayload,
    ReverseShell,
    Cryptominer,
    CredentialTheft,
    ClusterTakeover,
}

impl Category {
    pub const ALL: [Category; 6] = [
        Category::DownloadExecute,
        Category::EncodedPayload,
        Category::ReverseShell,
        Category::Cryptominer,
        Category::CredentialTheft,
        Category::ClusterTakeover,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::DownloadExecute => "download-and-execute",
            Category::EncodedPayload => "encoded payload",
            Category::ReverseShell => "reverse shell",
            Category::Cryptominer => "cryptominer",
            Category::CredentialTheft => "credential theft",
            Category::ClusterTakeover => "cluster takeover",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One behaviour found on one surface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    pub category: Category,
    /// What was seen, e.g. `curl output runs in sh`.
    pub detail: String,
}

/// Where in a container something executes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Surface {
    /// `command` + `args`.
    Command,
    /// A literal `env` value (index, name).
    Env(usize, String),
    PostStart,
    PreStop,
    LivenessProbe,
    ReadinessProbe,
    StartupProbe,
}

impl Surface {
    /// The JSON path below the container, for the violation's field.
    pub fn field(&self) -> String {
        match self {
            Surface::Command => "command".into(),
            Surface::Env(i, _) => format!("env[{i}].value"),
            Surface::PostStart => "lifecycle.postStart.exec.command".into(),
            Surface::PreStop => "lifecycle.preStop.exec.command".into(),
            Surface::LivenessProbe => "livenessProbe.exec.command".into(),
            Surface::ReadinessProbe => "readinessProbe.exec.command".into(),
            Surface::StartupProbe => "startupProbe.exec.command".into(),
        }
    }
}

impl fmt::Display for Surface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Surface::Command => f.write_str("command"),
            Surface::Env(_, name) => write!(f, "env {name}"),
            Surface::PostStart => f.write_str("lifecycle.postStart"),
            Surface::PreStop => f.write_str("lifecycle.preStop"),
            Surface::LivenessProbe => f.write_str("livenessProbe"),
            Surface::ReadinessProbe => f.write_str("readinessProbe"),
            Surface::StartupProbe => f.write_str("startupProbe"),
        }
    }
}

/// The behaviours found on one surface of a container, with the command
/// line as the kubelet would run it (bounded), for the violation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Threat {
    pub surface: Surface,
    pub hits: Arc<[Hit]>,
    pub line: String,
}

/// Scripts longer than this are read as plain tokens, not parsed.
pub const MAX_SCRIPT: usize = 64 * 1024;
/// Longest command line kept for a violation's `observed`.
const MAX_LINE: usize = 512;

/// The environment a container's commands see: name → literal value
/// (after Kubernetes expansion), `None` for `valueFrom` (unknown here).
pub type Env = Vec<(String, Option<String>)>;

/// Every exec surface of a container, analysed. `host_mounts` are the
/// container's mount paths backed by hostPath volumes (for `chroot`).
pub fn container_threats(c: &Container, host_mounts: &[String]) -> Vec<Threat> {
    let env = environment(c.env.as_deref().unwrap_or_default());
    let mut out: Vec<Threat> = Vec::new();
    let argv: Vec<String> = c
        .command
        .iter()
        .flatten()
        .chain(c.args.iter().flatten())
        .map(|s| expand(s, &env))
        .collect();
    let mut found = Vec::new();
    if !argv.is_empty() {
        surface(&mut out, Surface::Command, &argv, &env, host_mounts);
        found.extend(out.iter().flat_map(|t| t.hits.iter().map(|h| h.category)));
    }
    // A literal env value is a surface of its own (`sh -c "$PAYLOAD"` at
    // run time, a script reading it); not repeated where the command
    // already showed the same behaviour.
    for (i, (name, value)) in env.iter().enumerate() {
        let Some(value) = value else { continue };
        if value.len() < 4 || !value.contains([' ', '|', ';', '/', '(', '`']) {
            continue;
        }
        let hits = cached(std::slice::from_ref(value), &Vec::new(), host_mounts, true);
        let fresh: Vec<Hit> = hits
            .iter()
            .filter(|h| !found.contains(&h.category))
            .cloned()
            .collect();
        if !fresh.is_empty() {
            out.push(Threat {
                surface: Surface::Env(i, name.clone()),
                hits: fresh.into(),
                line: bounded_line(std::slice::from_ref(value)),
            });
        }
    }
    let handlers = c.lifecycle.as_ref().map(|l: &Lifecycle| {
        [
            (
                Surface::PostStart,
                l.post_start.as_ref().and_then(|h| h.exec.as_ref()),
            ),
            (
                Surface::PreStop,
                l.pre_stop.as_ref().and_then(|h| h.exec.as_ref()),
            ),
        ]
    });
    for (s, exec) in handlers.into_iter().flatten() {
        if let Some(argv) = exec.and_then(|e: &ExecAction| e.command.as_deref()) {
            // The kubelet runs hook commands as written: no `$(VAR)` expansion.
            surface(&mut out, s, argv, &env, host_mounts);
        }
    }
    let statics: Env = env
        .iter()
        .map(|(n, v)| (n.clone(), v.clone()))
        .filter(|(_, v)| v.is_some())
        .collect();
    for (s, probe) in [
        (Surface::LivenessProbe, &c.liveness_probe),
        (Surface::ReadinessProbe, &c.readiness_probe),
        (Surface::StartupProbe, &c.startup_probe),
    ] {
        let exec = probe.as_ref().and_then(|p: &Probe| p.exec.as_ref());
        if let Some(argv) = exec.and_then(|e| e.command.as_deref()) {
            // Probes are expanded from static env values only (kubelet prober).
            let argv: Vec<String> = argv.iter().map(|a| expand(a, &statics)).collect();
            surface(&mut out, s, &argv, &env, host_mounts);
        }
    }
    out
}

fn surface(out: &mut Vec<Threat>, s: Surface, argv: &[String], env: &Env, mounts: &[String]) {
    let hits = cached(argv, env, mounts, false);
    if !hits.is_empty() {
        out.push(Threat {
            surface: s,
            hits,
            line: bounded_line(argv),
        });
    }
}

fn bounded_line(argv: &[String]) -> String {
    bounded(argv.join(" "), MAX_LINE)
}

/// The container's env in order, each literal value expanded with the
/// variables defined before it (as the kubelet does).
fn environment(vars: &[EnvVar]) -> Env {
    let mut env: Env = Vec::with_capacity(vars.len());
    for v in vars {
        let value = if v.value_from.is_some() {
            None
        } else {
            let raw = v.value.as_deref().unwrap_or("");
            Some(expand(raw, &env))
        };
        env.push((v.name.clone(), value));
    }
    env
}

type Key = (
    Vec<String>,
    Vec<(String, Option<String>)>,
    Vec<String>,
    bool,
);

/// Memo of analyses by surface content: command lines repeat across
/// CronJobs, and parsing is the costly part.
fn cache() -> &'static Mutex<HashMap<Key, Arc<[Hit]>>> {
    static CACHE: OnceLock<Mutex<HashMap<Key, Arc<[Hit]>>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

fn cached(argv: &[String], env: &Env, mounts: &[String], as_script: bool) -> Arc<[Hit]> {
    let key: Key = (argv.to_vec(), env.clone(), mounts.to_vec(), as_script);
    if let Some(hits) = cache().lock().ok().and_then(|m| m.get(&key).cloned()) {
        return hits;
    }
    let hits: Arc<[Hit]> = if as_script {
        analyze_script(&argv[0], env, mounts)
    } else {
        analyze_argv(argv, env, mounts)
    }
    .into();
    if let Ok(mut m) = cache().lock() {
        if m.len() > 50_000 {
            m.clear();
        }
        m.insert(key, hits.clone());
    }
    hits
}

/// Analyse an argv as the kubelet execs it (no shell unless argv runs one).
pub fn analyze_argv(argv: &[String], env: &Env, host_mounts: &[String]) -> Vec<Hit> {
    let mut a = shell::Analyzer::new(env, host_mounts);
    a.argv(argv);
    a.finish()
}

/// Analyse a text as a shell script.
pub fn analyze_script(script: &str, env: &Env, host_mounts: &[String]) -> Vec<Hit> {
    let mut a = shell::Analyzer::new(env, host_mounts);
    a.script(script, &shell::Val::default());
    a.finish()
}

/// Analyse one command line given as a single string (tests, the table
/// in the README): the string is run as `sh -c <line>`.
pub fn analyze_line(line: &str) -> Vec<Hit> {
    analyze_argv(&["sh".into(), "-c".into(), line.into()], &Vec::new(), &[])
}
