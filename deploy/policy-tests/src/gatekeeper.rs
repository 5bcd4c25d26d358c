//! Gatekeeper ConstraintTemplates evaluated with regorus.
//!
//! Gatekeeper compiles a template's `rego:` as Rego v0 (v1 only through the
//! `code: [{engine: Rego, source: {version: v1}}]` form), allows only imports under
//! `future.` and `data.lib.`, and lets a policy read only `data.inventory` and its
//! libraries. [`Template::dialect_problems`] checks those rules; [`RegoVersion`]
//! selects regorus' parser so a test can evaluate a policy under both.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::{Error, read_yaml_documents};

/// The Rego dialect to parse a policy with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegoVersion {
    /// Rego v0: Gatekeeper's default for `rego:`.
    V0,
    /// Rego v1: Gatekeeper's `source.version: v1`, and OPA 1.x's default.
    V1,
}

/// One ConstraintTemplate.
#[derive(Debug, Clone)]
pub struct Template {
    /// The file it came from.
    pub path: PathBuf,
    /// `metadata.name`.
    pub name: String,
    /// `spec.crd.spec.names.kind`: the kind of its Constraints.
    pub kind: String,
    /// The Rego source of its one target.
    pub rego: String,
}

/// One Constraint.
#[derive(Debug, Clone)]
pub struct Constraint {
    /// Its kind (a template's kind).
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// `spec.match.kinds` as (API group, kind) pairs.
    pub match_kinds: Vec<(String, String)>,
    /// `spec.parameters` (an empty object when absent).
    pub parameters: Value,
}

fn shape(path: &Path, what: impl Into<String>) -> Error {
    Error::Shape {
        path: path.to_owned(),
        what: what.into(),
    }
}

fn string_at<'a>(path: &Path, doc: &'a Value, pointer: &str) -> Result<&'a str, Error> {
    doc.pointer(pointer)
        .and_then(Value::as_str)
        .ok_or_else(|| shape(path, format!("missing string {pointer}")))
}

/// The ConstraintTemplates in `dir` (every `template-*.yaml`, sorted by file name).
pub fn load_templates(dir: &Path) -> Result<Vec<Template>, Error> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| Error::Io {
            path: dir.to_owned(),
            source,
        })?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("template-") && n.ends_with(".yaml"))
        })
        .collect();
    paths.sort();
    let mut templates = Vec::new();
    for path in paths {
        for doc in read_yaml_documents(&path)? {
            if doc["kind"] != "ConstraintTemplate" {
                return Err(shape(&path, "not a ConstraintTemplate"));
            }
            let targets = doc
                .pointer("/spec/targets")
                .and_then(Value::as_array)
                .ok_or_else(|| shape(&path, "missing spec.targets"))?;
            if targets.len() != 1 || targets[0]["target"] != "admission.k8s.gatekeeper.sh" {
                return Err(shape(
                    &path,
                    "expected one admission.k8s.gatekeeper.sh target",
                ));
            }
            templates.push(Template {
                name: string_at(&path, &doc, "/metadata/name")?.to_owned(),
                kind: string_at(&path, &doc, "/spec/crd/spec/names/kind")?.to_owned(),
                rego: string_at(&path, &doc, "/spec/targets/0/rego")?.to_owned(),
                path: path.clone(),
            });
        }
    }
    Ok(templates)
}

/// The Constraints in `path`.
pub fn load_constraints(path: &Path) -> Result<Vec<Constraint>, Error> {
    let mut constraints = Vec::new();
    for doc in read_yaml_documents(path)? {
        if doc["apiVersion"] != "constraints.gatekeeper.sh/v1beta1" {
            return Err(shape(
                path,
                "not a constraints.gatekeeper.sh/v1beta1 object",
            ));
        }
        let mut match_kinds = Vec::new();
        let kinds = doc
            .pointer("/spec/match/kinds")
            .and_then(Value::as_array)
            .ok_or_else(|| shape(path, "missing spec.match.kinds"))?;
        for entry in kinds {
            let groups = entry["apiGroups"].as_array();
            let names = entry["kinds"].as_array();
            let (Some(groups), Some(names)) = (groups, names) else {
                return Err(shape(
                    path,
                    "spec.match.kinds entries need apiGroups and kinds",
                ));
            };
            for group in groups {
                for kind in names {
                    match (group.as_str(), kind.as_str()) {
                        (Some(g), Some(k)) => match_kinds.push((g.to_owned(), k.to_owned())),
                        _ => return Err(shape(path, "apiGroups and kinds must be strings")),
                    }
                }
            }
        }
        constraints.push(Constraint {
            kind: string_at(path, &doc, "/kind")?.to_owned(),
            name: string_at(path, &doc, "/metadata/name")?.to_owned(),
            match_kinds,
            parameters: doc
                .pointer("/spec/parameters")
                .cloned()
                .unwrap_or_else(|| json!({})),
        });
    }
    Ok(constraints)
}

impl Constraint {
    /// Whether `object`'s group and kind are in `spec.match.kinds` (the namespace
    /// selector is not evaluated: callers decide which namespace they model).
    pub fn matches_kind(&self, object: &Value) -> bool {
        let (group, _) = group_version(object);
        let kind = object["kind"].as_str().unwrap_or_default();
        self.match_kinds
            .iter()
            .any(|(g, k)| g == group && k == kind)
    }
}

/// An object's API group and version (`v1` is the core group, "").
fn group_version(object: &Value) -> (&str, &str) {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    api_version.rsplit_once('/').unwrap_or(("", api_version))
}

/// Gatekeeper's input for an admission review of `object`.
pub fn review_input(object: &Value, parameters: &Value) -> Value {
    let (group, version) = group_version(object);
    json!({
        "review": {
            "kind": {"group": group, "version": version, "kind": object["kind"]},
            "name": object.pointer("/metadata/name"),
            "namespace": object.pointer("/metadata/namespace"),
            "operation": "CREATE",
            "object": object,
        },
        "parameters": parameters,
    })
}

/// Gatekeeper's replicated inventory of `objects`:
/// `namespace.<ns>.<apiVersion>.<kind>.<name>` (namespaced objects only).
pub fn inventory(objects: &[Value]) -> Value {
    let mut inventory = json!({"namespace": {}});
    for object in objects {
        let (Some(ns), Some(name), Some(api), Some(kind)) = (
            object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str),
            object.pointer("/metadata/name").and_then(Value::as_str),
            object["apiVersion"].as_str(),
            object["kind"].as_str(),
        ) else {
            continue;
        };
        let slot = &mut inventory["namespace"][ns][api][kind][name];
        *slot = object.clone();
    }
    inventory
}

/// The Pod a workload's controller would create from its Pod template (`None` for
/// objects without one).
pub fn pod_from_template(object: &Value) -> Option<Value> {
    let template = match object["kind"].as_str()? {
        "CronJob" => object.pointer("/spec/jobTemplate/spec/template")?,
        _ => object.pointer("/spec/template")?,
    };
    Some(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("{}-pod", object.pointer("/metadata/name")?.as_str()?),
            "namespace": object.pointer("/metadata/namespace"),
            "labels": template.pointer("/metadata/labels").cloned().unwrap_or_else(|| json!({})),
        },
        "spec": template.get("spec")?,
    }))
}

/// A template's Rego, compiled and ready to evaluate.
#[derive(Clone)]
pub struct Policy {
    name: String,
    query: String,
    engine: regorus::Engine,
}

impl Template {
    /// The Rego `package` name.
    pub fn package(&self) -> Option<&str> {
        self.rego
            .lines()
            .find_map(|line| line.trim().strip_prefix("package "))
            .map(str::trim)
    }

    /// Compiles the Rego under `version`.
    pub fn compile(&self, version: RegoVersion) -> Result<Policy, Error> {
        let rego_error = |message: String| Error::Rego {
            policy: self.name.clone(),
            message,
        };
        let package = self
            .package()
            .ok_or_else(|| rego_error("no package".into()))?;
        let mut engine = regorus::Engine::new();
        engine.set_rego_v0(version == RegoVersion::V0);
        engine
            .add_policy(format!("{}.rego", self.name), self.rego.clone())
            .map_err(|e| rego_error(e.to_string()))?;
        Ok(Policy {
            name: self.name.clone(),
            query: format!("data.{package}.violation"),
            engine,
        })
    }

    /// What Gatekeeper would refuse in this template: a `metadata.name` that is
    /// not the lower-cased kind, imports other than `future.*` and `data.lib.*`
    /// (so no `import rego.v1`), references to `data` other than `data.inventory`
    /// and `data.lib`, and a missing `violation` rule.
    pub fn dialect_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.name != self.kind.to_lowercase() {
            problems.push(format!(
                "metadata.name {} is not the lower-cased kind {}",
                self.name, self.kind
            ));
        }
        let code: Vec<&str> = self.rego.lines().map(strip_comment).collect();
        for line in &code {
            if let Some(import) = line.trim().strip_prefix("import ") {
                let import = import.trim();
                if !(import.starts_with("future.") || import.starts_with("data.lib.")) {
                    problems.push(format!("import {import} is not allowed by Gatekeeper"));
                }
                continue;
            }
            for (at, _) in line.match_indices("data.") {
                let before = line[..at].chars().next_back();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.') {
                    continue;
                }
                let rest = &line[at + "data.".len()..];
                if !(rest.starts_with("inventory") || rest.starts_with("lib.")) {
                    problems.push(format!("reference to {} is not allowed", line[at..].trim()));
                }
            }
        }
        let has_violation = code.iter().any(|line| {
            let line = line.trim_start();
            line.starts_with("violation contains ") || line.starts_with("violation[")
        });
        if !has_violation {
            problems.push("no violation rule".into());
        }
        problems
    }
}

/// A Rego line without its `#` comment (a `#` inside a string is kept).
fn strip_comment(line: &str) -> &str {
    let mut in_string = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => in_string = !in_string,
            '#' if !in_string => return &line[..i],
            _ => {}
        }
    }
    line
}

impl Policy {
    /// The messages of `violation` for an admission review of `object`, sorted.
    pub fn violations(
        &self,
        object: &Value,
        parameters: &Value,
        inventory: &Value,
    ) -> Result<Vec<String>, Error> {
        self.evaluate(&review_input(object, parameters), inventory)
    }

    /// The messages of `violation` for a Gatekeeper `input` document, sorted.
    pub fn evaluate(&self, input: &Value, inventory: &Value) -> Result<Vec<String>, Error> {
        let rego_error = |message: String| Error::Rego {
            policy: self.name.clone(),
            message,
        };
        let mut engine = self.engine.clone();
        engine
            .set_input_json(&input.to_string())
            .map_err(|e| rego_error(e.to_string()))?;
        engine
            .add_data_json(&json!({ "inventory": inventory }).to_string())
            .map_err(|e| rego_error(e.to_string()))?;
        let result = engine
            .eval_rule(self.query.clone())
            .map_err(|e| rego_error(e.to_string()))?;
        let result: Value = result
            .to_json_str()
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .ok_or_else(|| rego_error("violation is not a JSON value".into()))?;
        let entries = result
            .as_array()
            .ok_or_else(|| rego_error(format!("violation is not a set: {result}")))?;
        let mut messages = entries
            .iter()
            .map(|v| {
                v["msg"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| rego_error(format!("violation without msg: {v}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        messages.sort();
        Ok(messages)
    }
}
