use super::*;

fn err(src: &str) -> (usize, usize, String) {
    match Definition::from_toml("t.toml", src) {
        Err(Error::Definition {
            line,
            column,
            message,
            origin,
        }) => {
            assert_eq!(origin, "t.toml");
            (line, column, message)
        }
        other => panic!("expected a definition error, got {other:?}"),
    }
}

const GOOD: &str = r#"
[[playbook]]
name = "bf"
kinds = ["brute_force"]
subject = "ip"
cooldown = "5m"

[[playbook.action]]
type = "block_ip"
duration = "15m"
"#;

#[test]
fn default_set_loads() {
    let def = Definition::default_set().unwrap();
    assert_eq!(def.playbooks.len(), 7);
    assert_eq!(def.engine.max_actions_per_minute, 120);
    assert_eq!(def.playbooks[0].name, "brute-force-ip");
}

#[test]
fn good_definition_loads() {
    let def = Definition::from_toml("t.toml", GOOD).unwrap();
    assert_eq!(
        def.playbooks[0].actions[0].get_ref(),
        &ActionDef::BlockIp {
            duration: Span(Duration::from_secs(900)),
            escalation: None,
            approval: None
        }
    );
}

#[test]
fn unknown_field_is_refused_with_position_and_name() {
    let src = GOOD.replace("cooldown = \"5m\"", "cooldown = \"5m\"\ncooldwn = \"5m\"");
    let (line, column, message) = err(&src);
    assert_eq!((line, column), (7, 1));
    assert!(message.contains("cooldwn"), "{message}");
}

#[test]
fn duration_without_unit_is_refused() {
    let src = GOOD.replace("duration = \"15m\"", "duration = \"15\"");
    let (line, column, message) = err(&src);
    assert_eq!((line, column), (10, 12));
    assert!(message.contains("no unit"), "{message}");
    assert!(message.starts_with("field `duration`"), "{message}");
    let src = GOOD.replace("duration = \"15m\"", "duration = \"15 minutes\"");
    assert!(err(&src).2.contains("unknown unit"));
    let src = GOOD.replace("duration = \"15m\"", "duration = \"0s\"");
    assert!(err(&src).2.contains("positive"));
}

#[test]
fn unknown_kind_and_action_type_are_refused() {
    let src = GOOD.replace("brute_force", "brute_forse");
    let (line, _, message) = err(&src);
    assert_eq!(line, 4);
    assert!(message.contains("brute_forse"), "{message}");
    let src = GOOD.replace("block_ip", "block_ipp");
    let (line, _, message) = err(&src);
    assert_eq!(line, 9);
    assert!(message.contains("block_ipp"), "{message}");
}

#[test]
fn action_for_the_wrong_subject_is_refused() {
    let src = GOOD.replace("subject = \"ip\"", "subject = \"user\"");
    let (line, _, message) = err(&src);
    assert_eq!(line, 8, "{message}");
    assert!(message.contains("action.type"), "{message}");
}

#[test]
fn missing_field_and_bad_values_are_refused() {
    let src = GOOD.replace("cooldown = \"5m\"\n", "");
    assert!(err(&src).2.contains("cooldown"));
    let src = GOOD.replace("subject = \"ip\"", "subject = \"ip\"\nmin_score = 1.5");
    assert!(err(&src).2.contains("min_score"));
    let src = format!("{GOOD}\n[allowlist]\nnetworks = [\"10.0.0.1/8\"]\n");
    assert!(err(&src).2.contains("host bits"));
    let src = format!("{GOOD}\n[engine]\nmax_actions_per_minute = 0\n");
    assert!(err(&src).2.contains("max_actions_per_minute"));
    let src = format!("{GOOD}\n{}", &GOOD[1..]);
    assert!(err(&src).2.contains("repeated"));
    let src = GOOD.replace(
        "duration = \"15m\"",
        "duration = \"15m\"\nescalation = { factor = 2, max = \"1m\", decay_after = \"1d\" }",
    );
    assert!(err(&src).2.contains("escalation"));
}
