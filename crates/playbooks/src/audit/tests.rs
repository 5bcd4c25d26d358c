use super::*;
use crate::{Definition, Engine};
use palisade_core_traits::{EventId, EventKind, SecurityEvent, Severity, Subject};

fn log() -> String {
    let mut e = Engine::new(Definition::default_set().unwrap());
    let mut audit = AuditLog::new(Vec::new());
    for n in 0..3u32 {
        let ev = SecurityEvent::new(
            EventId::new(format!("e{n}")).unwrap(),
            Timestamp::from_unix_secs(1_800_000_000),
            EventKind::BruteForce,
            Severity::High,
            Subject::Ip {
                ip: format!("192.0.2.{}", n % 2).parse().unwrap(),
            },
            "test",
        );
        let plan = e.evaluate(&ev, Timestamp::from_unix_secs(1_800_000_000 + u64::from(n)));
        let outcomes: Vec<_> = plan
            .executable()
            .map(|s| (s.decision.unwrap(), Outcome::Applied { attempts: 1 }))
            .collect();
        audit.record_plan(&plan, &outcomes).unwrap();
    }
    for d in e.expire(Timestamp::from_unix_secs(1_800_010_000)) {
        let outcome = d.needs_revert().then_some(Outcome::Applied { attempts: 1 });
        audit
            .record_expiry(Timestamp::from_unix_secs(1_800_010_000), &d, outcome)
            .unwrap();
    }
    String::from_utf8(audit.get_ref().clone()).unwrap()
}

#[test]
fn intact_log_verifies_and_is_ocsf_shaped() {
    let log = log();
    let (n, last) = verify_audit(&log).unwrap();
    assert_eq!(n as usize, log.lines().count());
    assert_eq!(n, 6 + 4);
    assert_eq!(last.len(), 64);
    let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(first["class_uid"], 7001);
    assert_eq!(first["category_uid"], 7);
    assert_eq!(first["activity_id"], 1);
    assert_eq!(first["type_uid"], 700101);
    assert_eq!(first["status_id"], 1);
    // Required by OCSF 1.3.0's base event and Remediation Activity class.
    assert_eq!(first["severity_id"], 1);
    assert_eq!(first["command_uid"], "decision-0");
    assert_eq!(first["metadata"]["version"], "1.3.0");
    assert_eq!(first["metadata"]["product"]["name"], "palisade-playbooks");
    assert_eq!(first["metadata"]["product"]["vendor_name"], "Palisade");
    assert_eq!(first["prev_hash"], AUDIT_GENESIS);
    let records: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let notify = records
        .iter()
        .find(|r| r["unmapped"]["action"]["type"] == "notify")
        .unwrap();
    // The default set notifies at the event's severity: High is OCSF 4.
    assert_eq!(notify["severity_id"], 4);
    assert!(
        records
            .iter()
            .any(|r| r["command_uid"].as_str().unwrap().ends_with("-expiry")),
        "expiries have their own command_uid"
    );
    assert!(
        log.lines().any(|l| l.contains("\"activity_id\":3")),
        "a revert is a Restore"
    );
    assert!(log.contains("\"reason\":\"duplicate\""));
}

#[test]
fn an_edited_record_is_detected() {
    let log = log();
    let edited = log.replacen("192.0.2.1", "192.0.2.9", 1);
    assert_ne!(edited, log);
    let err = verify_audit(&edited).unwrap_err().to_string();
    assert!(err.contains("hash mismatch"), "{err}");
    // Editing and re-hashing one record breaks the next record's link.
    let mut lines: Vec<String> = log.lines().map(str::to_owned).collect();
    let mut rec = AuditRecord::from_line(lines[2].as_bytes()).unwrap();
    rec.message = "nothing happened".into();
    rec.hash = rec.hash_of();
    lines[2] = rec.to_line();
    let err = verify_audit(&lines.join("\n")).unwrap_err().to_string();
    assert!(err.starts_with("audit record 4:"), "{err}");
    // Whitespace is an edit too.
    let spaced = log.replacen("{\"seq\":0,", "{\"seq\":0, ", 1);
    assert!(verify_audit(&spaced).is_err());
}

#[test]
fn a_dropped_record_is_detected() {
    let log = log();
    let mut lines: Vec<&str> = log.lines().collect();
    lines.remove(3);
    let err = verify_audit(&lines.join("\n")).unwrap_err().to_string();
    assert!(err.contains("seq 4 where 3"), "{err}");
}

#[test]
fn reordered_records_are_detected() {
    let log = log();
    let mut lines: Vec<&str> = log.lines().collect();
    lines.swap(1, 2);
    let err = verify_audit(&lines.join("\n")).unwrap_err().to_string();
    assert!(err.starts_with("audit record 2:"), "{err}");
}

#[test]
fn resume_continues_the_chain() {
    let log = log();
    let (n, last) = verify_audit(&log).unwrap();
    let mut audit = AuditLog::resume(log.clone().into_bytes(), n, last);
    let plan = Engine::new(Definition::default_set().unwrap()).manual(
        Action::TerminateSessions {
            user_id: "u".into(),
        },
        std::time::Duration::from_secs(60),
        crate::Mode::DryRun,
        "test",
        Timestamp::from_unix_secs(1_800_020_000),
    );
    audit.record_plan(&plan, &[]).unwrap();
    let all = String::from_utf8(audit.get_ref().clone()).unwrap();
    assert_eq!(verify_audit(&all).unwrap().0, n + 1);
}

/// Takes the first write whole, then writes half of the next and fails (a full
/// disk), then works again.
struct Flaky {
    buf: Vec<u8>,
    calls: u32,
}

impl Write for Flaky {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.calls += 1;
        let n = match self.calls {
            2 => b.len() / 2,
            3 => return Err(std::io::Error::other("no space left on device")),
            _ => b.len(),
        };
        self.buf.extend_from_slice(&b[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failed_write_stops_the_log_until_it_is_repaired() {
    let mut e = Engine::new(Definition::default_set().unwrap());
    let now = Timestamp::from_unix_secs(1_800_000_000);
    let ev = SecurityEvent::new(
        EventId::new("e1").unwrap(),
        now,
        EventKind::BruteForce,
        Severity::High,
        Subject::Ip {
            ip: "198.51.100.4".parse().unwrap(),
        },
        "test",
    );
    let plan = e.evaluate(&ev, now); // block + notify: two records
    let mut log = AuditLog::new(Flaky {
        buf: Vec::new(),
        calls: 0,
    });
    // Record 0 is written, record 1 only in part.
    let err = log.record_plan(&plan, &[]).unwrap_err();
    assert!(matches!(err, Error::Io(_)), "{err:?}");
    // The writer works again, but nothing may follow a partial record: every record
    // after it would fail to verify.
    let err = log.record_plan(&plan, &[]).unwrap_err();
    assert!(matches!(err, Error::AuditNeedsRepair { seq: 1 }), "{err:?}");
    assert!(err.to_string().contains("needs repair"), "{err}");
    assert_eq!(log.get_ref().calls, 3, "nothing more was written");
    // The documented repair: verify, which stops at the partial last line; truncate
    // the log to the end of its last complete line; verify again; resume.
    let mut bytes = log.get_ref().buf.clone();
    let err = verify_audit(&String::from_utf8_lossy(&bytes)).unwrap_err();
    assert!(matches!(err, Error::Audit { line: 2, .. }), "{err}");
    let end = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    bytes.truncate(end);
    let (count, last) = verify_audit(std::str::from_utf8(&bytes).unwrap()).unwrap();
    assert_eq!(count, 1);
    let mut log = AuditLog::resume(bytes, count, last);
    log.record_plan(&plan, &[]).unwrap();
    let all = String::from_utf8(log.get_ref().clone()).unwrap();
    assert_eq!(verify_audit(&all).unwrap().0, 3);
}

/// The reader form gives what the string form gives, a line at a time (a log of any
/// size in the memory of one line), and refuses a line no record could fill.
#[test]
fn verify_from_a_reader_agrees_with_verify_and_bounds_a_line() {
    let text = log();
    let whole = verify_audit(&text).unwrap();
    assert!(whole.0 > 1);
    let small_buffer = std::io::BufReader::with_capacity(7, text.as_bytes());
    assert_eq!(verify_audit_from(small_buffer).unwrap(), whole);
    // The same with CRLF line ends, which `str::lines` also accepts.
    let crlf = text.replace('\n', "\r\n");
    assert_eq!(verify_audit_from(crlf.as_bytes()).unwrap(), whole);
    let too_long = format!("{text}{}\n", "x".repeat(MAX_AUDIT_LINE + 1)).into_bytes();
    let not_utf8 = [text.as_bytes(), b"\x80\n"].concat();
    for bytes in [too_long, not_utf8] {
        let lines = text.lines().count();
        match verify_audit_from(bytes.as_slice()) {
            Err(Error::Audit { line, .. }) => assert_eq!(line, lines + 1),
            other => panic!("{other:?}"),
        }
    }
}
