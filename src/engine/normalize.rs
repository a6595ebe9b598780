//! Normalisation before comparison (SPEC 3.3): image references, schedules,
//! the security-relevant template hash, and the deployment path (SPEC 3.4).

use rustc_hash::FxHashMap as HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use oci_spec::distribution::Reference;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::api::ManagerRef;

// ---------------------------------------------------------------- images

/// An image reference in the form patterns are matched against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// `registry/repository[:tag][@digest]`, Docker Hub short names expanded;
    /// the raw string when it is not a valid reference.
    pub normalized: String,
    /// `registry/repository`, empty when not parseable.
    pub repository: String,
    pub registry: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
    /// False when the reference could not be parsed; it is then compared as written.
    pub valid: bool,
}

impl ImageRef {
    pub fn parse(raw: &str) -> ImageRef {
        let raw = raw.trim();
        match Reference::from_str(raw) {
            Ok(r) => {
                // The parser fills in `latest` when there is no tag; we keep
                // the reference as written, so MutableImageReference can tell.
                let explicit_tag = {
                    let before_digest = raw.split('@').next().unwrap_or(raw);
                    let last = before_digest.rsplit('/').next().unwrap_or(before_digest);
                    last.contains(':')
                };
                let tag = if explicit_tag {
                    r.tag().map(str::to_owned)
                } else {
                    None
                };
                let digest = r.digest().map(str::to_owned);
                let repository = format!("{}/{}", r.registry(), r.repository());
                let mut normalized = repository.clone();
                if let Some(t) = &tag {
                    normalized.push(':');
                    normalized.push_str(t);
                }
                if let Some(d) = &digest {
                    normalized.push('@');
                    normalized.push_str(d);
                }
                ImageRef {
                    normalized,
                    registry: r.registry().to_owned(),
                    repository,
                    tag,
                    digest,
                    valid: true,
                }
            }
            Err(_) => ImageRef {
                normalized: raw.to_owned(),
                repository: String::new(),
                registry: String::new(),
                tag: None,
                digest: None,
                valid: false,
            },
        }
    }
}

/// Normalise an image reference (idempotent).
pub fn normalize_image(raw: &str) -> String {
    ImageRef::parse(raw).normalized
}

/// An allowed-image pattern: a glob over normalised references where `*`
/// crosses `/`. Without tag or digest it matches any tag or digest.
#[derive(Clone, Debug)]
pub struct ImagePattern {
    pub source: String,
    glob: Glob,
    repository_only: bool,
}

impl ImagePattern {
    pub fn new(pattern: &str) -> Result<ImagePattern, String> {
        let p = pattern.trim();
        if p.is_empty() {
            return Err("empty image pattern".into());
        }
        let has_meta = p.contains(['*', '?', '[', '{']);
        let last = p.split('@').next().unwrap_or(p);
        let last = last.rsplit('/').next().unwrap_or(last);
        let repository_only = !p.contains('@') && !last.contains(':');
        // Literal patterns get the same expansion as images (`busybox` →
        // `docker.io/library/busybox`); globs are taken as written.
        let text = if has_meta {
            p.to_owned()
        } else {
            let r = ImageRef::parse(p);
            if r.valid { r.normalized } else { p.to_owned() }
        };
        let glob =
            Glob::new(&text).map_err(|e| format!("invalid image pattern {pattern:?}: {e}"))?;
        Ok(ImagePattern {
            source: pattern.to_owned(),
            glob,
            repository_only,
        })
    }

    pub fn matches(&self, image: &ImageRef) -> bool {
        if self.repository_only && image.valid && self.glob.is_match(&image.repository) {
            return true;
        }
        if self.glob.is_match(&image.normalized) {
            return true;
        }
        // `repo:tag` for an image that also has a digest, so `repo:1.0`
        // matches `repo:1.0@sha256:…`.
        match (&image.tag, &image.digest) {
            (Some(t), Some(_)) => self.glob.is_match(&format!("{}:{t}", image.repository)),
            _ => false,
        }
    }
}

/// Image is pinned by digest.
pub fn has_digest(image: &ImageRef) -> bool {
    image.digest.is_some()
}

/// Untagged and undigested, or tagged exactly `latest`.
pub fn is_mutable(image: &ImageRef) -> bool {
    if !image.valid {
        return false;
    }
    image.digest.is_none() && image.tag.as_deref().is_none_or(|t| t == "latest")
}

/// A glob compiled once (globset's syntax: `*`, `?`, `[..]`, `{a,b}`) where
/// `*` crosses `/`, matched against `&str` without the per-call path
/// allocation `GlobMatcher` makes.
#[derive(Clone, Debug)]
pub struct Glob {
    source: String,
    kind: GlobKind,
}

/// Most real patterns are a literal or `literal*`: those skip the regex.
#[derive(Clone, Debug)]
enum GlobKind {
    Exact(String),
    Prefix(String),
    Regex(regex::bytes::Regex),
}

impl Glob {
    pub fn new(pattern: &str) -> Result<Glob, String> {
        let glob = globset::GlobBuilder::new(pattern)
            .literal_separator(false)
            .backslash_escape(true)
            .build()
            .map_err(|e| e.to_string())?;
        let is_meta = |c: char| matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\');
        let kind = if !pattern.contains(is_meta) {
            GlobKind::Exact(pattern.to_owned())
        } else if let Some(prefix) = pattern.strip_suffix('*').filter(|p| !p.contains(is_meta)) {
            GlobKind::Prefix(prefix.to_owned())
        } else {
            GlobKind::Regex(regex::bytes::Regex::new(glob.regex()).map_err(|e| e.to_string())?)
        };
        Ok(Glob {
            source: pattern.to_owned(),
            kind,
        })
    }

    pub fn is_match(&self, s: &str) -> bool {
        match &self.kind {
            GlobKind::Exact(e) => e == s,
            GlobKind::Prefix(p) => s.starts_with(p.as_str()),
            GlobKind::Regex(r) => r.is_match(s.as_bytes()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}

// ---------------------------------------------------------------- schedules

/// Fold whitespace and expand the macros Kubernetes accepts, so
/// `@hourly` compares equal to `0 * * * *`.
pub fn normalize_schedule(schedule: &str) -> String {
    let folded = schedule.split_whitespace().collect::<Vec<_>>().join(" ");
    let expanded = match folded.to_ascii_lowercase().as_str() {
        "@hourly" => "0 * * * *",
        "@daily" | "@midnight" => "0 0 * * *",
        "@weekly" => "0 0 * * 0",
        "@monthly" => "0 0 1 * *",
        "@yearly" | "@annually" => "0 0 1 1 *",
        _ => return folded,
    };
    expanded.to_owned()
}

fn cron_parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
}

/// Validate a schedule the way a CronJob needs it: five fields, a macro,
/// or `@every <duration>`.
pub fn parse_schedule(schedule: &str) -> Result<ParsedSchedule, String> {
    let norm = normalize_schedule(schedule);
    if norm.is_empty() {
        return Err("schedule is empty".into());
    }
    if let Some(rest) = norm.strip_prefix("@every ") {
        let d = parse_duration(rest)?;
        if d < std::time::Duration::from_secs(1) {
            return Err(format!("@every interval {rest:?} is under one second"));
        }
        return Ok(ParsedSchedule::Every(d));
    }
    if norm.split(' ').count() != 5 {
        return Err(format!(
            "schedule {schedule:?} must have five fields (minute hour day-of-month month day-of-week) or be a macro"
        ));
    }
    cron_parser()
        .parse(&norm)
        .map(|c| ParsedSchedule::Cron(Box::new(c)))
        .map_err(|e| format!("invalid schedule {schedule:?}: {e}"))
}

pub enum ParsedSchedule {
    Cron(Box<Cron>),
    Every(std::time::Duration),
}

/// Parse a Go-style duration (`90s`, `15m`, `1h30m`).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// Render a duration the way users write it (`2m`, `1h30m`, `1d`).
pub fn format_duration(d: std::time::Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, len) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= len {
            out.push_str(&format!("{}{unit}", secs / len));
            secs %= len;
        }
    }
    out
}

/// The smallest gap between two consecutive firings of a schedule, `None`
/// when it never fires.
///
/// Times of day do not depend on the day in cron, so the answer is the
/// smaller of the smallest gap within one firing day and the smallest
/// `gap between firing days - span of a day`; days are scanned over 28 years
/// (the calendar's full cycle), both stopping as soon as the minimum
/// possible gap is seen. Evaluated in UTC: DST shifts are not modelled.
pub fn min_interval(schedule: &str) -> Result<Option<std::time::Duration>, String> {
    let cron = match parse_schedule(schedule)? {
        ParsedSchedule::Every(d) => return Ok(Some(d)),
        ParsedSchedule::Cron(c) => c,
    };
    // 2024-01-01 is a Monday in a leap year.
    let anchor: DateTime<Utc> = Utc.from_utc_datetime(
        &NaiveDate::from_ymd_opt(2024, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .ok_or("anchor")?,
    );
    let Ok(first) = cron.find_next_occurrence(&anchor, true) else {
        return Ok(None);
    };
    let day0 = first.date_naive();
    let minute = Duration::minutes(1);
    let mut best: Option<Duration> = None;
    let mut prev = first;
    let mut last_of_day = first;
    for next in cron.iter_after(first) {
        if next.date_naive() != day0 {
            break;
        }
        let gap = next - prev;
        best = Some(best.map_or(gap, |b| b.min(gap)));
        if gap <= minute {
            return Ok(Some(std::time::Duration::from_secs(60)));
        }
        prev = next;
        last_of_day = next;
    }
    let span = last_of_day - first;
    let horizon = anchor + Duration::days(366 * 28);
    let mut day = day0;
    let mut smallest_day_gap: Option<i64> = None;
    while let Some(start) = day.succ_opt().and_then(|d| d.and_hms_opt(0, 0, 0)) {
        let start = Utc.from_utc_datetime(&start);
        let Ok(next) = cron.find_next_occurrence(&start, true) else {
            break;
        };
        if next > horizon {
            break;
        }
        let next_day = next.date_naive();
        let gap_days = (next_day - day).num_days();
        smallest_day_gap = Some(smallest_day_gap.map_or(gap_days, |g: i64| g.min(gap_days)));
        if gap_days <= 1 {
            break;
        }
        day = next_day;
    }
    if let Some(days) = smallest_day_gap {
        let across = Duration::days(days) - span;
        best = Some(best.map_or(across, |b| b.min(across)));
    }
    Ok(best.and_then(|b| b.to_std().ok()))
}

type IntervalResult = Result<Option<std::time::Duration>, String>;

/// Memoised [`min_interval`], shared by evaluations: schedules repeat a lot
/// across CronJobs, and the search costs up to a few thousand cron steps.
#[derive(Clone, Default)]
pub struct IntervalCache {
    inner: Arc<Mutex<HashMap<String, IntervalResult>>>,
}

impl IntervalCache {
    /// Keyed by the schedule as written: a hit costs no allocation.
    pub fn get(&self, schedule: &str) -> Result<Option<std::time::Duration>, String> {
        if let Some(v) = self
            .inner
            .lock()
            .ok()
            .and_then(|m| m.get(schedule).cloned())
        {
            return v;
        }
        let v = min_interval(schedule);
        if let Ok(mut m) = self.inner.lock() {
            if m.len() > 100_000 {
                m.clear();
            }
            m.insert(schedule.to_owned(), v.clone());
        }
        v
    }
}

/// Memoised [`ImageRef::parse`]. The reference grammar is a large regex
/// with captures, by far the costliest step of an evaluation, and clusters
/// run the same few hundred images in thousands of CronJobs.
#[derive(Clone, Default)]
pub struct ImageCache {
    inner: Arc<Mutex<HashMap<String, Arc<ImageRef>>>>,
}

impl ImageCache {
    pub fn get(&self, raw: &str) -> Arc<ImageRef> {
        if let Some(v) = self.inner.lock().ok().and_then(|m| m.get(raw).cloned()) {
            return v;
        }
        let v = Arc::new(ImageRef::parse(raw));
        if let Ok(mut m) = self.inner.lock() {
            if m.len() > 100_000 {
                m.clear();
            }
            m.insert(raw.to_owned(), v.clone());
        }
        v
    }
}

// ---------------------------------------------------------------- template hash

/// `sha256:` over the canonical JSON of the security-relevant projection of
/// a pod template (SPEC 3.3). Server-defaulted fields are not projected and
/// empty values count as absent, so a manifest and the object the API server
/// returns for it hash alike.
pub fn template_hash(pod: Option<&PodSpec>) -> String {
    let projection = pod.map(project_pod).unwrap_or(Value::Null);
    let canonical = serde_json::to_vec(&prune(projection)).unwrap_or_default();
    format!("sha256:{}", hex::encode(Sha256::digest(canonical)))
}

fn project_containers(containers: &[Container]) -> Value {
    let mut sorted: Vec<&Container> = containers.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    Value::Array(sorted.into_iter().map(project_container).collect())
}

fn project_container(c: &Container) -> Value {
    let mut env_names: Vec<&str> = c.env.iter().flatten().map(|e| e.name.as_str()).collect();
    env_names.sort_unstable();
    env_names.dedup();
    let env_from: Vec<Value> = c
        .env_from
        .iter()
        .flatten()
        .map(|s| {
            json!({
                "prefix": s.prefix,
                "configMapRef": s.config_map_ref.as_ref().map(|r| &r.name),
                "secretRef": s.secret_ref.as_ref().map(|r| &r.name),
            })
        })
        .collect();
    json!({
        "name": c.name,
        "image": c.image,
        "command": c.command,
        "args": c.args,
        "env": env_names,
        "envFrom": env_from,
        "volumeMounts": c.volume_mounts,
        "securityContext": c.security_context,
    })
}

fn project_pod(p: &PodSpec) -> Value {
    let mut volumes: Vec<Value> = p
        .volumes
        .iter()
        .flatten()
        .map(|v| {
            let mut v = serde_json::to_value(v).unwrap_or(Value::Null);
            strip_volume_defaults(&mut v);
            v
        })
        .collect();
    volumes.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    json!({
        "containers": project_containers(&p.containers),
        "initContainers": project_containers(p.init_containers.as_deref().unwrap_or_default()),
        "serviceAccountName": p.service_account_name.as_deref().or(p.service_account.as_deref()),
        "automountServiceAccountToken": p.automount_service_account_token,
        "hostNetwork": p.host_network.filter(|b| *b),
        "hostPID": p.host_pid.filter(|b| *b),
        "hostIPC": p.host_ipc.filter(|b| *b),
        "volumes": volumes,
        "securityContext": p.security_context,
    })
}

/// Fields the API server fills into volume sources (`defaultMode: 420`,
/// `hostPath.type: ""`) that a manifest usually omits.
fn strip_volume_defaults(v: &mut Value) {
    let Some(obj) = v.as_object_mut() else { return };
    for (_, source) in obj.iter_mut() {
        if let Some(s) = source.as_object_mut() {
            if s.get("defaultMode") == Some(&json!(420)) {
                s.remove("defaultMode");
            }
            if s.get("type") == Some(&json!("")) {
                s.remove("type");
            }
        }
    }
}

/// Remove nulls, empty strings-free objects and empty lists, recursively.
fn prune(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let v = prune(v);
                if !is_empty(&v) {
                    out.insert(k, v);
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.into_iter().map(prune).collect()),
        other => other,
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

// ---------------------------------------------------------------- deployment path

/// Managers whose managedFields entries own fields under `f:spec`; status
/// subresource entries are ignored. One entry per manager and operation,
/// in the order the API server lists them.
pub fn spec_managers(entries: &[ManagedFieldsEntry]) -> Vec<ManagerRef> {
    let mut out: Vec<ManagerRef> = Vec::new();
    for e in entries {
        if e.subresource.as_deref().is_some_and(|s| !s.is_empty()) {
            continue;
        }
        let spec = e.fields_v1.as_ref().and_then(|f| f.0.get("f:spec"));
        let owns_spec = spec.is_some_and(|s| s.as_object().is_none_or(|o| !o.is_empty()));
        if !owns_spec {
            continue;
        }
        // cronwarden's own enforcement patch (spec.suspend only) is not a
        // deployment path; any other field under that name still counts.
        let only_suspend = spec
            .and_then(|s| s.as_object())
            .is_some_and(|o| o.keys().all(|k| k == "f:suspend"));
        if e.manager.as_deref() == Some(crate::api::FIELD_MANAGER) && only_suspend {
            continue;
        }
        let manager = e.manager.clone().unwrap_or_default();
        let operation = e.operation.clone().unwrap_or_default();
        if out
            .iter()
            .any(|m| m.manager == manager && m.operation == operation)
        {
            continue;
        }
        out.push(ManagerRef {
            manager,
            operation,
            time: e.time.clone(),
        });
    }
    out
}
