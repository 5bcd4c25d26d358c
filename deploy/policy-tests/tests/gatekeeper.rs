//! Rego unit tests of deploy/policies/gatekeeper: each template is evaluated by
//! regorus on Gatekeeper's input shape, under Rego v0 (Gatekeeper's default for
//! `rego:`) and v1, which must agree.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use palisade_deploy_tests::deploy_dir;
use palisade_deploy_tests::gatekeeper::{
    Constraint, RegoVersion, Template, inventory, load_constraints, load_templates,
    pod_from_template, review_input,
};
use serde_json::{Value, json};

fn templates() -> Vec<Template> {
    load_templates(&deploy_dir().join("policies/gatekeeper")).unwrap()
}

fn constraints() -> Vec<Constraint> {
    load_constraints(&deploy_dir().join("policies/gatekeeper/constraints.yaml")).unwrap()
}

fn template(name: &str) -> Template {
    templates().into_iter().find(|t| t.name == name).unwrap()
}

/// The violations of `object`, after checking that v0 and v1 agree.
fn violations(name: &str, object: &Value, parameters: Value, inventory: &Value) -> Vec<String> {
    let template = template(name);
    let v0 = template.compile(RegoVersion::V0).unwrap();
    let v1 = template.compile(RegoVersion::V1).unwrap();
    let messages = v0.violations(object, &parameters, inventory).unwrap();
    assert_eq!(
        messages,
        v1.violations(object, &parameters, inventory).unwrap(),
        "{name}: Rego v0 and v1 disagree on {object}"
    );
    messages
}

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// The gateway Deployment as the chart renders it (the parts the policies read).
fn gateway() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "gw-palisade-gateway", "namespace": "palisade"},
        "spec": {"template": {
            "metadata": {"labels": {
                "app.kubernetes.io/name": "palisade-gateway",
                "app.kubernetes.io/instance": "gw",
            }},
            "spec": {
                "automountServiceAccountToken": false,
                "securityContext": {
                    "runAsNonRoot": true, "runAsUser": 10001, "runAsGroup": 10001,
                    "fsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [{
                    "name": "gateway",
                    "image": format!("registry.example.invalid/palisade/palisade-gateway@{DIGEST}"),
                    "ports": [{"name": "http", "containerPort": 7070}],
                    "securityContext": {
                        "runAsNonRoot": true, "runAsUser": 10001, "runAsGroup": 10001,
                        "allowPrivilegeEscalation": false, "privileged": false,
                        "readOnlyRootFilesystem": true,
                        "capabilities": {"drop": ["ALL"]},
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                }],
                "volumes": [
                    {"name": "state", "emptyDir": {}},
                    {"name": "softhsm-conf", "configMap": {"name": "x"}},
                ],
            },
        }},
    })
}

/// `gateway()` with `edit` applied to its Pod spec.
fn gateway_with(edit: impl FnOnce(&mut Value)) -> Value {
    let mut object = gateway();
    edit(object.pointer_mut("/spec/template/spec").unwrap());
    object
}

fn no_inventory() -> Value {
    json!({})
}

#[test]
fn templates_are_in_gatekeepers_dialect_and_compile_as_v0_and_v1() {
    let templates = templates();
    let names: Vec<&str> = templates.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "palisadeimagedigest",
            "palisadenolatesttag",
            "palisaderequirenetworkpolicy",
            "palisaderestrictedpod"
        ]
    );
    for template in &templates {
        assert_eq!(
            template.dialect_problems(),
            Vec::<String>::new(),
            "{}",
            template.name
        );
        template.compile(RegoVersion::V0).unwrap();
        template.compile(RegoVersion::V1).unwrap();
    }
}

#[test]
fn dialect_check_refuses_what_gatekeeper_refuses() {
    let mut t = template("palisadenolatesttag");
    t.rego = t.rego.replace(
        "import future.keywords.in",
        "import future.keywords.in\nimport rego.v1",
    );
    assert_eq!(
        t.dialect_problems(),
        ["import rego.v1 is not allowed by Gatekeeper"]
    );

    let mut t = template("palisadenolatesttag");
    t.rego = t.rego.replace(
        "some c in containers\n\tnot contains(c.image, \"@\")\n\ttag(c.image) == \"latest\"",
        "some c in containers\n\tnot contains(c.image, \"@\")\n\tdata.kubernetes.x\n\ttag(c.image) == \"latest\"",
    );
    assert_eq!(
        t.dialect_problems(),
        ["reference to data.kubernetes.x is not allowed"]
    );

    let mut t = template("palisadenolatesttag");
    t.name = "nolatest".into();
    assert_eq!(t.dialect_problems().len(), 1);

    let mut t = template("palisadenolatesttag");
    t.rego = t.rego.replace("violation contains", "deny contains");
    assert_eq!(t.dialect_problems(), ["no violation rule"]);
}

#[test]
fn every_template_has_a_constraint_and_every_constraint_a_template() {
    let templates = templates();
    let constraints = constraints();
    for template in &templates {
        assert!(
            constraints.iter().any(|c| c.kind == template.kind),
            "no constraint of kind {}",
            template.kind
        );
    }
    for constraint in &constraints {
        assert!(
            templates.iter().any(|t| t.kind == constraint.kind),
            "{}",
            constraint.kind
        );
    }
    // Pods and the workloads that create them; the NetworkPolicy rule Pods only.
    let restricted = constraints
        .iter()
        .find(|c| c.name == "palisade-restricted-pod")
        .unwrap();
    for kind in [
        "Pod",
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "Job",
        "CronJob",
    ] {
        assert!(
            restricted.match_kinds.iter().any(|(_, k)| k == kind),
            "{kind}"
        );
    }
    let netpol = constraints
        .iter()
        .find(|c| c.name == "palisade-require-networkpolicy")
        .unwrap();
    assert_eq!(netpol.match_kinds, [(String::new(), "Pod".to_owned())]);
}

#[test]
fn the_charts_gateway_passes_every_policy() {
    let object = gateway();
    let pod = pod_from_template(&object).unwrap();
    for name in [
        "palisaderestrictedpod",
        "palisadenolatesttag",
        "palisadeimagedigest",
    ] {
        assert_eq!(
            violations(name, &object, json!({}), &no_inventory()),
            Vec::<String>::new()
        );
        assert_eq!(
            violations(name, &pod, json!({}), &no_inventory()),
            Vec::<String>::new()
        );
    }
}

#[test]
fn restricted_pod_names_each_broken_field() {
    type Edit = fn(&mut Value);
    let cases: Vec<(Edit, &str)> = vec![
        (
            |s| s["hostNetwork"] = json!(true),
            "spec.hostNetwork must not be true",
        ),
        (
            |s| s["hostPID"] = json!(true),
            "spec.hostPID must not be true",
        ),
        (
            |s| s["hostIPC"] = json!(true),
            "spec.hostIPC must not be true",
        ),
        (
            |s| {
                drop(
                    s.as_object_mut()
                        .unwrap()
                        .remove("automountServiceAccountToken"),
                )
            },
            "spec.automountServiceAccountToken must be false",
        ),
        (
            |s| s["volumes"][0] = json!({"name": "host", "hostPath": {"path": "/"}}),
            "volume host: type hostPath is not allowed",
        ),
        (
            |s| s["containers"][0]["securityContext"]["runAsNonRoot"] = json!(false),
            "container gateway: runAsNonRoot must be true",
        ),
        (
            |s| s["containers"][0]["securityContext"]["runAsUser"] = json!(0),
            "container gateway: runAsUser must be a number other than 0",
        ),
        (
            |s| s["securityContext"]["fsGroup"] = json!(0),
            "container gateway: fsGroup must not be 0",
        ),
        (
            |s| {
                drop(
                    s["containers"][0]["securityContext"]
                        .as_object_mut()
                        .unwrap()
                        .remove("allowPrivilegeEscalation"),
                )
            },
            "container gateway: allowPrivilegeEscalation must be false",
        ),
        (
            |s| s["containers"][0]["securityContext"]["privileged"] = json!(true),
            "container gateway: privileged must not be true",
        ),
        (
            |s| s["containers"][0]["securityContext"]["capabilities"]["drop"] = json!(["NET_RAW"]),
            "container gateway: capabilities.drop must contain ALL",
        ),
        (
            |s| {
                s["containers"][0]["securityContext"]["capabilities"]["add"] =
                    json!(["NET_BIND_SERVICE"])
            },
            "container gateway: capability NET_BIND_SERVICE must not be added",
        ),
        (
            |s| {
                s["containers"][0]["securityContext"]["seccompProfile"]["type"] =
                    json!("Unconfined")
            },
            "container gateway: seccompProfile.type must be RuntimeDefault or Localhost",
        ),
        (
            |s| s["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = json!(false),
            "container gateway: readOnlyRootFilesystem must be true",
        ),
        (
            |s| s["containers"][0]["ports"][0]["hostPort"] = json!(7070),
            "container gateway: hostPort must not be set",
        ),
        (
            |s| s["containers"][0]["securityContext"]["procMount"] = json!("Unmasked"),
            "container gateway: procMount must be Default",
        ),
        (
            |s| s["securityContext"]["windowsOptions"] = json!({"hostProcess": true}),
            "container gateway: windowsOptions.hostProcess must not be true",
        ),
        (
            |s| s["securityContext"]["seLinuxOptions"] = json!({"user": "system_u"}),
            "container gateway: seLinuxOptions may only set type to container_t, container_init_t or container_kvm_t",
        ),
        (
            |s| {
                s["containers"][0]["securityContext"]["appArmorProfile"] =
                    json!({"type": "Unconfined"})
            },
            "container gateway: appArmorProfile.type must be RuntimeDefault or Localhost",
        ),
        (
            |s| s["securityContext"]["sysctls"] = json!([{"name": "kernel.msgmax", "value": "1"}]),
            "sysctl kernel.msgmax is not in the safe set",
        ),
    ];
    for (edit, expected) in cases {
        let object = gateway_with(edit);
        assert_eq!(
            violations("palisaderestrictedpod", &object, json!({}), &no_inventory()),
            [expected],
            "{object}"
        );
    }
}

#[test]
fn restricted_pod_follows_pss_inheritance() {
    // Pod-level runAsNonRoot, runAsUser and seccomp are enough (PSS semantics)...
    let pod_level_only = gateway_with(|s| {
        let sc = s["containers"][0]["securityContext"]
            .as_object_mut()
            .unwrap();
        for field in ["runAsNonRoot", "runAsUser", "seccompProfile"] {
            sc.remove(field);
        }
    });
    assert_eq!(
        violations(
            "palisaderestrictedpod",
            &pod_level_only,
            json!({}),
            &no_inventory()
        ),
        Vec::<String>::new()
    );
    // ...but a container can override them, and an init container is a container.
    let overridden = gateway_with(|s| {
        s["containers"][0]["securityContext"]["seccompProfile"] = json!({"type": "Unconfined"});
        s["initContainers"] =
            json!([{"name": "init", "image": "busybox:1.36", "securityContext": {}}]);
    });
    assert_eq!(
        violations(
            "palisaderestrictedpod",
            &overridden,
            json!({}),
            &no_inventory()
        ),
        [
            "container gateway: seccompProfile.type must be RuntimeDefault or Localhost",
            "container init: allowPrivilegeEscalation must be false",
            "container init: capabilities.drop must contain ALL",
            "container init: readOnlyRootFilesystem must be true",
        ]
    );
    // Nothing set anywhere: every identity and seccomp rule fires.
    let bare = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "x:1"}]}});
    assert_eq!(
        violations("palisaderestrictedpod", &bare, json!({}), &no_inventory()).len(),
        7
    );
}

#[test]
fn restricted_pod_reads_cronjob_templates() {
    let cronjob = json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
    "spec": {"jobTemplate": {"spec": {"template": {"spec": {
        "automountServiceAccountToken": false,
        "hostPID": true,
        "containers": [],
    }}}}}});
    assert_eq!(
        violations(
            "palisaderestrictedpod",
            &cronjob,
            json!({}),
            &no_inventory()
        ),
        ["spec.hostPID must not be true"]
    );
}

fn with_image(image: &str) -> Value {
    let image = image.to_owned();
    gateway_with(move |s| s["containers"][0]["image"] = json!(image))
}

#[test]
fn no_latest_tag() {
    let ok = [
        "palisade-gateway:0.1.0",
        "registry:5000/palisade/palisade-gateway:0.1.0",
        "palisade-gateway:latest@sha256:0123",
    ];
    for image in ok {
        assert_eq!(
            violations(
                "palisadenolatesttag",
                &with_image(image),
                json!({}),
                &no_inventory()
            ),
            Vec::<String>::new(),
            "{image}"
        );
    }
    let bad = [
        ("palisade-gateway:latest", "uses the latest tag"),
        (
            "registry:5000/palisade-gateway:latest",
            "uses the latest tag",
        ),
        ("palisade-gateway", "has no tag or digest (it means latest)"),
        (
            "registry:5000/palisade-gateway",
            "has no tag or digest (it means latest)",
        ),
    ];
    for (image, why) in bad {
        assert_eq!(
            violations(
                "palisadenolatesttag",
                &with_image(image),
                json!({}),
                &no_inventory()
            ),
            [format!("container gateway: image {image} {why}")]
        );
    }
}

#[test]
fn image_digest_with_and_without_exemptions() {
    let tagged = "registry.example.invalid/palisade/palisade-gateway:0.1.0";
    let message =
        format!("container gateway: image {tagged} is not pinned by digest (@sha256:...)");
    assert_eq!(
        violations(
            "palisadeimagedigest",
            &with_image(tagged),
            json!({}),
            &no_inventory()
        ),
        std::slice::from_ref(&message)
    );
    for not_a_digest in [
        "palisade-gateway@sha256:0123",
        "palisade-gateway@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
        "palisade-gateway@sha512:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ] {
        assert_eq!(
            violations(
                "palisadeimagedigest",
                &with_image(not_a_digest),
                json!({}),
                &no_inventory()
            )
            .len(),
            1,
            "{not_a_digest}"
        );
    }
    let exempt = |patterns: Value| {
        violations(
            "palisadeimagedigest",
            &with_image(tagged),
            json!({"exemptImages": patterns}),
            &no_inventory(),
        )
    };
    assert_eq!(
        exempt(json!(["registry.example.invalid/palisade/*"])),
        Vec::<String>::new()
    );
    assert_eq!(exempt(json!([tagged])), Vec::<String>::new());
    assert_eq!(
        exempt(json!(["registry.example.invalid/other/*"])),
        std::slice::from_ref(&message)
    );
    // An exact pattern is not a prefix.
    assert_eq!(
        exempt(json!(["registry.example.invalid/palisade"])),
        std::slice::from_ref(&message)
    );
    assert_eq!(exempt(json!([])), [message]);
}

fn gateway_pod() -> Value {
    pod_from_template(&gateway()).unwrap()
}

fn netpol(namespace: &str, selector: Value, types: &[&str]) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "np", "namespace": namespace},
        "spec": {"podSelector": selector, "policyTypes": types}})
}

#[test]
fn networkpolicy_must_select_the_pod_for_both_directions() {
    let pod = gateway_pod();
    let check = |policies: &[Value]| {
        violations(
            "palisaderequirenetworkpolicy",
            &pod,
            json!({}),
            &inventory(policies),
        )
    };
    let both = ["Ingress", "Egress"];
    let by_name = json!({"matchLabels": {"app.kubernetes.io/name": "palisade-gateway"}});
    assert_eq!(
        check(&[netpol("palisade", by_name.clone(), &both)]),
        Vec::<String>::new()
    );
    assert_eq!(
        check(&[netpol("palisade", json!({}), &both)]),
        Vec::<String>::new()
    );

    let missing = check(&[]);
    assert_eq!(missing.len(), 1);
    assert!(missing[0].starts_with("no NetworkPolicy in namespace palisade selects this Pod"));
    assert_eq!(
        check(&[netpol("palisade", by_name.clone(), &["Ingress"])]),
        missing
    );
    assert_eq!(check(&[netpol("other", by_name, &both)]), missing);
    let other_app = json!({"matchLabels": {"app.kubernetes.io/name": "redis"}});
    assert_eq!(check(&[netpol("palisade", other_app, &both)]), missing);
    // Two half policies do not make a whole one.
    let selector = json!({"matchLabels": {"app.kubernetes.io/instance": "gw"}});
    assert_eq!(
        check(&[
            netpol("palisade", selector.clone(), &["Ingress"]),
            netpol("palisade", selector, &["Egress"]),
        ]),
        missing
    );
}

#[test]
fn networkpolicy_selector_expressions() {
    let pod = gateway_pod();
    let selected = |expressions: Value| {
        let policy = netpol(
            "palisade",
            json!({"matchExpressions": expressions}),
            &["Ingress", "Egress"],
        );
        violations(
            "palisaderequirenetworkpolicy",
            &pod,
            json!({}),
            &inventory(&[policy]),
        )
        .is_empty()
    };
    let name = "app.kubernetes.io/name";
    assert!(selected(
        json!([{"key": name, "operator": "In", "values": ["x", "palisade-gateway"]}])
    ));
    assert!(!selected(
        json!([{"key": name, "operator": "In", "values": ["x"]}])
    ));
    assert!(selected(
        json!([{"key": name, "operator": "NotIn", "values": ["x"]}])
    ));
    assert!(!selected(
        json!([{"key": name, "operator": "NotIn", "values": ["palisade-gateway"]}])
    ));
    assert!(selected(
        json!([{"key": "absent", "operator": "NotIn", "values": ["x"]}])
    ));
    assert!(selected(json!([{"key": name, "operator": "Exists"}])));
    assert!(!selected(json!([{"key": "absent", "operator": "Exists"}])));
    assert!(selected(
        json!([{"key": "absent", "operator": "DoesNotExist"}])
    ));
    assert!(!selected(
        json!([{"key": name, "operator": "DoesNotExist"}])
    ));
    // Every expression must hold.
    assert!(!selected(json!([
        {"key": name, "operator": "Exists"},
        {"key": "absent", "operator": "Exists"},
    ])));
}

#[test]
fn networkpolicy_namespace_comes_from_the_review_when_the_object_has_none() {
    // A Pod created by a ReplicaSet may carry no metadata.namespace in the
    // admission request; Gatekeeper gives it in review.namespace.
    let mut pod = gateway_pod();
    pod["metadata"].as_object_mut().unwrap().remove("namespace");
    let np = inventory(&[netpol("palisade", json!({}), &["Ingress", "Egress"])]);
    for version in [RegoVersion::V0, RegoVersion::V1] {
        let policy = template("palisaderequirenetworkpolicy")
            .compile(version)
            .unwrap();
        let mut input = review_input(&pod, &json!({}));
        input["review"]["namespace"] = json!("palisade");
        assert_eq!(policy.evaluate(&input, &np).unwrap(), Vec::<String>::new());
        input["review"]["namespace"] = json!("elsewhere");
        assert_eq!(policy.evaluate(&input, &np).unwrap().len(), 1);
    }
}

#[test]
fn the_referential_template_declares_and_gets_its_sync_data() {
    let dir = deploy_dir().join("policies/gatekeeper");
    let docs = palisade_deploy_tests::read_yaml_documents(
        &dir.join("template-require-networkpolicy.yaml"),
    )
    .unwrap();
    // Gatekeeper's format: a JSON document inside a quoted string.
    let annotation =
        docs[0]["metadata"]["annotations"]["metadata.gatekeeper.sh/requires-sync-data"]
            .as_str()
            .unwrap()
            .trim();
    let requirement: Value = serde_json::from_str(
        annotation
            .strip_prefix('"')
            .unwrap()
            .strip_suffix('"')
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        requirement,
        json!([[{"groups": ["networking.k8s.io"], "versions": ["v1"], "kinds": ["NetworkPolicy"]}]])
    );
    let syncset = palisade_deploy_tests::read_yaml_documents(&dir.join("syncset.yaml")).unwrap();
    assert_eq!(syncset[0]["kind"], "SyncSet");
    assert_eq!(
        syncset[0]["spec"]["gvks"],
        json!([{"group": "networking.k8s.io", "version": "v1", "kind": "NetworkPolicy"}])
    );
}
