//! The security-relevant template hash (SPEC 3.5).
//!
//! The hash covers everything that decides what a Job's pod runs, as whom,
//! where and with what: per container its command line, environment (names
//! *and* values, in order), hooks, probes, mounts and security context; for
//! the pod its identity, host namespaces, volumes, placement and pull
//! secrets. It must not change when only the API server touched the
//! object, so values it defaults count as absent (the tables below list
//! what a v1.36 API server writes into a CronJob's pod template), empty
//! objects, lists and strings count as absent, and quantities are compared
//! by value (`0.5Gi` is served as `512Mi`). Fields a disabled feature gate
//! makes the API server drop are not recognised: such a manifest does not
//! run as written, and its hash says so.

use k8s_openapi::api::core::v1::{Container, PodSpec};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// `sha256:` over the canonical JSON of the security-relevant projection of
/// a pod template (SPEC 3.5). A manifest and the object the API server
/// returns for it hash alike; any change to the projection changes it.
pub fn template_hash(pod: Option<&PodSpec>) -> String {
    let projection = pod.map_or(Value::Null, project_pod);
    let mut hasher = HashWriter(Sha256::new());
    // Writing a `Value` into a hasher cannot fail: map keys are strings.
    let _ = serde_json::to_writer(&mut hasher, &projection);
    format!("sha256:{}", hex::encode(hasher.0.finalize()))
}

struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Values the API server defaults below an object, by the key of that
/// object (for an element of a list: the list's key). Verified against a
/// v1.36 kube-apiserver (the `tests/fixtures/cronjob-*-as-served.yaml`
/// fixtures) and `pkg/apis/core/v1/defaults.go`. Looked up once per object.
fn defaults_below(parent: &str) -> &'static [(&'static str, Scalar)] {
    use Scalar::{Bool, Int, Str};
    match parent {
        // Volume sources (SetDefaults_*VolumeSource). The projected
        // sources of the same names have no defaultMode of their own.
        "configMap" | "secret" | "projected" | "downwardAPI" => &[("defaultMode", Int(420))],
        // In a template; a Pod's admission may shorten it, a template's not.
        "serviceAccountToken" => &[("expirationSeconds", Int(3600))],
        "hostPath" => &[("type", Str(""))],
        "iscsi" => &[("iscsiInterface", Str("default"))],
        "rbd" => &[
            ("pool", Str("rbd")),
            ("user", Str("admin")),
            ("keyring", Str("/etc/ceph/keyring")),
        ],
        "azureDisk" => &[
            ("cachingMode", Str("ReadWrite")),
            ("fsType", Str("ext4")),
            ("kind", Str("Shared")),
            ("readOnly", Bool(false)),
        ],
        "scaleIO" => &[
            ("storageMode", Str("ThinProvisioned")),
            ("fsType", Str("xfs")),
        ],
        // An ephemeral volume's claim template: its `spec` is the only
        // `spec` in the projection.
        "spec" => &[("volumeMode", Str("Filesystem"))],
        // References, in env valueFrom and downwardAPI items.
        "fieldRef" => &[("apiVersion", Str("v1"))],
        "fileKeyRef" => &[("optional", Bool(false))],
        // Handlers of probes and lifecycle hooks.
        "httpGet" => &[("scheme", Str("HTTP")), ("path", Str("/"))],
        "grpc" => &[("service", Str(""))],
        "ports" => &[("protocol", Str("TCP"))],
        // SetDefaults_Probe; `initialDelaySeconds` is a plain Go int the API
        // server drops when 0.
        "livenessProbe" | "readinessProbe" | "startupProbe" => &[
            ("timeoutSeconds", Int(1)),
            ("periodSeconds", Int(10)),
            ("successThreshold", Int(1)),
            ("failureThreshold", Int(3)),
            ("initialDelaySeconds", Int(0)),
        ],
        // A plain Go bool the API server drops when false.
        "volumeMounts" => &[("readOnly", Bool(false))],
        _ => &[],
    }
}

/// Objects whose keys are data (labels, selectors), not fields: neither
/// defaults nor the empty-string rule apply to their entries
/// (`nodeSelector: {disk: ""}` is a real constraint).
fn is_data_map(key: &str) -> bool {
    matches!(
        key,
        "nodeSelector" | "matchLabels" | "labels" | "annotations" | "volumeAttributes" | "options"
    )
}

/// Fields holding a resource quantity, compared by value.
fn is_quantity(key: &str) -> bool {
    matches!(key, "divisor" | "sizeLimit")
}

/// Maps whose values are quantities (an ephemeral volume's claim resources).
fn is_quantity_map(key: &str) -> bool {
    matches!(key, "requests" | "limits")
}

#[derive(Clone, Copy)]
enum Scalar {
    Int(i64),
    Str(&'static str),
    Bool(bool),
}

impl Scalar {
    fn matches(self, v: &Value) -> bool {
        match (self, v) {
            (Scalar::Int(i), Value::Number(n)) => n.as_i64() == Some(i),
            (Scalar::Str(s), Value::String(t)) => s == t,
            (Scalar::Bool(b), Value::Bool(c)) => b == *c,
            _ => false,
        }
    }
}

fn project_pod(p: &PodSpec) -> Value {
    let mut m = Map::new();
    let mut containers: Vec<&Container> = p.containers.iter().collect();
    containers.sort_by(|a, b| a.name.cmp(&b.name));
    put_list(
        &mut m,
        "containers",
        containers.into_iter().map(project_container),
    );
    // Init containers run one after the other: their order is kept.
    put_list(
        &mut m,
        "initContainers",
        p.init_containers.iter().flatten().map(project_container),
    );
    // `serviceAccount` is the deprecated alias the API server copies.
    let sa = p
        .service_account_name
        .as_deref()
        .filter(|s| !s.is_empty())
        .or(p.service_account.as_deref());
    put(&mut m, "serviceAccountName", &sa);
    put(
        &mut m,
        "automountServiceAccountToken",
        &p.automount_service_account_token,
    );
    // Plain Go bools: the API server drops them when false.
    put(&mut m, "hostNetwork", &p.host_network.filter(|b| *b));
    put(&mut m, "hostPID", &p.host_pid.filter(|b| *b));
    put(&mut m, "hostIPC", &p.host_ipc.filter(|b| *b));
    // Unset means true (the host's user namespace) and false means not shared.
    put(&mut m, "hostUsers", &p.host_users.filter(|b| !*b));
    put(
        &mut m,
        "shareProcessNamespace",
        &p.share_process_namespace.filter(|b| *b),
    );
    // Volumes are referenced by name: their order means nothing.
    let mut volumes: Vec<_> = p.volumes.iter().flatten().collect();
    volumes.sort_by(|a, b| a.name.cmp(&b.name));
    put(&mut m, "volumes", &volumes);
    put(&mut m, "securityContext", &p.security_context);
    put(&mut m, "nodeName", &p.node_name);
    put(&mut m, "nodeSelector", &p.node_selector);
    put(&mut m, "tolerations", &p.tolerations);
    put(&mut m, "affinity", &p.affinity);
    put(&mut m, "runtimeClassName", &p.runtime_class_name);
    put(&mut m, "hostAliases", &p.host_aliases);
    put(&mut m, "imagePullSecrets", &p.image_pull_secrets);
    Value::Object(m)
}

fn project_container(c: &Container) -> Value {
    let mut m = Map::new();
    put(&mut m, "name", &c.name);
    put(&mut m, "image", &c.image);
    put(&mut m, "command", &c.command);
    put(&mut m, "args", &c.args);
    // In order: `$(VAR)` expands only variables defined before it.
    put(&mut m, "env", &c.env);
    put(&mut m, "envFrom", &c.env_from);
    put(&mut m, "volumeMounts", &c.volume_mounts);
    put(&mut m, "securityContext", &c.security_context);
    put(&mut m, "lifecycle", &c.lifecycle);
    put(&mut m, "livenessProbe", &c.liveness_probe);
    put(&mut m, "readinessProbe", &c.readiness_probe);
    put(&mut m, "startupProbe", &c.startup_probe);
    Value::Object(m)
}

/// Insert `key` normalised, unless it is absent after normalising.
fn put(m: &mut Map<String, Value>, key: &str, v: &impl Serialize) {
    let mut v = serde_json::to_value(v).unwrap_or(Value::Null);
    normalize(key, &mut v);
    insert(m, key, v);
}

fn put_list(m: &mut Map<String, Value>, key: &str, items: impl Iterator<Item = Value>) {
    insert(m, key, Value::Array(items.collect()));
}

fn insert(m: &mut Map<String, Value>, key: &str, v: Value) {
    if !is_absent(&v) {
        m.insert(key.to_owned(), v);
    }
}

/// Drop defaults and absent values below `key`, recursively and in place;
/// compare quantities by value. List elements are kept, also empty ones, so
/// positions (env order, args) still count.
fn normalize(key: &str, v: &mut Value) {
    match v {
        Value::Object(_) if is_data_map(key) => {}
        Value::Object(m) if is_quantity_map(key) => m.values_mut().for_each(canonical_quantity),
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                if is_quantity(k) {
                    canonical_quantity(v);
                } else {
                    normalize(k, v);
                }
            }
            let defaults = defaults_below(key);
            // An image volume's pullPolicy defaults from its reference's tag.
            let pull_default = (key == "image")
                .then(|| m.get("reference").and_then(Value::as_str))
                .flatten()
                .map(image_pull_default);
            m.retain(|k, v| {
                let default = match k.as_str() {
                    // `resourceFieldRef.divisor` defaults to "0" (meaning 1).
                    "divisor" => v.as_str() == Some(ZERO_QUANTITY),
                    "pullPolicy" => pull_default.is_some() && v.as_str() == pull_default,
                    _ => defaults.iter().any(|(d, value)| d == k && value.matches(v)),
                };
                !default && !is_absent(v)
            });
        }
        // The elements of a list take the list's key as their parent.
        Value::Array(a) => a.iter_mut().for_each(|e| normalize(key, e)),
        _ => {}
    }
}

/// The pull policy the API server gives an image reference
/// (SetDefaults_Volume): `Always` for `:latest` or no tag nor digest,
/// `IfNotPresent` otherwise.
fn image_pull_default(reference: &str) -> &'static str {
    let (name, digest) = match reference.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (reference, None),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    match (last.split_once(':').map(|(_, tag)| tag), digest) {
        (Some("latest"), _) | (None, None) => "Always",
        _ => "IfNotPresent",
    }
}

fn is_absent(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// A quantity as its value in nano-units, so every spelling the API server
/// might canonicalise (`0.5Gi`, `512Mi`, `536870912`) projects alike.
/// Anything unparseable is kept as written.
fn canonical_quantity(v: &mut Value) {
    let nanos = match v {
        Value::String(s) => parse_quantity_nanos(s),
        Value::Number(n) => n
            .as_i64()
            .and_then(|i| i128::from(i).checked_mul(1_000_000_000)),
        _ => None,
    };
    if let Some(n) = nanos {
        *v = Value::String(format!("{n}n"));
    }
}

/// A zero quantity, as [`canonical_quantity`] writes it.
const ZERO_QUANTITY: &str = "0n";

/// Value of a Kubernetes quantity (`<sign><digits>[.<digits>]<suffix>`) in
/// nano-units, or None when it is malformed, finer than a nano-unit, or too
/// large.
fn parse_quantity_nanos(s: &str) -> Option<i128> {
    let s = s.trim();
    let (neg, s) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let num_len = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(num_len);
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
        return None;
    }
    // mantissa * 10^exp10 * 2^exp2
    let mut mantissa: i128 = 0;
    for c in int.bytes().chain(frac.bytes()) {
        mantissa = mantissa
            .checked_mul(10)?
            .checked_add(i128::from(c - b'0'))?;
    }
    let mut exp10: i32 = 9 - i32::try_from(frac.len()).ok()?;
    let mut exp2: u32 = 0;
    match suffix {
        "" => {}
        "n" => exp10 -= 9,
        "u" => exp10 -= 6,
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        "Ki" => exp2 = 10,
        "Mi" => exp2 = 20,
        "Gi" => exp2 = 30,
        "Ti" => exp2 = 40,
        "Pi" => exp2 = 50,
        "Ei" => exp2 = 60,
        e if e.starts_with(['e', 'E']) => {
            let x: i32 = e[1..].parse().ok()?;
            if x.abs() > 40 {
                return None;
            }
            exp10 += x;
        }
        _ => return None,
    }
    mantissa = mantissa.checked_mul(1i128.checked_shl(exp2)?)?;
    while exp10 > 0 {
        mantissa = mantissa.checked_mul(10)?;
        exp10 -= 1;
    }
    while exp10 < 0 {
        if mantissa % 10 != 0 {
            return None;
        }
        mantissa /= 10;
        exp10 += 1;
    }
    Some(if neg { -mantissa } else { mantissa })
}

#[cfg(test)]
mod tests {
    use super::parse_quantity_nanos as q;

    #[test]
    fn quantities_by_value() {
        assert_eq!(q("0"), Some(0));
        assert_eq!(q("0.5Gi"), q("512Mi"));
        assert_eq!(q("1024Ki"), q("1Mi"));
        assert_eq!(q("0.001"), q("1m"));
        assert_eq!(q("1e3"), q("1k"));
        assert_eq!(q("1000000000"), q("1G"));
        assert_eq!(q("-1"), Some(-1_000_000_000));
        assert_eq!(q("1.5"), Some(1_500_000_000));
        for bad in [
            "",
            ".",
            "1..2",
            "1x",
            "1e",
            "0.0000000001",
            "9e99",
            "999999999999999Ei",
            "-",
        ] {
            assert_eq!(q(bad), None, "{bad}");
        }
    }
}
