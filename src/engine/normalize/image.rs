//! Image references (SPEC 3.5): normalised before matching, and the
//! patterns baselines approve them with.

use rustc_hash::FxHashMap as HashMap;
use std::sync::{Arc, Mutex};

use super::reference::parse_normalized;

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
    /// Parsed as the node parses it (see [`super::reference`]).
    pub fn parse(raw: &str) -> ImageRef {
        let raw = raw.trim();
        match parse_normalized(raw) {
            Ok(r) => {
                let repository = r.name();
                let mut normalized = repository.clone();
                if let Some(t) = &r.tag {
                    normalized.push(':');
                    normalized.push_str(t);
                }
                if let Some(d) = &r.digest {
                    normalized.push('@');
                    normalized.push_str(d);
                }
                ImageRef {
                    normalized,
                    registry: r.domain,
                    repository,
                    tag: r.tag,
                    digest: r.digest,
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

/// An allowed-image pattern (SPEC 3.5). It is split at its first `/`: the
/// registry part is a glob over the image's registry host (and port), which
/// holds no `/`, so its `*` never reaches into a path
/// (`*.corp.example/*` never approves `ghcr.io/evil/x.corp.example/miner`);
/// the rest is a glob over the repository path, tag and digest, where `*`
/// crosses `/`. A pattern without a registry part is normalised like an
/// image (`busybox*` → `docker.io/library/busybox*`), `*` alone approves
/// every image, and a pattern without tag or digest matches any tag and
/// digest of its repositories. An image that does not parse matches only `*`.
#[derive(Clone, Debug)]
pub struct ImagePattern {
    pub source: String,
    kind: PatternKind,
}

#[derive(Clone, Debug)]
enum PatternKind {
    Any,
    Split {
        registry: Glob,
        path: Glob,
        repository_only: bool,
    },
}

/// Whether the first component of a reference names a registry (Docker's
/// rule: it has a `.` or `:`, is `localhost`, or is not all lowercase; in a
/// pattern also a glob).
fn names_registry(first: &str) -> bool {
    first.contains(['.', ':', '*', '?', '[', '{'])
        || first == "localhost"
        || first.to_lowercase() != first
}

impl ImagePattern {
    pub fn new(pattern: &str) -> Result<ImagePattern, String> {
        let p = pattern.trim();
        if p.is_empty() {
            return Err("empty image pattern".into());
        }
        if p == "*" {
            return Ok(ImagePattern {
                source: pattern.to_owned(),
                kind: PatternKind::Any,
            });
        }
        let has_meta = p.contains(['*', '?', '[', '{']);
        let last = p.split('@').next().unwrap_or(p);
        let last = last.rsplit('/').next().unwrap_or(last);
        let repository_only = !p.contains('@') && !last.contains(':');
        // Literal patterns get the same expansion as images (`busybox` →
        // `docker.io/library/busybox`); globs get Docker Hub's defaults.
        let text = if !has_meta {
            let r = ImageRef::parse(p);
            if r.valid { r.normalized } else { p.to_owned() }
        } else {
            match p.split_once('/') {
                None => format!("docker.io/library/{p}"),
                Some((first, _)) if !names_registry(first) => format!("docker.io/{p}"),
                Some(_) => p.to_owned(),
            }
        };
        let bad = |e: String| format!("invalid image pattern {pattern:?}: {e}");
        let Some((registry, path)) = text.split_once('/') else {
            return Err(bad("no repository after the registry".into()));
        };
        Ok(ImagePattern {
            source: pattern.to_owned(),
            kind: PatternKind::Split {
                registry: Glob::new(registry).map_err(bad)?,
                path: Glob::new(path).map_err(bad)?,
                repository_only,
            },
        })
    }

    pub fn matches(&self, image: &ImageRef) -> bool {
        let PatternKind::Split {
            registry,
            path,
            repository_only,
        } = &self.kind
        else {
            return true;
        };
        if !image.valid || !registry.is_match(&image.registry) {
            return false;
        }
        let skip = image.registry.len() + 1;
        let repo = image.repository.get(skip..).unwrap_or_default();
        if *repository_only && path.is_match(repo) {
            return true;
        }
        if path.is_match(image.normalized.get(skip..).unwrap_or_default()) {
            return true;
        }
        // `repo:tag` for an image that also has a digest, so `repo:1.0`
        // matches `repo:1.0@sha256:…`.
        match (&image.tag, &image.digest) {
            (Some(t), Some(_)) => path.is_match(&format!("{repo}:{t}")),
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
