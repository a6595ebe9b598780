//! The rule catalogue is the one place a rule is declared: everything else
//! (README table, CRD schemas, parsing, SARIF metadata) follows from it.

use std::path::Path;

use cronwarden::api::catalogue::markdown_table;
use cronwarden::api::{Rule, RuleKind};

const BEGIN: &str = "<!-- rule-catalogue:begin (generated from src/api/catalogue.rs by tests/catalogue.rs; UPDATE_README=1 to rewrite) -->\n";
const END: &str = "<!-- rule-catalogue:end -->";

#[test]
fn readme_rule_table_is_the_catalogue() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let start = readme
        .find(BEGIN)
        .expect("README has the rule-catalogue markers")
        + BEGIN.len();
    let end = readme[start..]
        .find(END)
        .expect("README has the end marker")
        + start;
    let want = markdown_table();
    if readme[start..end] != want {
        if std::env::var_os("UPDATE_README").is_some() {
            let updated = format!("{}{}{}", &readme[..start], want, &readme[end..]);
            std::fs::write(&path, updated).unwrap();
            return;
        }
        panic!(
            "README rule table differs from the catalogue; run UPDATE_README=1 cargo test --test catalogue\n--- README\n{}\n--- catalogue\n{}",
            &readme[start..end],
            want
        );
    }
}

#[test]
fn ids_round_trip_and_are_unique() {
    let mut seen = std::collections::BTreeSet::new();
    for r in Rule::ALL {
        assert_eq!(r.as_str().parse::<Rule>().unwrap(), *r);
        assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        assert!(seen.insert(r.as_str()), "duplicate rule id {r}");
        let i = r.info();
        assert!(!i.title.is_empty() && !i.description.is_empty() && !i.tactic.is_empty());
        // A namespace baseline may only ever relax heuristics (SPEC 2.2).
        assert!(
            !i.namespace_may_relax || i.kind == RuleKind::Heuristic,
            "{r}"
        );
    }
    assert!("NoSuchRule".parse::<Rule>().is_err());
}

#[test]
fn crd_schemas_follow_the_catalogue() {
    let crds = cronwarden::crd::crds_yaml();
    let v: serde_json::Value = serde_saphyr::from_str(
        crds.split("\n---\n")
            .find(|d| d.contains("kind: CronJobBaseline\n"))
            .unwrap(),
    )
    .unwrap();
    let entry = &v["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["approved"]["items"]["properties"];
    let waive: Vec<&str> = entry["waive"]["items"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    let heuristics: Vec<&str> = Rule::waivable().map(Rule::as_str).collect();
    assert_eq!(waive, heuristics);
    let overrides = entry["severityOverrides"]["properties"]
        .as_object()
        .unwrap();
    assert_eq!(overrides.len(), Rule::ALL.len());
    for r in Rule::ALL {
        assert!(overrides.contains_key(r.as_str()), "{r}");
    }
}

/// SPEC 3 / issue 10: a rule is named in one catalogue row and the table
/// row of its check, not in eight places.
#[test]
fn rules_are_named_in_few_places() {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    let mut files = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    for rule in [
        Rule::NotInBaseline,
        Rule::ScheduleNotApproved,
        Rule::ImageNotApproved,
        Rule::HighFrequencySchedule,
        Rule::SuspiciousCommand,
        Rule::HistoryErasure,
    ] {
        let id = rule.as_str();
        let lines = files
            .iter()
            .flat_map(|f| f.lines())
            .map(str::trim)
            .filter(|l| !l.starts_with("//"))
            .filter(|l| {
                l.match_indices(id).any(|(i, _)| {
                    let before = l[..i].chars().next_back();
                    let after = l[i + id.len()..].chars().next();
                    !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                        && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
                })
            })
            .count();
        assert!(lines <= 4, "{id} is named on {lines} code lines in src/");
    }
}
