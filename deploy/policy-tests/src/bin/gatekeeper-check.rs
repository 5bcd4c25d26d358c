//! Applies deploy/policies/gatekeeper/constraints.yaml to rendered manifests, as
//! Gatekeeper would in a namespace labelled for every constraint
//! (palisade-policy=enforced, palisade-environment=production).
//!
//! Usage: `gatekeeper-check [--expect CONSTRAINT]... MANIFEST...`
//!
//! Workloads are checked as themselves and as the Pod their controller would
//! create; NetworkPolicies in the same file form the inventory. One line per
//! constraint and file; with `--expect`, that constraint must find a violation
//! (the profile is known to break it, e.g. an image by tag in development).
//! Exits 1 if any line fails.

use std::path::PathBuf;
use std::process::ExitCode;

use palisade_deploy_tests::gatekeeper::{
    RegoVersion, inventory, load_constraints, load_templates, pod_from_template,
};
use palisade_deploy_tests::{Error, deploy_dir, read_yaml_documents};

fn main() -> ExitCode {
    let mut expected = Vec::new();
    let mut manifests = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--expect" {
            match args.next() {
                Some(name) => expected.push(name),
                None => {
                    eprintln!("--expect needs a constraint name");
                    return ExitCode::FAILURE;
                }
            }
        } else {
            manifests.push(PathBuf::from(arg));
        }
    }
    if manifests.is_empty() {
        eprintln!("usage: gatekeeper-check [--expect CONSTRAINT]... MANIFEST...");
        return ExitCode::FAILURE;
    }
    match run(&expected, &manifests) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("FAIL gatekeeper: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(expected: &[String], manifests: &[PathBuf]) -> Result<bool, Error> {
    let dir = deploy_dir().join("policies/gatekeeper");
    let templates = load_templates(&dir)?;
    let constraints = load_constraints(&dir.join("constraints.yaml"))?;
    let mut all_ok = true;
    for manifest in manifests {
        let objects = read_yaml_documents(manifest)?;
        let inventory = inventory(&objects);
        let mut candidates = objects.clone();
        candidates.extend(objects.iter().filter_map(pod_from_template));
        for constraint in &constraints {
            let template = templates
                .iter()
                .find(|t| t.kind == constraint.kind)
                .ok_or_else(|| Error::Rego {
                    policy: constraint.name.clone(),
                    message: format!("no template for kind {}", constraint.kind),
                })?;
            let v0 = template.compile(RegoVersion::V0)?;
            let v1 = template.compile(RegoVersion::V1)?;
            let mut found = Vec::new();
            let mut checked = 0;
            for object in candidates.iter().filter(|o| constraint.matches_kind(o)) {
                checked += 1;
                let messages = v0.violations(object, &constraint.parameters, &inventory)?;
                if messages != v1.violations(object, &constraint.parameters, &inventory)? {
                    return Err(Error::Rego {
                        policy: template.name.clone(),
                        message: "Rego v0 and v1 disagree".into(),
                    });
                }
                let name = describe(object);
                found.extend(messages.into_iter().map(|m| format!("{name}: {m}")));
            }
            let expect = expected.contains(&constraint.name);
            let ok = checked > 0 && found.is_empty() != expect;
            all_ok &= ok;
            let verdict = match (ok, expect) {
                (true, true) => "violation expected and found",
                (true, false) => "no violation",
                (false, _) if checked == 0 => "no object of a matched kind",
                (false, true) => "expected a violation, found none",
                (false, false) => "violations",
            };
            println!(
                "{} gatekeeper {} {}: {} objects, {verdict}",
                if ok { "PASS" } else { "FAIL" },
                constraint.name,
                manifest.display(),
                checked,
            );
            if !ok || expect {
                for message in &found {
                    println!("    {message}");
                }
            }
        }
    }
    Ok(all_ok)
}

fn describe(object: &serde_json::Value) -> String {
    format!(
        "{}/{}",
        object["kind"].as_str().unwrap_or("?"),
        object
            .pointer("/metadata/name")
            .and_then(|n| n.as_str())
            .unwrap_or("?")
    )
}
