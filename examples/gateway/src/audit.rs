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
//! The same opening repairs the log after a failed write while the gateway runs
//! ([`crate::response::Responder`] reopens it and writes the record again).

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use palisade_core_traits::Timestamp;
use palisade_playbooks::{AuditLog, MAX_AUDIT_LINE, verify_audit_from};

/// Opens the audit file at `path` for appending, its chain verified and resumed (see
/// the module's docs); `now` names what is kept aside.
pub fn open(path: &Path, now: Timestamp) -> std::io::Result<AuditLog<File>> {
    let anchor = match File::open(path) {
        Ok(file) => match verify_audit_from(BufReader::new(file)) {
            Ok(anchor) => Some(anchor),
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
    let Ok(anchor) = verify_audit_from(BufReader::new((&mut file).take(cut))) else {
        return Ok(None);
    };
    let torn = aside(path, now, "torn");
    std::fs::write(&torn, &tail[(tail_len - (len - cut)) as usize..])?;
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
