//! The playbooks' audit file (`audit.jsonl` in the state directory): one hash chain
//! across restarts and failed writes.
//!
//! - A start verifies the file (a line at a time, whatever its size) and resumes its
//!   chain. A last record that lost only its newline gets it back before anything
//!   is appended.
//! - A torn last line (a crash or a failed write in the middle of a record: bytes
//!   after the last newline that are no record) is cut off and kept as
//!   `audit.jsonl.<unix seconds>[.<n>].torn`, and the chain goes on from the last
//!   whole record. Cutting loses nothing the chain could prove: a record that never
//!   got its newline was never complete.
//! - A file that does not verify otherwise (an edited, dropped or reordered record)
//!   is moved aside whole as `audit.jsonl.<unix seconds>[.<n>].unverified`, kept as
//!   evidence, and a new chain starts: appending to it would leave every later record
//!   unverifiable too.
//!
//! A file that cannot be read is an error, never taken for one that does not verify.
//! The same opening repairs the log after a failed write while the gateway runs
//! ([`reopener`]: [`crate::response::Responder`] reopens it and writes the record
//! again).

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use palisade_core_traits::Timestamp;
use palisade_playbooks::{AuditLog, Error as PlaybookError, MAX_AUDIT_LINE, verify_audit_from};

/// Opens the audit file at `path` for appending, its chain verified and resumed (see
/// the module's docs); `now` names what is kept aside.
pub fn open(path: &Path, now: Timestamp) -> std::io::Result<AuditLog<File>> {
    let anchor = match File::open(path) {
        Ok(file) => match verify_audit_from(BufReader::new(file)) {
            Ok(anchor) => Some(anchor),
            // The file could not be read: nothing says it does not verify.
            Err(PlaybookError::Io(e)) => return Err(e),
            Err(e) => match cut_torn_tail(path, now)? {
                Some((anchor, torn)) => {
                    tracing::warn!(
                        error = %e,
                        kept_as = %torn.display(),
                        "the audit log ended in a torn record; cut off and kept aside, the chain goes on"
                    );
                    Some(anchor)
                }
                None => {
                    let aside = aside(path, now, "unverified");
                    tracing::error!(
                        error = %e,
                        kept_as = %aside.display(),
                        "the audit log does not verify; kept aside, a new one starts"
                    );
                    std::fs::rename(path, &aside)?;
                    None
                }
            },
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)?;
    let Some((count, last_hash)) = anchor else {
        return Ok(AuditLog::new(file));
    };
    if count > 0 {
        let mut last = [0u8];
        file.seek(SeekFrom::End(-1))?;
        file.read_exact(&mut last)?;
        if last != *b"\n" {
            file.write_all(b"\n")?;
        }
    }
    Ok(AuditLog::resume(file, count, last_hash))
}

/// [`open`] for a log whose write failed, as [`crate::response::Responder`] calls it
/// after each failed write: after a failed repair (the disk still full), the next
/// tries only once a wait has passed (1 s, doubling to a minute), so a flood of
/// events does not re-verify a large file for each one.
pub fn reopener(
    path: PathBuf,
    clock: std::sync::Arc<dyn palisade_core_traits::Clock>,
) -> impl FnMut() -> std::io::Result<AuditLog<File>> + Send {
    const FIRST_WAIT: Duration = Duration::from_secs(1);
    const LONGEST_WAIT: Duration = Duration::from_secs(60);
    let mut wait = FIRST_WAIT;
    let mut not_before: Option<Instant> = None;
    move || {
        if let Some(t) = not_before
            && Instant::now() < t
        {
            return Err(std::io::Error::other(format!(
                "the last repair failed; the next waits {} s",
                wait.as_secs()
            )));
        }
        match open(&path, clock.now()) {
            Ok(log) => {
                (wait, not_before) = (FIRST_WAIT, None);
                Ok(log)
            }
            Err(e) => {
                not_before = Some(Instant::now() + wait);
                wait = (wait * 2).min(LONGEST_WAIT);
                Err(e)
            }
        }
    }
}

/// If the file ends in bytes after its last newline and everything up to that newline
/// verifies: keeps those bytes aside, cuts them off, and returns the chain's anchor
/// and where the bytes went. `None` if the damage is anything else.
fn cut_torn_tail(path: &Path, now: Timestamp) -> std::io::Result<Option<((u64, String), PathBuf)>> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let len = file.metadata()?.len();
    // A record is one line: a torn one is shorter than the longest line plus its end.
    let tail_len = len.min(MAX_AUDIT_LINE as u64 + 2);
    file.seek(SeekFrom::Start(len - tail_len))?;
    let mut tail = Vec::with_capacity(tail_len as usize);
    (&mut file).take(tail_len).read_to_end(&mut tail)?;
    let cut = match tail.iter().rposition(|&b| b == b'\n') {
        Some(i) => len - tail_len + i as u64 + 1,
        None if tail_len == len => 0,
        None => return Ok(None),
    };
    if cut == len {
        return Ok(None); // ends in a newline: a whole line is wrong, not torn
    }
    file.seek(SeekFrom::Start(0))?;
    let anchor = match verify_audit_from(BufReader::new((&mut file).take(cut))) {
        Ok(anchor) => anchor,
        Err(PlaybookError::Io(e)) => return Err(e),
        Err(_) => return Ok(None),
    };
    // The cut bytes are on disk (synced) before they leave the log; a copy that
    // could not be written (a full disk) is removed, and nothing is cut.
    let torn = aside(path, now, "torn");
    let kept = File::create_new(&torn).and_then(|mut f| {
        f.write_all(&tail[(tail_len - (len - cut)) as usize..])?;
        f.sync_all()
    });
    if let Err(e) = kept {
        let _ = std::fs::remove_file(&torn);
        return Err(e);
    }
    file.set_len(cut)?;
    file.sync_all()?;
    Ok(Some((anchor, torn)))
}

/// `audit.jsonl.<unix seconds>[.<n>].<what>`: a name no earlier file took.
fn aside(path: &Path, now: Timestamp, what: &str) -> PathBuf {
    (0..)
        .map(|n| {
            let n = if n == 0 {
                String::new()
            } else {
                format!(".{n}")
            };
            path.with_extension(format!("jsonl.{}{n}.{what}", now.as_unix_secs()))
        })
        .find(|p| !p.exists())
        .unwrap_or_else(|| unreachable!("an unbounded range"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use palisade_core_traits::{Clock, ManualClock};

    use super::*;

    fn clock() -> Arc<dyn Clock> {
        Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_800_000_000)))
    }

    /// A file that cannot be read is an error: it is not moved aside as if it did
    /// not verify (a read error on a failing disk would have ended the chain).
    #[test]
    fn an_unreadable_audit_is_an_error_not_an_unverifiable_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::create_dir(&path).unwrap(); // opens, but every read fails
        assert!(open(&path, clock().now()).is_err());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["audit.jsonl"]);
    }

    /// After a failed repair the next one waits: a flood of events does not open
    /// (and re-verify) the file for each; once the wait has passed it is tried again.
    #[test]
    fn a_failed_repair_is_not_tried_again_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("state");
        let mut reopen = reopener(missing.join("audit.jsonl"), clock());
        assert!(reopen().is_err(), "no directory yet");
        std::fs::create_dir(&missing).unwrap();
        let waiting = reopen().err().unwrap();
        assert!(waiting.to_string().contains("waits"), "{waiting}");
        std::thread::sleep(Duration::from_millis(1100));
        assert!(reopen().is_ok());
        assert!(missing.join("audit.jsonl").exists());
    }
}
