//! Typed errors. Bad input names where it is (file, document, object,
//! field); settings errors name the setting; controller errors say whether
//! trying again can help.

use std::fmt;
use std::path::PathBuf;

use crate::api::Rule;

/// Where an object came from: `file (document N)`, N counted from 1;
/// document 0 stands for the file as a whole.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Source {
    pub file: String,
    pub document: usize,
    /// Index inside a `List`, when the object was one of its items.
    pub item: Option<usize>,
}

impl Source {
    /// A file as a whole.
    pub fn file(file: impl Into<String>) -> Source {
        Source {
            file: file.into(),
            document: 0,
            item: None,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if self.document == 0 {
            return Ok(());
        }
        write!(f, " (document {}", self.document)?;
        if let Some(i) = self.item {
            write!(f, ", items[{i}]")?;
        }
        f.write_str(")")
    }
}

/// A bad input, named precisely enough to fix it:
/// `file (document N): Kind ns/name: field a.b: what is wrong`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{location}{object}{field}: {message}",
    object = prefixed(": ", self.object.as_deref()),
    field = prefixed(": field ", self.field.as_deref()))]
pub struct InputError {
    pub location: Source,
    /// `Kind namespace/name`, when known.
    pub object: Option<String>,
    pub field: Option<String>,
    pub message: String,
}

impl InputError {
    /// A problem with a document as a whole (not an object in it).
    pub fn document(location: Source, message: impl Into<String>) -> InputError {
        InputError {
            location,
            object: None,
            field: None,
            message: message.into(),
        }
    }

    /// A problem with one field of an object.
    pub fn field(
        location: Source,
        object: impl Into<String>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> InputError {
        InputError {
            location,
            object: Some(object.into()),
            field: Some(field.into()),
            message: message.into(),
        }
    }
}

fn prefixed(prefix: &str, v: Option<&str>) -> String {
    v.map(|v| format!("{prefix}{v}")).unwrap_or_default()
}

/// A setting (flag, environment variable or config file) that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("invalid registry allowlist entry {entry:?}: {why}")]
    Registry { entry: String, why: String },
    #[error("{0} is a baseline rule; only heuristic rules can be disabled")]
    NotDisableable(Rule),
    #[error("{}: {why}", path.display())]
    ConfigFile { path: PathBuf, why: String },
    #[error("{}: {field}: {why}", path.display())]
    ConfigField {
        path: PathBuf,
        field: &'static str,
        why: String,
    },
}

/// A request to the API server that failed, after the retries the
/// publisher makes itself.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("{action} {object}: {source}")]
    Api {
        action: &'static str,
        object: String,
        #[source]
        source: kube::Error,
    },
    /// This replica may not write: its Lease may lapse before the write lands.
    #[error("{action} {object}: not leading (the Lease may be held by another replica)")]
    NotLeading {
        action: &'static str,
        object: String,
    },
    /// Enforcement's rate cap (SPEC 6) is reached; the suspension waits.
    #[error("suspend {object}: enforcement rate cap reached; will retry")]
    RateCapped { object: String },
}

impl ControllerError {
    /// Whether the next reconcile may succeed where this one failed
    /// (conflicts, throttling, server errors, broken connections), as
    /// opposed to a request the server will refuse again (403, 422).
    pub fn is_retryable(&self) -> bool {
        match self {
            ControllerError::Api { source, .. } => retryable(source),
            ControllerError::NotLeading { .. } | ControllerError::RateCapped { .. } => true,
        }
    }
}

/// Conflicts, throttling and server errors are worth another try.
pub fn retryable(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 409 || s.code == 429 || s.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_error_names_file_document_object_and_field() {
        let e = InputError::field(
            Source {
                file: "a.yaml".into(),
                document: 2,
                item: Some(1),
            },
            "CronJob x/y",
            "spec.schedule",
            "is required",
        );
        assert_eq!(
            e.to_string(),
            "a.yaml (document 2, items[1]): CronJob x/y: field spec.schedule: is required"
        );
        let whole = InputError::document(Source::file("b.yaml"), "cannot read: denied");
        assert_eq!(whole.to_string(), "b.yaml: cannot read: denied");
    }

    #[test]
    fn only_transient_api_errors_are_retryable() {
        let api = |code: u16| ControllerError::Api {
            action: "apply",
            object: "CronJobFinding x/y".into(),
            source: kube::Error::Api(
                kube::core::Status::failure("no", "Reason")
                    .with_code(code)
                    .boxed(),
            ),
        };
        for code in [409, 429, 500, 503] {
            assert!(api(code).is_retryable(), "{code}");
        }
        for code in [400, 403, 404, 422] {
            assert!(!api(code).is_retryable(), "{code}");
        }
    }
}
