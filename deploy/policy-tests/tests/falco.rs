//! Structure of deploy/policies/falco/palisade-gateway-rules.yaml, its agreement
//! with the chart (volumes, ports), and that the checker catches broken files.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use palisade_deploy_tests::deploy_dir;
use palisade_deploy_tests::falco::check;

fn rules_text() -> String {
    std::fs::read_to_string(deploy_dir().join("policies/falco/palisade-gateway-rules.yaml"))
        .unwrap()
}

fn chart_file(name: &str) -> String {
    std::fs::read_to_string(deploy_dir().join("helm/palisade-gateway").join(name)).unwrap()
}

/// The items of list `name` in the shipped rules, as strings.
fn list_items(name: &str) -> Vec<String> {
    let items: serde_json::Value = yaml_serde::from_str(&rules_text()).unwrap();
    let list = items
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["list"] == name)
        .unwrap_or_else(|| panic!("no list {name}"));
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
        .collect()
}

#[test]
fn shipped_rules_are_well_formed() {
    let summary = check(&rules_text()).unwrap_or_else(|problems| panic!("{problems:#?}"));
    assert_eq!(
        summary.rules,
        [
            "Shell in Palisade gateway container",
            "Unexpected process in Palisade gateway container",
            "Write outside Palisade gateway volumes",
            "Unexpected outbound connection from Palisade gateway",
            "Read of Palisade gateway secrets",
        ]
    );
    assert!(summary.macros.contains("palisade_gateway_container"));
}

#[test]
fn writable_paths_are_the_charts_writable_mounts() {
    // Every mount of the Deployment that is not read-only must be writable in the
    // rules, and nothing else but /dev/null.
    let deployment = chart_file("templates/deployment.yaml");
    let lines: Vec<&str> = deployment.lines().collect();
    let mut writable: Vec<String> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if let Some(path) = line.trim().strip_prefix("mountPath: ") {
            let read_only = lines
                .get(i + 1)
                .is_some_and(|next| next.trim() == "readOnly: true");
            if !read_only {
                writable.push(path.to_owned());
            }
        }
    }
    writable.push("/dev/null".into());
    writable.sort();
    let mut listed = list_items("palisade_gateway_writable_paths");
    listed.sort();
    assert_eq!(listed, writable);
}

#[test]
fn secret_paths_cover_the_token_volume_and_the_process_environment() {
    let secrets = list_items("palisade_gateway_secret_paths");
    for path in [
        "/var/lib/softhsm/tokens",
        "/proc/1/environ",
        "/var/run/secrets",
    ] {
        assert!(secrets.iter().any(|s| s == path), "{path}");
    }
}

#[test]
fn expected_ports_include_the_charts_egress_ports() {
    let ports = list_items("palisade_gateway_internal_ports");
    let public = list_items("palisade_gateway_public_ports");
    for values in [
        "values.yaml",
        "values-production.yaml",
        "values-multi-region.yaml",
    ] {
        let values: serde_json::Value = yaml_serde::from_str(&chart_file(values)).unwrap();
        for rule in ["redis", "peerRegions", "hsm"] {
            let Some(rule_ports) = values["networkPolicy"]["egress"][rule]["ports"].as_array()
            else {
                continue;
            };
            for port in rule_ports {
                assert!(ports.contains(&port.to_string()), "{rule} port {port}");
            }
        }
        if let Some(webhook_ports) =
            values["networkPolicy"]["egress"]["webhooks"]["ports"].as_array()
        {
            for port in webhook_ports {
                assert!(public.contains(&port.to_string()), "webhook port {port}");
            }
        }
    }
    assert!(ports.contains(&"53".to_owned()));
}

/// Checks `yaml` and returns its problems (it must have some).
fn problems(yaml: &str) -> Vec<String> {
    check(yaml).expect_err("a broken file passed")
}

const GOOD: &str = r#"
- list: shells
  items: [sh, bash]
- macro: spawned
  condition: evt.type = execve and evt.dir = <
- rule: Shell
  desc: a shell
  condition: spawned and proc.name in (shells)
  output: shell (proc=%proc.name)
  priority: WARNING
"#;

#[test]
fn checker_accepts_a_minimal_file() {
    check(GOOD).unwrap();
}

#[test]
fn checker_catches_each_kind_of_mistake() {
    let cases = [
        (
            "spawned and proc.name in (shells)",
            "spawnd and proc.name in (shells)",
            "macro spawnd is not defined",
        ),
        (
            "proc.name in (shells)",
            "proc.name in (shell)",
            "list shell is not defined",
        ),
        (
            "proc.name in (shells)",
            "proc.name in (sh, bash)",
            "the operand must be one list name",
        ),
        (
            "proc.name in (shells)",
            "proc.nmae in (shells)",
            "field proc.nmae is not defined",
        ),
        (
            "spawned and proc.name in (shells)",
            "(spawned and proc.name in (shells)",
            "unexpected end",
        ),
        (
            "priority: WARNING",
            "priority: SEVERE",
            "priority SEVERE is not one of",
        ),
        (
            "priority: WARNING",
            "priority: warning",
            "priority warning is not one of",
        ),
        (
            "  output: shell (proc=%proc.name)\n",
            "",
            "output is missing",
        ),
        (
            "output: shell (proc=%proc.name)",
            "output: shell (proc=%proc.nam)",
            "output field %proc.nam",
        ),
        (
            "  priority: WARNING\n",
            "  priority: WARNING\n  severity: high\n",
            "unknown key severity",
        ),
        (
            "spawned and proc.name in (shells)",
            "proc.name in (shells)",
            "macro spawned is defined but never used",
        ),
        (
            "proc.name in (shells)",
            "proc.name = sh",
            "list shells is defined but never used",
        ),
        (
            "evt.dir = <",
            "evt.dir and",
            "evt.dir: unknown operator and",
        ),
        ("evt.dir = <", "evt.dir ~ <", "unknown operator ~"),
        ("evt.dir = <", "evt.dir = (", "expected a value"),
    ];
    for (from, to, expected) in cases {
        assert!(GOOD.contains(from), "{from}");
        let broken = GOOD.replacen(from, to, 1);
        let found = problems(&broken);
        assert!(
            found.iter().any(|p| p.contains(expected)),
            "{expected:?} not in {found:?} for:\n{broken}"
        );
    }
}

#[test]
fn checker_requires_definitions_before_use_and_unique_names() {
    let macro_after_rule = format!(
        "{}\n- macro: late\n  condition: evt.type = open\n",
        GOOD.replace("spawned and", "late and spawned and")
    );
    assert!(
        problems(&macro_after_rule)
            .iter()
            .any(|p| p.contains("macro late is not defined (before this point)"))
    );

    let twice = format!("{GOOD}{}", &GOOD[GOOD.find("- rule").unwrap()..]);
    assert!(problems(&twice).iter().any(|p| p.contains("defined twice")));

    assert!(
        problems("rule: not a list")
            .iter()
            .any(|p| p.contains("YAML sequence"))
    );
    assert!(
        problems("- something: else")
            .iter()
            .any(|p| p.contains("not a rule, macro or list"))
    );
    assert!(
        problems("- list: empty\n  items: []")
            .iter()
            .any(|p| p.contains("non-empty"))
    );
}
