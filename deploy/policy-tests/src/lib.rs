//! Offline checks of `deploy/` that run in `cargo test`.
//!
//! - [`gatekeeper`]: loads the ConstraintTemplates and Constraints in
//!   `deploy/policies/gatekeeper/`, checks that their Rego is in the dialect
//!   Gatekeeper accepts, and evaluates it with [regorus] on Gatekeeper's input shape
//!   (`input.review.object`, `input.parameters`, `data.inventory`).
//! - [`falco`]: checks the structure of `deploy/policies/falco/*.yaml` (required
//!   fields, priorities, that every macro and list a condition names is defined).
//!
//! The `gatekeeper-check` binary applies the constraints to rendered Helm manifests
//! (`scripts/test.sh deploy`).
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

pub mod falco;
pub mod gatekeeper;

/// The repository's `deploy/` directory.
pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// An error reading or interpreting a deploy file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML.
    #[error("{path}: invalid YAML: {source}")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: yaml_serde::Error,
    },
    /// A document lacks a field or has one of the wrong type.
    #[error("{path}: {what}")]
    Shape {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// regorus refused or failed to evaluate a policy.
    #[error("policy {policy}: {message}")]
    Rego {
        /// The ConstraintTemplate's name.
        policy: String,
        /// regorus' message.
        message: String,
    },
}

/// Every YAML document in `path`, as JSON values (empty documents skipped).
pub fn read_yaml_documents(path: &Path) -> Result<Vec<serde_json::Value>, Error> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut documents = Vec::new();
    for document in yaml_serde::Deserializer::from_str(&text) {
        let value = serde_json::Value::deserialize(document).map_err(|source| Error::Yaml {
            path: path.to_owned(),
            source,
        })?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    Ok(documents)
}
