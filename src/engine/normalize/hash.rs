//! The security-relevant template hash (SPEC 3.5).

use k8s_openapi::api::core::v1::{Container, PodSpec};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

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
