//! The rollout log and the per-model lock, in the state folder.
//!
//! The log is append-only, one record per line, each prefixed with the
//! CRC-32 of its JSON and synced to disk before the controller acts on it.
//! Reading checks every record: a corrupted record anywhere is an error, and
//! so is a torn last line (a crash mid-write), reported — never silently
//! replayed or skipped.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use switchyard_api::admin::{Slot, Weights};

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Planned, nothing done yet.
    Pending,
    /// Loading the new version into the standby slot everywhere.
    Loading,
    /// Running the smoke suite against the standby slot alone.
    SmokeTesting,
    /// Mirroring live traffic to the standby slot.
    Shadowing,
    /// Moving traffic to the new weights.
    Shifting,
    /// Waiting at a step, then analysing.
    Baking,
    /// Stopped for a human.
    Paused,
    /// Putting every gateway back on the old version.
    RollingBack,
    /// Done: the new version is live.
    Promoted,
    /// Done: the old version is live again, automatically.
    RolledBack,
    /// Done: undone by an operator.
    Aborted,
}

/// The strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// All traffic at once after the smoke tests.
    BlueGreen,
    /// Weight steps with a bake time and analysis after each.
    Canary,
    /// A shadow phase with an agreement gate, then all at once.
    Shadow,
}

/// An analysis check's outcome, kept in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The check's name.
    pub name: String,
    /// What was measured, if anything was.
    pub value: Option<f64>,
    /// The threshold.
    pub threshold: f64,
    /// `pass`, `fail` or `inconclusive`.
    pub verdict: String,
    /// The numbers in words.
    pub detail: String,
}

/// A rollout as recorded; the last record of a rollout is its state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// Unique id.
    pub id: String,
    /// The model.
    pub model: String,
    /// The strategy.
    pub strategy: Strategy,
    /// The version that was live when it began, if any.
    pub from_version: Option<u64>,
    /// The version being rolled out.
    pub to_version: u64,
    /// The slot that was live when it began.
    pub old_slot: Slot,
    /// Green's weight steps.
    pub steps: Vec<u32>,
    /// Index of the current step.
    pub step: usize,
    /// The phase.
    pub phase: Phase,
    /// The weights the fleet should have now.
    pub weights: Weights,
    /// Why it ended or paused.
    pub reason: Option<String>,
    /// Analysis results of the current step.
    pub checks: Vec<CheckResult>,
    /// Bake time after each step, in milliseconds (kept so a resumed
    /// rollout goes on with the settings it began with).
    #[serde(default)]
    pub bake_ms: u64,
    /// Percent mirrored in the shadow phase.
    #[serde(default)]
    pub shadow_percent: u32,
    /// The analysis thresholds it began with.
    #[serde(default)]
    pub thresholds: crate::suite::Thresholds,
    /// The PromQL checks it began with.
    #[serde(default)]
    pub queries: Vec<crate::prometheus::QueryCheck>,
    /// Milliseconds since the epoch when it began.
    pub started_ms: u64,
    /// Milliseconds since the epoch of this record.
    pub updated_ms: u64,
}

/// Why the log or the lock could not be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// I/O.
    #[error("cannot {action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A record fails its checksum or does not parse.
    #[error(
        "rollout log {path} is corrupt at line {line}: {problem}; it is not replayed — inspect it, then move it aside"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The line.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// Another controller holds the model's lock.
    #[error(
        "a rollout of {model} is already running (lock {path} held by pid {pid} on {host} since {since_ms} ms); wait, or `controller abort {model}` if it is dead"
    )]
    Locked {
        /// The model.
        model: String,
        /// The lock file.
        path: PathBuf,
        /// Its holder.
        pid: u32,
        /// Its host.
        host: String,
        /// Since when.
        since_ms: u64,
    },
}

/// The per-model log.
#[derive(Debug, Clone)]
pub struct Journal {
    path: PathBuf,
}

/// A held lock; released on drop.
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct LockBody {
    pid: u32,
    host: String,
    since_ms: u64,
}

/// Records written by this process, for the crash failpoint.
static APPENDED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The crash-safety tests' failpoint: with
/// `SWITCHYARD_FAILPOINT=crash-after-record:N`, the process dies (no
/// destructors, the lock left behind) right after its N-th record is on
/// disk — the moment between writing a transition and acting on it.
fn failpoint() {
    let n = APPENDED.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
    let crash_at = std::env::var("SWITCHYARD_FAILPOINT").ok().and_then(|v| {
        v.strip_prefix("crash-after-record:")
            .and_then(|n| n.parse::<usize>().ok())
    });
    if crash_at == Some(n) {
        std::process::abort();
    }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn io<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> JournalError + 'a {
    move |source| JournalError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

impl Journal {
    /// The log of `model` under `state_dir`.
    pub fn new(state_dir: &Path, model: &str) -> Journal {
        Journal {
            path: state_dir.join("rollouts").join(format!("{model}.log")),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends a record and syncs it to disk before returning.
    ///
    /// # Errors
    /// I/O.
    pub fn append(&self, rollout: &Rollout) -> Result<(), JournalError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let new_file = !self.path.exists();
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        let json = serde_json::to_string(rollout).unwrap_or_default();
        let line = format!("{:08x} {json}\n", crc32fast::hash(json.as_bytes()));
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io("open", &self.path))?;
        file.write_all(line.as_bytes())
            .map_err(io("write", &self.path))?;
        file.sync_all().map_err(io("sync", &self.path))?;
        if new_file {
            // A new file's name is durable only once its folder is synced.
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io("sync", dir))?;
        }
        failpoint();
        Ok(())
    }

    /// Every record, oldest first, each verified.
    ///
    /// # Errors
    /// [`JournalError::Corrupt`] naming the line.
    pub fn read(&self) -> Result<Vec<Rollout>, JournalError> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("open", &self.path)(e)),
        };
        let mut records = Vec::new();
        let mut reader = BufReader::new(file);
        let mut line = String::new();
        let mut n = 0;
        loop {
            line.clear();
            let read = reader
                .read_line(&mut line)
                .map_err(io("read", &self.path))?;
            if read == 0 {
                break;
            }
            n += 1;
            let corrupt = |problem: String| JournalError::Corrupt {
                path: self.path.clone(),
                line: n,
                problem,
            };
            let Some(body) = line.strip_suffix('\n') else {
                return Err(corrupt(
                    "the last record is torn (the controller stopped while writing it)".into(),
                ));
            };
            let (crc, json) = body
                .split_once(' ')
                .ok_or_else(|| corrupt("no checksum".into()))?;
            let expected = u32::from_str_radix(crc, 16)
                .map_err(|_| corrupt(format!("checksum {crc:?} is not hex")))?;
            let actual = crc32fast::hash(json.as_bytes());
            if expected != actual {
                return Err(corrupt(format!(
                    "checksum {expected:08x} does not match the record's {actual:08x}"
                )));
            }
            records.push(serde_json::from_str(json).map_err(|e| corrupt(e.to_string()))?);
        }
        Ok(records)
    }

    /// The latest state of the latest rollout.
    ///
    /// # Errors
    /// As [`Journal::read`].
    pub fn current(&self) -> Result<Option<Rollout>, JournalError> {
        Ok(self.read()?.pop())
    }

    /// Takes the model's lock, replacing a stale one (its holder's process
    /// is gone from this host).
    ///
    /// # Errors
    /// [`JournalError::Locked`] when a live process holds it.
    pub fn lock(state_dir: &Path, model: &str) -> Result<Lock, JournalError> {
        let dir = state_dir.join("locks");
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        let path = dir.join(format!("{model}.lock"));
        let host = hostname();
        for _ in 0..2 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut file) => {
                    let body = LockBody {
                        pid: std::process::id(),
                        host: host.clone(),
                        since_ms: now_ms(),
                    };
                    let json = serde_json::to_vec(&body).unwrap_or_default();
                    file.write_all(&json)
                        .and_then(|()| file.sync_all())
                        .map_err(io("write", &path))?;
                    return Ok(Lock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder: Option<LockBody> = std::fs::read(&path)
                        .ok()
                        .and_then(|b| serde_json::from_slice(&b).ok());
                    match holder {
                        Some(h)
                            if h.host != host
                                || Path::new(&format!("/proc/{}", h.pid)).exists() =>
                        {
                            return Err(JournalError::Locked {
                                model: model.to_owned(),
                                path,
                                pid: h.pid,
                                host: h.host,
                                since_ms: h.since_ms,
                            });
                        }
                        // Stale (its process is gone) or unreadable (torn
                        // by a crash while being written): take it over.
                        _ => std::fs::remove_file(&path).map_err(io("remove", &path))?,
                    }
                }
                Err(e) => return Err(io("create", &path)(e)),
            }
        }
        Err(JournalError::Io {
            action: "take",
            path,
            source: std::io::Error::other("lost a race for the lock twice"),
        })
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout(phase: Phase) -> Rollout {
        Rollout {
            id: "r1".into(),
            model: "m".into(),
            strategy: Strategy::Canary,
            from_version: Some(1),
            to_version: 2,
            old_slot: Slot::Blue,
            steps: vec![10, 100],
            step: 0,
            phase,
            weights: Weights::all_to(Slot::Blue),
            reason: None,
            checks: vec![],
            bake_ms: 0,
            shadow_percent: 0,
            thresholds: crate::suite::Thresholds::default(),
            queries: vec![],
            started_ms: 1,
            updated_ms: 2,
        }
    }

    #[test]
    fn records_round_trip_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::new(dir.path(), "m");
        assert_eq!(j.current().unwrap(), None);
        j.append(&rollout(Phase::Loading)).unwrap();
        j.append(&rollout(Phase::SmokeTesting)).unwrap();
        let all = j.read().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(j.current().unwrap().unwrap().phase, Phase::SmokeTesting);
    }

    #[test]
    fn a_torn_or_corrupted_log_is_detected_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::new(dir.path(), "m");
        j.append(&rollout(Phase::Loading)).unwrap();
        j.append(&rollout(Phase::Shifting)).unwrap();
        let text = std::fs::read_to_string(j.path()).unwrap();

        std::fs::write(j.path(), &text[..text.len() - 10]).unwrap();
        let err = j.read().unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("torn"), "{err}");

        let flipped = text.replacen("shifting", "promoted", 1);
        std::fs::write(j.path(), flipped).unwrap();
        let err = j.read().unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("checksum"), "{err}");
    }

    #[test]
    fn a_live_lock_refuses_and_a_stale_one_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let held = Journal::lock(dir.path(), "m").unwrap();
        let err = Journal::lock(dir.path(), "m").unwrap_err().to_string();
        assert!(err.contains("already running"), "{err}");
        drop(held);
        let again = Journal::lock(dir.path(), "m").unwrap();
        // A lock left by a process that no longer exists.
        drop(again);
        let stale = LockBody {
            pid: u32::MAX - 1,
            host: hostname(),
            since_ms: 0,
        };
        std::fs::write(
            dir.path().join("locks/m.lock"),
            serde_json::to_vec(&stale).unwrap(),
        )
        .unwrap();
        assert!(Journal::lock(dir.path(), "m").is_ok());
    }
}
