//! Normalisers (SPEC 3.3): examples, server-defaulted fixtures, and
//! properties over arbitrary input (no panic, idempotent).

use cronwarden::engine::CronJobView;
use cronwarden::engine::normalize::*;
use k8s_openapi::api::batch::v1::CronJob;
use proptest::prelude::*;
use std::time::Duration;

fn fixture(name: &str) -> CronJob {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let cj: CronJob = if name.ends_with(".json") {
        serde_json::from_str(&text).unwrap()
    } else {
        serde_saphyr::from_str(&text).unwrap()
    };
    cj
}

fn pod(cj: &CronJob) -> Option<&k8s_openapi::api::core::v1::PodSpec> {
    cj.spec
        .job_template
        .spec
        .as_ref()
        .and_then(|j| j.template.spec.as_ref())
}

#[test]
fn template_hash_ignores_server_defaults() {
    let manifest = fixture("cronjob-manifest.yaml");
    let served = fixture("cronjob-as-served.yaml");
    let a = template_hash(pod(&manifest));
    assert_eq!(a, template_hash(pod(&served)));
    assert!(a.starts_with("sha256:") && a.len() == 71, "{a}");
    // The schedule patch is outside the template: still equal. A real
    // change inside it is not.
    let mut changed = served.clone();
    let p = changed
        .spec
        .job_template
        .spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap();
    p.containers[0].args = Some(vec!["--nightly".into(), "--all".into()]);
    assert_ne!(a, template_hash(pod(&changed)));
    let mut sa = served;
    sa.spec
        .job_template
        .spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .service_account_name = Some("admin".into());
    assert_ne!(a, template_hash(pod(&sa)));
}

#[test]
fn template_hash_is_order_independent_for_containers() {
    let mut cj = fixture("cronjob-manifest.yaml");
    let p = cj
        .spec
        .job_template
        .spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap();
    let mut second = p.containers[0].clone();
    second.name = "aaa".into();
    p.containers.push(second);
    let h1 = template_hash(pod(&cj));
    let p = cj
        .spec
        .job_template
        .spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap();
    p.containers.reverse();
    assert_eq!(h1, template_hash(pod(&cj)));
}

#[test]
fn spec_managers_from_managed_fields() {
    let served = CronJobView::from(fixture("cronjob-as-served.yaml"));
    let names: Vec<_> = served
        .managers
        .iter()
        .map(|m| (m.manager.as_str(), m.operation.as_str()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("kubectl-client-side-apply", "Update"),
            ("kubectl-patch", "Update")
        ]
    );
    let ssa = CronJobView::from(fixture("cronjob-ssa-then-set-image.json"));
    let names: Vec<_> = ssa
        .managers
        .iter()
        .map(|m| (m.manager.as_str(), m.operation.as_str()))
        .collect();
    assert_eq!(
        names,
        vec![("argocd-controller", "Apply"), ("kubectl-set", "Update")]
    );
    assert!(ssa.managers[0].time.is_some());
}

#[test]
fn images_normalise() {
    for (raw, want) in [
        ("busybox", "docker.io/library/busybox"),
        ("busybox:1.36", "docker.io/library/busybox:1.36"),
        ("library/busybox", "docker.io/library/busybox"),
        (
            "index.docker.io/library/busybox:1",
            "docker.io/library/busybox:1",
        ),
        ("bitnami/kubectl:1.30", "docker.io/bitnami/kubectl:1.30"),
        ("localhost/x", "localhost/x"),
        (
            "registry.example.com:5000/a/b:c",
            "registry.example.com:5000/a/b:c",
        ),
        (
            "ghcr.io/o/r@sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
            "ghcr.io/o/r@sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
        ),
        ("Not A Reference", "Not A Reference"),
    ] {
        assert_eq!(normalize_image(raw), want, "{raw}");
    }
    assert!(is_mutable(&ImageRef::parse("busybox")));
    assert!(is_mutable(&ImageRef::parse("busybox:latest")));
    assert!(!is_mutable(&ImageRef::parse("busybox:stable")));
    assert!(!is_mutable(&ImageRef::parse("busybox:latest-gpu")));
}

/// Where oci-spec (the parser used before) and the node differ, the node
/// wins: cases from Go's distribution/reference (regexp.go, normalize.go),
/// which kubelet and containerd call.
#[test]
fn images_parse_as_the_node_does() {
    let hex64 = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";
    // A first element that is not all lowercase is a registry host.
    let r = ImageRef::parse("Evil/miner:1");
    assert!(r.valid);
    assert_eq!(r.registry, "Evil");
    assert_eq!(r.normalized, "Evil/miner:1");
    assert!(!ImagePattern::new("docker.io/*").unwrap().matches(&r));
    assert!(ImagePattern::new("Evil/*").unwrap().matches(&r));
    // ... while uppercase after the registry is no reference at all.
    assert!(!ImageRef::parse("docker.io/Evil/miner").valid);
    assert!(!ImageRef::parse("Busybox").valid);
    // IPv6 registries.
    let r = ImageRef::parse("[fd00::1]:5000/team/app:2");
    assert!(r.valid);
    assert_eq!(r.registry, "[fd00::1]:5000");
    assert_eq!(r.repository, "[fd00::1]:5000/team/app");
    assert_eq!(r.tag.as_deref(), Some("2"));
    // Go's `\w` is ASCII: a tag with other letters is not a reference.
    assert!(!ImageRef::parse("busybox:v\u{0131}").valid);
    assert!(!ImageRef::parse("busybox:\u{ff56}1").valid);
    // An image id is not a name.
    assert!(!ImageRef::parse(hex64).valid);
    assert!(ImageRef::parse(&format!("{hex64}:1")).valid);
    // Digests go-digest knows, lowercase hex of the right length.
    assert!(ImageRef::parse(&format!("busybox@sha256:{hex64}")).valid);
    assert!(!ImageRef::parse(&format!("busybox@sha256:{}", hex64.to_uppercase())).valid);
    assert!(!ImageRef::parse(&format!("busybox@sha256:{}", &hex64[..63])).valid);
    assert!(!ImageRef::parse(&format!("busybox@md5:{}", &hex64[..32])).valid);
    assert!(ImageRef::parse(&format!("busybox@sha512:{hex64}{hex64}")).valid);
    // 255 characters at most, registry included.
    let path = "a".repeat(255 - "r.io/".len());
    assert!(ImageRef::parse(&format!("r.io/{path}")).valid);
    assert!(!ImageRef::parse(&format!("r.io/{path}a")).valid);
    // A first element with a dot that is no host names no registry: not
    // approvable by any registry pattern.
    let r = ImageRef::parse("a.b_c/app");
    assert!(!r.valid);
    assert!(!ImagePattern::new("*/app").unwrap().matches(&r));
    // Familiar names.
    assert_eq!(normalize_image("localhost:5000/x"), "localhost:5000/x");
    assert_eq!(normalize_image("index.docker.io/x"), "docker.io/library/x");
    assert_eq!(normalize_image("docker.io/x/y"), "docker.io/x/y");
    assert_eq!(
        normalize_image("example.com:5000"),
        "docker.io/library/example.com:5000"
    );
    assert_eq!(normalize_image("a__b--c.d/e"), "a__b--c.d/e");
}

#[test]
fn image_patterns() {
    let m = |p: &str, i: &str| ImagePattern::new(p).unwrap().matches(&ImageRef::parse(i));
    assert!(m("docker.io/library/busybox", "busybox"));
    assert!(m("busybox", "busybox:1.36"));
    assert!(m(
        "busybox:1.36",
        "busybox:1.36@sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
    ));
    assert!(!m("busybox:1.36", "busybox:1.37"));
    assert!(m(
        "registry.example.com/payments/*",
        "registry.example.com/payments/cache/warm:2"
    ));
    assert!(!m(
        "registry.example.com/payments/*",
        "registry.example.com/payroll/x:1"
    ));
    assert!(!m("busybox", "busyboxx:1"));
    assert!(ImagePattern::new("").is_err());
}

/// SPEC 3.5: the registry part of a pattern never lets `*` cross `/`.
#[test]
fn image_pattern_registry_part_never_crosses_into_a_path() {
    let m = |p: &str, i: &str| ImagePattern::new(p).unwrap().matches(&ImageRef::parse(i));
    assert!(m("*.corp.example/*", "registry.corp.example/shop/sync:1"));
    assert!(m("*.corp.example/*", "registry.corp.example/x"));
    for evil in [
        "ghcr.io/evil/x.corp.example/miner",
        "ghcr.io/evil/x.corp.example/miner:1",
        "evil.io/registry.corp.example/x@sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
        "registry.corp.example.evil.io/x",
        "corp.example/x",
    ] {
        assert!(!m("*.corp.example/*", evil), "{evil}");
    }
    // Any registry, a fixed path.
    assert!(m("*/team/app", "ghcr.io/team/app:2"));
    assert!(!m("*/team/app", "ghcr.io/evil/team/app:2"));
    // `*` alone approves everything, even what does not parse.
    for i in ["busybox", "ghcr.io/x/y:1", "NOT A REF"] {
        assert!(m("*", i), "{i}");
    }
    // Unparseable images match no other pattern (fail closed).
    assert!(!m("*/*", "NOT A REF"));
    // No registry part: normalised like an image.
    assert!(m("busybox*", "busybox:1.36"));
    assert!(m("busybox*", "docker.io/library/busybox-extras:1"));
    assert!(!m("busybox*", "ghcr.io/library/busybox:1"));
    assert!(m("myorg/*", "myorg/tool:1"));
    assert!(!m("myorg/*", "quay.io/myorg/tool:1"));
    assert!(m("localhost:5000/*", "localhost:5000/a/b:1"));
}

#[test]
fn schedules_normalise_and_intervals() {
    assert_eq!(normalize_schedule("@hourly"), "0 * * * *");
    assert_eq!(normalize_schedule("  0   2 * *  * "), "0 2 * * *");
    assert_eq!(normalize_schedule("@annually"), "0 0 1 1 *");
    // Descriptors are case-sensitive in Kubernetes: a rejected schedule
    // is left as written.
    assert_eq!(normalize_schedule("@ANNUALLY"), "@ANNUALLY");
    let min = |s: &str| min_interval(s).unwrap().map(|d| d.as_secs() / 60);
    assert_eq!(min("*/2 * * * *"), Some(2));
    assert_eq!(min("*/5 * * * *"), Some(5));
    assert_eq!(min("* */6 * * *"), Some(1));
    assert_eq!(min("@hourly"), Some(60));
    assert_eq!(min("@daily"), Some(1440));
    assert_eq!(min("0 9 * * 1-5"), Some(1440));
    assert_eq!(min("0 9 * * 1"), Some(7 * 1440));
    assert_eq!(min("0 0 1 * *"), Some(28 * 1440));
    assert_eq!(min("0 23 * * *"), Some(1440));
    assert_eq!(min("30 23 * * 0,1"), Some(1440));
    assert_eq!(min("0,58 * * * *"), Some(2));
    assert_eq!(min("59 23 31 12 *"), Some(365 * 1440));
    assert_eq!(
        min_interval("@every 90s").unwrap(),
        Some(Duration::from_secs(90))
    );
    assert!(min_interval("61 * * * *").is_err());
    assert!(min_interval("* * * *").is_err());
    assert!(
        min_interval("0 0 * * * *").is_err(),
        "seconds are not a CronJob field"
    );
    assert!(min_interval("").is_err());
    assert_eq!(min_interval("0 0 30 2 *").unwrap(), None, "never fires");
}

#[test]
fn durations() {
    assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
    assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
    assert!(parse_duration("soon").is_err());
    assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn image_normalisation_never_panics_and_is_idempotent(s in "\\PC{0,80}") {
        let once = normalize_image(&s);
        prop_assert_eq!(normalize_image(&once), once.clone());
    }

    #[test]
    fn image_like_strings_normalise_idempotently(
        reg in prop::option::of("[a-z]{1,8}\\.(io|com)(:[0-9]{2,4})?"),
        repo in "[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,2}",
        tag in prop::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,10}"),
    ) {
        let mut s = String::new();
        if let Some(r) = reg { s.push_str(&r); s.push('/'); }
        s.push_str(&repo);
        if let Some(t) = &tag { s.push(':'); s.push_str(t); }
        let r = ImageRef::parse(&s);
        prop_assert!(r.valid, "{} should parse", s);
        prop_assert_eq!(r.tag.as_deref(), tag.as_deref());
        let once = r.normalized.clone();
        prop_assert_eq!(normalize_image(&once), once);
    }

    #[test]
    fn schedule_normalisation_never_panics_and_is_idempotent(s in "\\PC{0,60}") {
        let once = normalize_schedule(&s);
        prop_assert_eq!(normalize_schedule(&once), once);
        let _ = parse_schedule(&s);
    }

    #[test]
    fn intervals_of_cron_like_strings_never_panic(
        fields in prop::collection::vec("(\\*|[0-9]{1,2}|\\*/[0-9]{1,2}|[0-9]{1,2}-[0-9]{1,2}|[0-9]{1,2},[0-9]{1,2})", 5)
    ) {
        let s = fields.join(" ");
        if let Ok(Some(d)) = min_interval(&s) {
            prop_assert!(d >= Duration::from_secs(60));
        }
    }

    /// Against oci-spec on strings over the reference alphabet, outside
    /// the cases where it differs from the node on purpose (see
    /// `images_parse_as_the_node_does`).
    #[test]
    fn images_parse_like_oci_spec_where_both_follow_the_node(
        s in "[a-zA-Z0-9._:/@-]{0,40}|([a-z0-9]{1,6}\\.[a-z]{2,3}(:[0-9]{1,5})?/)?[a-z0-9]{1,6}([._-]{1,2}[a-z0-9]{1,6}){0,2}(/[a-z0-9]{1,6}){0,2}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,12})?(@sha256:[a-f0-9]{64})?"
    ) {
        let first = s.split('/').next().unwrap_or_default();
        let (d, digest) = s.split_once('@').unwrap_or((&s, ""));
        let ours = ImageRef::parse(&s);
        let theirs = <oci_spec::distribution::Reference as std::str::FromStr>::from_str(&s);
        // Where the two differ on purpose, what the node does.
        if s.contains('/') && first.to_lowercase() != first {
            prop_assert!(!ours.valid || ours.registry == first, "{}", s);
            return Ok(());
        }
        if digest.bytes().any(|b| b.is_ascii_uppercase()) || (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())) {
            prop_assert!(!ours.valid, "{}", s);
            return Ok(());
        }
        if first.contains('.') && s.contains('/') && first.contains('_') {
            // No valid host, yet a path for oci-spec: no registry here.
            prop_assert!(!ours.valid, "{}", s);
            return Ok(());
        }
        prop_assume!(d.len() < 200);
        match theirs {
            Ok(r) => {
                prop_assert!(ours.valid, "{} parses in oci-spec", s);
                prop_assert_eq!(&ours.registry, r.registry());
                prop_assert_eq!(&ours.repository, &format!("{}/{}", r.registry(), r.repository()));
                prop_assert_eq!(ours.digest.as_deref(), r.digest());
                if ours.digest.is_none() {
                    prop_assert_eq!(ours.tag.as_deref().unwrap_or("latest"), r.tag().unwrap_or_default());
                } else {
                    prop_assert_eq!(ours.tag.as_deref(), r.tag());
                }
            }
            Err(_) => prop_assert!(!ours.valid, "{} does not parse in oci-spec", s),
        }
    }

    #[test]
    fn patterns_never_panic(p in "\\PC{0,40}", i in "\\PC{0,40}") {
        if let Ok(pat) = ImagePattern::new(&p) {
            let _ = pat.matches(&ImageRef::parse(&i));
        }
    }
}

#[test]
fn view_keeps_what_the_rules_read() {
    let raw = fixture("cronjob-as-served.yaml");
    let hash = template_hash(pod(&raw));
    let v = CronJobView::from(raw);
    assert_eq!(
        (v.namespace.as_str(), v.name.as_str()),
        ("reports", "nightly-report")
    );
    assert_eq!(v.schedule, "0 3 * * *");
    assert_eq!(
        v.labels.get("app.kubernetes.io/name"),
        Some("nightly-report")
    );
    let p = v.pod.as_ref().unwrap();
    assert_eq!(p.service_account, "report-runner");
    assert_eq!(p.containers.len(), 1);
    let c = &p.containers[0];
    assert_eq!(
        c.image.as_deref(),
        Some("registry.example.com/finance/report:1.4.2")
    );
    assert_eq!(c.command, Some(vec!["/bin/report".to_owned()]));
    assert_eq!(c.args, Some(vec!["--nightly".to_owned()]));
    // The only rule needing the whole template gets its hash on arrival.
    assert_eq!(p.template_hash, hash);
    assert_eq!(
        v.images(),
        vec!["registry.example.com/finance/report:1.4.2"]
    );
}

/// The controller keeps one view per CronJob of the cluster: it must stay a
/// projection, not grow back into k8s-openapi's `CronJobSpec` (2.7 KB inline).
#[test]
fn view_stays_small() {
    assert!(std::mem::size_of::<CronJobView>() <= 512);
    // + the `unconfined` and `threats` lists (SPEC 3.2, 3.3): empty for
    // almost every container, 24 bytes each.
    assert!(std::mem::size_of::<cronwarden::engine::ContainerView>() <= 176);
}
