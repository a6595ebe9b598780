//! Image references parsed the way the node parses them.
//!
//! kubelet (`pkg/util/parsers.ParseImageName`) and containerd's CRI plugin
//! both call `ParseNormalizedNamed` of Go's `github.com/distribution/reference`
//! to decide which registry an image is pulled from. Approving an image by
//! registry is only sound if cronwarden reads a reference exactly as they
//! do, so this module follows that package (regexp.go and normalize.go)
//! rule by rule:
//!
//! - the grammar of `referencePat`, with Go's ASCII-only `\w` in tags;
//! - `splitDockerDomain`: the first path element is a registry when it is
//!   `localhost`, contains `.` or `:`, or is not all lowercase (`Foo/bar`
//!   is pulled from the host `Foo`, not from Docker Hub); `index.docker.io`
//!   is `docker.io`; Docker Hub names without a `/` get `library/`;
//! - a 64-hex string alone is rejected (an image id, not a name); the
//!   repository part must be lowercase; the name is at most 255
//!   characters, registry included;
//! - a digest must be one go-digest knows: `sha256`, `sha384` or `sha512`,
//!   its hex lowercase and of the algorithm's length;
//! - IPv6 registries in brackets (`[fd00::1]:5000/app`).
//!
//! Why not the `oci-spec` crate, which the controller used before: its
//! grammar differs from the node's in three ways that matter here. It
//! reads `Foo/bar` as `docker.io/Foo/bar` while the node pulls `bar` from
//! the host `Foo` (an allowed-images pattern for Docker Hub would approve
//! an image from any single-label host). It rejects IPv6 registries. And
//! its tag class is Unicode `\w`, which the regex crate compiles to 7.2 MB
//! (the `{0,127}` repetition of every Unicode word character): a tenth of
//! the controller's memory goal, resident for the process's life. The
//! grammar here, ASCII as in Go, compiles to about 30 KB. `tests/normalize.rs`
//! checks this parser against `oci-spec` on generated references where the
//! two grammars agree, and against the Go package's own cases where they do
//! not.

use std::sync::LazyLock;

use regex::Regex;

/// `NameTotalLengthMax` of the Go package.
const NAME_TOTAL_LENGTH_MAX: usize = 255;
const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";

/// regexp.go's productions, spelled as there. Go's `\w` is ASCII.
const ALPHANUMERIC: &str = "[a-z0-9]+";
const SEPARATOR: &str = "(?:[._]|__|[-]+)";
const DOMAIN_NAME_COMPONENT: &str = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const OPTIONAL_PORT: &str = "(?::[0-9]+)?";
const TAG: &str = "[0-9A-Za-z_][0-9A-Za-z_.-]{0,127}";
const DIGEST: &str = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][[:xdigit:]]{32,}";
const IPV6_ADDRESS: &str = r"\[(?:[a-fA-F0-9:]+)\]";

fn domain_and_port() -> String {
    let domain_name = format!("{DOMAIN_NAME_COMPONENT}(?:\\.{DOMAIN_NAME_COMPONENT})*");
    format!("(?:{domain_name}|{IPV6_ADDRESS}){OPTIONAL_PORT}")
}

fn remote_name() -> String {
    let path_component = format!("{ALPHANUMERIC}(?:{SEPARATOR}{ALPHANUMERIC})*");
    format!("{path_component}(?:/{path_component})*")
}

/// `referencePat`: name, tag, digest.
static REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
    let name = format!("(?:{}/)?{}", domain_and_port(), remote_name());
    Regex::new(&format!("^({name})(?::({TAG}))?(?:@({DIGEST}))?$"))
        .expect("the reference grammar compiles")
});

/// `anchoredNamePat`: a name's domain and path.
static NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        "^(?:({})/)?({})$",
        domain_and_port(),
        remote_name()
    ))
    .expect("the name grammar compiles")
});

/// A reference as the node reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// The registry (`docker.io` for Docker Hub), never empty.
    pub domain: String,
    /// The repository path within the registry.
    pub path: String,
    /// The tag as written; none is filled in.
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Reference {
    /// `registry/path`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }
}

/// Why a string is not an image reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// Does not match the reference grammar, or names no registry.
    Format,
    /// 64 hex characters: an image id, not a name.
    Identifier,
    /// Uppercase in the repository part.
    Uppercase,
    /// Name longer than 255 characters.
    NameTooLong,
    /// A digest algorithm go-digest does not know, or a malformed value.
    Digest,
}

/// `ParseNormalizedNamed`.
pub fn parse_normalized(s: &str) -> Result<Reference, Invalid> {
    if s.len() == 64 && s.bytes().all(|b| matches!(b, b'a'..=b'f' | b'0'..=b'9')) {
        return Err(Invalid::Identifier);
    }
    let (domain, remainder) = split_docker_domain(s);
    let remote = remainder.split(':').next().unwrap_or(&remainder);
    if remote.to_lowercase() != remote {
        return Err(Invalid::Uppercase);
    }
    let full = format!("{domain}/{remainder}");
    let caps = REFERENCE.captures(&full).ok_or(Invalid::Format)?;
    let name = caps.get(1).map_or("", |m| m.as_str());
    if name.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(Invalid::NameTooLong);
    }
    let digest = caps.get(3).map(|m| m.as_str());
    if let Some(d) = digest {
        validate_digest(d)?;
    }
    let parts = NAME.captures(name).ok_or(Invalid::Format)?;
    let domain = parts.get(1).map_or("", |m| m.as_str());
    if domain.is_empty() {
        // Go leaves the registry empty when the first element has a `.`
        // but is no valid host (`a.b_c/app`); containerd's resolver then
        // takes that element as the host anyway. No registry can be
        // approved for it: treated as not a reference (fail closed).
        return Err(Invalid::Format);
    }
    Ok(Reference {
        domain: domain.to_owned(),
        path: parts.get(2).map_or("", |m| m.as_str()).to_owned(),
        tag: caps.get(2).map(|m| m.as_str().to_owned()),
        digest: digest.map(str::to_owned),
    })
}

/// `splitDockerDomain`.
fn split_docker_domain(name: &str) -> (String, String) {
    let Some((maybe_domain, maybe_remote)) = name.split_once('/') else {
        return (
            DEFAULT_DOMAIN.into(),
            format!("{OFFICIAL_REPO_PREFIX}{name}"),
        );
    };
    let (domain, remote) = if maybe_domain == "localhost"
        || maybe_domain.contains(['.', ':'])
        || maybe_domain.to_lowercase() != maybe_domain
    {
        let d = if maybe_domain == LEGACY_DEFAULT_DOMAIN {
            DEFAULT_DOMAIN
        } else {
            maybe_domain
        };
        (d, maybe_remote.to_owned())
    } else {
        (DEFAULT_DOMAIN, name.to_owned())
    };
    if domain == DEFAULT_DOMAIN && !remote.contains('/') {
        return (domain.into(), format!("{OFFICIAL_REPO_PREFIX}{remote}"));
    }
    (domain.into(), remote)
}

/// go-digest's `Digest.Validate` for the algorithms it registers.
fn validate_digest(d: &str) -> Result<(), Invalid> {
    let (algorithm, encoded) = d.split_once(':').ok_or(Invalid::Digest)?;
    let len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(Invalid::Digest),
    };
    if encoded.len() == len
        && encoded
            .bytes()
            .all(|b| matches!(b, b'a'..=b'f' | b'0'..=b'9'))
    {
        Ok(())
    } else {
        Err(Invalid::Digest)
    }
}
