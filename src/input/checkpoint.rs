//! File offsets that survive restarts: `state_dir/checkpoints.json`.
//!
//! The pipeline owns a [`Checkpoints`] map and calls [`Checkpoints::advance`] only when the rows up
//! to an offset are safe (spooled or accepted), then [`CheckpointStore::save`]s it. A new tailer is
//! started with the [`CheckpointStore::load`]ed map and resumes every file it recognises by
//! [`FileKey`]. Saving is atomic (temp file, fsync, rename, fsync of the directory), so a crash
//! leaves either the old file or the new one; a damaged file is set aside and treated as empty
//! (the agent then re-reads by `start_at`), because refusing to start is worse than a re-read.
//!
//! Each entry also keeps a [`Window`], a checksum of bytes read just before its offset, so a file
//! that has the same device, inode and first line but other content (a lookalike: refilled after
//! copytruncate, or an inode reused with the same header) is not resumed in the middle. Files
//! written before windows existed have none and load as they did; their entries get a window
//! with their next advance.
//!
//! Disk trouble: a state directory the agent may not write in is an error at
//! [`CheckpointStore::open`] (a setup mistake, best said at once); a full disk is not (it may
//! clear). A save that fails later is logged by [`CheckpointStore::save_or_report`] once a
//! minute at most, delivery goes on, and the next save tries again: unsaved offsets only mean
//! rows read again after a restart.
//!
//! The methods here do blocking file I/O; call them from `spawn_blocking` in async code.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::fingerprint::{FileKey, Window};
use crate::trouble::Trouble;

/// The file name under `state_dir`.
pub const CHECKPOINT_FILE: &str = "checkpoints.json";
/// Written first, then renamed over [`CHECKPOINT_FILE`].
const TEMP_FILE: &str = ".checkpoints.json.tmp";
/// Where a file that cannot be parsed is moved, so it can be looked at and is not overwritten.
const CORRUPT_FILE: &str = "checkpoints.json.corrupt";
/// The on-disk format version; another value is treated like a damaged file.
const FORMAT_VERSION: u32 = 1;
/// How long an entry is kept after its last advance once its path no longer holds its file.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Saving checkpoints failed. Loading never fails (see [`CheckpointStore::load`]).
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "cannot write in {}: {source}; make it writable by the user dcrship runs as (the \
         systemd unit's StateDirectory=dcrship does this for /var/lib/dcrship; for another \
         directory add ReadWritePaths= in a drop-in), or choose another with [agent] state_dir \
         or --state-dir",
        path.display()
    )]
    Unwritable { path: PathBuf, source: io::Error },
    #[error("cannot encode checkpoints: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Where one file was read up to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The file offset just past the last line that is safe: reading resumes here.
    pub offset: u64,
    /// The path the file was last read under; informational, and used for pruning.
    pub path: PathBuf,
    /// When `offset` last moved.
    pub updated: Timestamp,
    /// Bytes read just before `offset` (or before an earlier offset of the same file), which a
    /// file must still hold to be resumed here; `None` in entries from older versions.
    pub window: Option<Window>,
}

/// Where a journald input was read up to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalCheckpoint {
    /// The journal cursor of the last entry whose row is safe: reading resumes after it.
    pub cursor: String,
    /// When `cursor` last moved.
    pub updated: Timestamp,
}

/// Offsets by file identity, and journal cursors by input name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoints {
    entries: BTreeMap<FileKey, Checkpoint>,
    journals: BTreeMap<String, JournalCheckpoint>,
}

impl Checkpoints {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that everything before `offset` in `key` is safe. Only ever moves forward, so acks
    /// that arrive out of order cannot move a checkpoint back; returns whether it moved.
    /// `window` (its end at or before `offset`) replaces the entry's window; without one the old
    /// window stays, since the bytes before an earlier offset of the same file do not change.
    pub fn advance(
        &mut self,
        key: FileKey,
        path: &Path,
        offset: u64,
        window: Option<Window>,
    ) -> bool {
        self.advance_at(key, path, offset, window, Timestamp::now())
    }

    /// [`advance`](Self::advance) with the clock given, for tests and replays.
    pub fn advance_at(
        &mut self,
        key: FileKey,
        path: &Path,
        offset: u64,
        window: Option<Window>,
        now: Timestamp,
    ) -> bool {
        let old = self.entries.get(&key);
        if old.is_some_and(|current| current.offset >= offset) {
            return false;
        }
        let window = window
            .filter(|w| w.end <= offset)
            .or_else(|| old.and_then(|c| c.window));
        self.entries.insert(
            key,
            Checkpoint {
                offset,
                path: path.to_path_buf(),
                updated: now,
                window,
            },
        );
        true
    }

    #[cfg(test)]
    pub fn get(&self, key: &FileKey) -> Option<&Checkpoint> {
        self.entries.get(key)
    }

    #[cfg(test)]
    pub fn offset(&self, key: &FileKey) -> Option<u64> {
        self.entries.get(key).map(|c| c.offset)
    }

    #[cfg(test)]
    pub fn remove(&mut self, key: &FileKey) -> Option<Checkpoint> {
        self.entries.remove(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&FileKey, &Checkpoint)> {
        self.entries.iter()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len() + self.journals.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.journals.is_empty()
    }

    /// Records that the rows of journald input `input` are safe up to the entry at `cursor`.
    /// Cursors have no order of their own: the caller gives them in reading order (the ack
    /// tracker's safe prefix). Returns whether it changed.
    pub fn advance_journal(&mut self, input: &str, cursor: &str) -> bool {
        self.advance_journal_at(input, cursor, Timestamp::now())
    }

    /// [`advance_journal`](Self::advance_journal) with the clock given.
    pub fn advance_journal_at(&mut self, input: &str, cursor: &str, now: Timestamp) -> bool {
        if self.journal(input).is_some_and(|c| c.cursor == cursor) {
            return false;
        }
        let cp = JournalCheckpoint {
            cursor: cursor.to_string(),
            updated: now,
        };
        self.journals.insert(input.to_string(), cp);
        true
    }

    /// The saved position of journald input `input`.
    pub fn journal(&self, input: &str) -> Option<&JournalCheckpoint> {
        self.journals.get(input)
    }

    /// Drops entries not advanced for `max_age` whose file is gone (as `present` tells); returns
    /// how many. A file that is still there keeps its entry however old, or an idle log would be
    /// re-read from its start after a restart. Of several entries for one device and inode (a
    /// reused inode, lookalikes) only the latest can be the file there now.
    pub fn prune(
        &mut self,
        now: Timestamp,
        max_age: Duration,
        present: impl Fn(&FileKey, &Path) -> bool,
    ) -> usize {
        let mut latest: std::collections::HashMap<(u64, u64), Timestamp> = Default::default();
        for (key, cp) in &self.entries {
            let t = latest.entry((key.dev, key.ino)).or_insert(cp.updated);
            *t = (*t).max(cp.updated);
        }
        let before = self.entries.len();
        self.entries.retain(|key, cp| {
            let age = now.duration_since(cp.updated);
            let old = age.is_positive() && age.unsigned_abs() >= max_age;
            let newest = latest.get(&(key.dev, key.ino)) == Some(&cp.updated);
            !old || (newest && present(key, &cp.path))
        });
        before - self.entries.len()
    }

    /// [`prune`](Self::prune) against the file system: a file is present when its recorded path
    /// still holds its device and inode. Blocking.
    pub fn prune_stale(&mut self, max_age: Duration) -> usize {
        self.prune(Timestamp::now(), max_age, still_at_path)
    }
}

/// Whether `path` still names the file `key` was read from (same device and inode).
pub fn still_at_path(key: &FileKey, path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.dev() == key.dev && m.ino() == key.ino)
}

/// The checkpoint file in a state directory.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    dir: PathBuf,
    file: PathBuf,
    trouble: Arc<Trouble>,
}

impl CheckpointStore {
    /// Uses `state_dir/checkpoints.json`, creating `state_dir` (mode 0700 where it is new) if it
    /// is missing, and checks that a file can be written there: a directory that is not
    /// writable is [`CheckpointError::Unwritable`]; a full disk is only logged, since it may
    /// clear and delivery does not need the disk.
    pub fn open(state_dir: &Path) -> Result<Self, CheckpointError> {
        crate::private_fs::create_dir_all(state_dir).map_err(|source| CheckpointError::Io {
            action: "create state directory",
            path: state_dir.to_path_buf(),
            source,
        })?;
        let probe = state_dir.join(TEMP_FILE);
        match write_synced(&probe, b"") {
            Ok(()) => {
                let _ = fs::remove_file(&probe);
            }
            Err(e) if is_disk_full(&e) => {
                let _ = fs::remove_file(&probe);
                tracing::warn!(path = %state_dir.display(), "the state directory's disk is full: {e}; delivering anyway, checkpoints are saved once there is room");
            }
            Err(source) => {
                return Err(CheckpointError::Unwritable {
                    path: state_dir.to_path_buf(),
                    source,
                })
            }
        }
        Ok(CheckpointStore {
            dir: state_dir.to_path_buf(),
            file: state_dir.join(CHECKPOINT_FILE),
            trouble: Arc::new(Trouble::new("write the checkpoints")),
        })
    }

    /// The checkpoint file's path.
    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// The saved checkpoints. A missing file is empty; an unreadable or damaged one is logged at
    /// warn and is empty too (a damaged one is first moved to `checkpoints.json.corrupt`).
    pub fn load(&self) -> Checkpoints {
        let bytes = match fs::read(&self.file) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Checkpoints::new(),
            Err(e) => {
                tracing::warn!(path = %self.file.display(), "cannot read checkpoints, files will be read by start_at: {e}");
                return Checkpoints::new();
            }
        };
        match decode(&bytes) {
            Ok(checkpoints) => checkpoints,
            Err(reason) => {
                let aside = self.dir.join(CORRUPT_FILE);
                let moved = fs::rename(&self.file, &aside).is_ok();
                tracing::warn!(
                    path = %self.file.display(),
                    moved_to = %if moved { aside.display().to_string() } else { "(not moved)".into() },
                    "damaged checkpoint file ignored, files will be read by start_at: {reason}"
                );
                Checkpoints::new()
            }
        }
    }

    /// Replaces the file atomically: write a temp file in the same directory, fsync it, rename it
    /// over the old one, fsync the directory so the rename itself is durable. One task saves.
    pub fn save(&self, checkpoints: &Checkpoints) -> Result<(), CheckpointError> {
        let bytes = encode(checkpoints)?;
        let temp = self.dir.join(TEMP_FILE);
        if let Err(e) = write_synced(&temp, &bytes) {
            let _ = fs::remove_file(&temp);
            return Err(io_error("write", &temp, e));
        }
        fs::rename(&temp, &self.file).map_err(|e| io_error("rename", &temp, e))?;
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| io_error("fsync directory", &self.dir, e))
    }
}

impl CheckpointStore {
    /// [`save`](Self::save), for the agent: a failure is logged (the first, then at most one a
    /// minute while saves keep failing, then one line when a save works again) and is not an
    /// error to the caller, who keeps delivering and saves again later. Returns whether it saved.
    pub fn save_or_report(&self, checkpoints: &Checkpoints) -> bool {
        match self.save(checkpoints) {
            Ok(()) => {
                self.trouble.worked(&self.file);
                true
            }
            Err(e) => {
                self.trouble.failed(
                    &self.file,
                    &e,
                    "delivery goes on; offsets not yet saved are read again after a restart \
                     (duplicates, not loss); free disk space or fix the directory",
                );
                false
            }
        }
    }
}

/// ENOSPC or EDQUOT: space that may come back, unlike a permission.
fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

fn io_error(action: &'static str, path: &Path, source: io::Error) -> CheckpointError {
    CheckpointError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = crate::private_fs::options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// `checkpoints.json`: versioned, one object per file. The fingerprint is hex so that JSON
/// readers without 64-bit integers (jq) show it exactly. `generation` (left out when 0) and
/// `window` are optional, so files written before they existed still load; so is `journals`
/// (journald inputs' cursors), written only when there is one, so an agent without journald
/// inputs writes the same file as before.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDisk {
    version: u32,
    files: Vec<OnDiskEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    journals: Vec<OnDiskJournal>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDiskJournal {
    input: String,
    cursor: String,
    updated: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDiskEntry {
    dev: u64,
    ino: u64,
    fingerprint: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    generation: u32,
    offset: u64,
    path: String,
    updated: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    window: Option<OnDiskWindow>,
}

/// A [`Window`]: `len` bytes ending at `end` with CRC-32 `crc32` (hex).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDiskWindow {
    end: u64,
    len: u32,
    crc32: String,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl From<&Checkpoints> for OnDisk {
    fn from(checkpoints: &Checkpoints) -> Self {
        let files = checkpoints
            .iter()
            .map(|(key, cp)| OnDiskEntry {
                dev: key.dev,
                ino: key.ino,
                fingerprint: format!("{:016x}", key.fingerprint),
                generation: key.generation,
                offset: cp.offset,
                path: cp.path.to_string_lossy().into_owned(),
                updated: cp.updated.to_string(),
                window: cp.window.map(|w| OnDiskWindow {
                    end: w.end,
                    len: w.len,
                    crc32: format!("{:08x}", w.crc),
                }),
            })
            .collect();
        let journals = checkpoints
            .journals
            .iter()
            .map(|(input, cp)| OnDiskJournal {
                input: input.clone(),
                cursor: cp.cursor.clone(),
                updated: cp.updated.to_string(),
            })
            .collect();
        OnDisk {
            version: FORMAT_VERSION,
            files,
            journals,
        }
    }
}

/// The bytes of `checkpoints.json` for `checkpoints`.
fn encode(checkpoints: &Checkpoints) -> Result<Vec<u8>, CheckpointError> {
    Ok(serde_json::to_vec_pretty(&OnDisk::from(checkpoints))?)
}

/// Parses the whole file or says why not: one bad entry means the file is not ours to trust.
fn decode(bytes: &[u8]) -> Result<Checkpoints, String> {
    let on_disk: OnDisk = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if on_disk.version != FORMAT_VERSION {
        return Err(format!("unknown format version {}", on_disk.version));
    }
    let mut checkpoints = Checkpoints::new();
    for entry in on_disk.files {
        let fingerprint = u64::from_str_radix(&entry.fingerprint, 16)
            .map_err(|_| format!("bad fingerprint {:?}", entry.fingerprint))?;
        let updated: Timestamp = entry
            .updated
            .parse()
            .map_err(|_| format!("bad timestamp {:?}", entry.updated))?;
        let window = match entry.window {
            None => None,
            Some(w) => {
                let crc = u32::from_str_radix(&w.crc32, 16)
                    .map_err(|_| format!("bad window checksum {:?}", w.crc32))?;
                if w.len == 0 || u64::from(w.len) > w.end || w.end > entry.offset {
                    return Err(format!(
                        "bad window (end {}, len {}) for offset {}",
                        w.end, w.len, entry.offset
                    ));
                }
                Some(Window {
                    end: w.end,
                    len: w.len,
                    crc,
                })
            }
        };
        let key = FileKey {
            dev: entry.dev,
            ino: entry.ino,
            fingerprint,
            generation: entry.generation,
        };
        checkpoints.entries.insert(
            key,
            Checkpoint {
                offset: entry.offset,
                path: PathBuf::from(entry.path),
                updated,
                window,
            },
        );
    }
    for j in on_disk.journals {
        let updated: Timestamp = j
            .updated
            .parse()
            .map_err(|_| format!("bad timestamp {:?}", j.updated))?;
        let cp = JournalCheckpoint {
            cursor: j.cursor,
            updated,
        };
        checkpoints.journals.insert(j.input, cp);
    }
    Ok(checkpoints)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ino: u64) -> FileKey {
        FileKey {
            dev: 1,
            ino,
            fingerprint: u64::MAX - ino,
            generation: 0,
        }
    }

    fn window(end: u64, crc: u32) -> Option<Window> {
        Some(Window { end, len: 4, crc })
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn advance_only_moves_forward() {
        let mut cps = Checkpoints::new();
        assert!(cps.advance(key(1), Path::new("/l/a.log"), 100, None));
        assert!(!cps.advance(key(1), Path::new("/l/a.log"), 40, None));
        assert!(!cps.advance(key(1), Path::new("/l/a.log"), 100, None));
        assert_eq!(cps.offset(&key(1)), Some(100));
        assert!(cps.advance(key(1), Path::new("/l/a.log.1"), 150, None));
        let cp = cps.get(&key(1)).expect("entry");
        assert_eq!(
            (cp.offset, cp.path.as_path()),
            (150, Path::new("/l/a.log.1"))
        );
    }

    #[test]
    fn a_window_is_replaced_by_a_newer_one_and_kept_when_none_comes() {
        let mut cps = Checkpoints::new();
        let p = Path::new("/l/a.log");
        assert!(cps.advance(key(1), p, 100, window(90, 7)));
        assert!(cps.advance(key(1), p, 150, None));
        assert_eq!(cps.get(&key(1)).and_then(|c| c.window), window(90, 7));
        assert!(cps.advance(key(1), p, 200, window(200, 8)));
        assert_eq!(cps.get(&key(1)).and_then(|c| c.window), window(200, 8));
        // A window past the offset cannot be of bytes before it: ignored.
        assert!(cps.advance(key(1), p, 210, window(300, 9)));
        assert_eq!(cps.get(&key(1)).and_then(|c| c.window), window(200, 8));
        // Not moving forward changes nothing, the window included.
        assert!(!cps.advance(key(1), p, 210, window(205, 1)));
        assert_eq!(cps.get(&key(1)).and_then(|c| c.window), window(200, 8));
    }

    #[test]
    fn a_file_written_before_windows_and_generations_still_loads() -> Result<(), CheckpointError> {
        let dir = tempfile::tempdir().map_err(|e| io_error("tempdir", Path::new("."), e))?;
        let store = CheckpointStore::open(dir.path())?;
        let old = br#"{"version":1,"files":[{"dev":2049,"ino":77,"fingerprint":"00000000000000ab","offset":4096,"path":"/var/log/app.log","updated":"2026-03-01T10:00:00Z"}]}"#;
        fs::write(store.path(), old).expect("write");
        let cps = store.load();
        let k = FileKey {
            dev: 2049,
            ino: 77,
            fingerprint: 0xab,
            generation: 0,
        };
        let cp = cps.get(&k).expect("entry");
        assert_eq!((cp.offset, cp.window), (4096, None));
        // Saved again, an entry without a window or generation is written as before.
        store.save(&cps)?;
        let text = fs::read_to_string(store.path()).expect("read");
        assert!(
            !text.contains("window") && !text.contains("generation"),
            "{text}"
        );
        Ok(())
    }

    #[test]
    fn windows_and_generations_round_trip_and_bad_ones_are_refused() -> Result<(), CheckpointError>
    {
        let dir = tempfile::tempdir().map_err(|e| io_error("tempdir", Path::new("."), e))?;
        let store = CheckpointStore::open(dir.path())?;
        let mut cps = Checkpoints::new();
        let lookalike = FileKey {
            generation: 3,
            ..key(5)
        };
        cps.advance(key(5), Path::new("/a"), 100, window(100, 0xdead_beef));
        cps.advance(lookalike, Path::new("/a"), 40, window(30, 1));
        store.save(&cps)?;
        let text = fs::read_to_string(store.path()).expect("read");
        assert!(text.contains("\"crc32\": \"deadbeef\""), "{text}");
        assert_eq!(store.load(), cps);
        for bad in [
            r#"{"end":10,"len":0,"crc32":"00"}"#,
            r#"{"end":10,"len":11,"crc32":"00"}"#,
            r#"{"end":101,"len":4,"crc32":"00"}"#,
            r#"{"end":10,"len":4,"crc32":"xyz"}"#,
        ] {
            let text = format!(
                r#"{{"version":1,"files":[{{"dev":1,"ino":2,"fingerprint":"ab","offset":100,"path":"/a","updated":"2026-01-01T00:00:00Z","window":{bad}}}]}}"#
            );
            fs::write(store.path(), text).expect("write");
            assert!(store.load().is_empty(), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn save_then_load_round_trips_and_leaves_no_temp_file() -> Result<(), CheckpointError> {
        let dir = tempfile::tempdir().map_err(|e| io_error("tempdir", Path::new("."), e))?;
        let store = CheckpointStore::open(&dir.path().join("state/nested"))?;
        let mut cps = Checkpoints::new();
        let now = ts("2026-03-01T10:00:00.123456Z");
        cps.advance_at(key(7), Path::new("/var/log/app.log"), 4096, None, now);
        cps.advance_at(key(8), Path::new("/var/log/x \"q\".log"), 1, None, now);
        store.save(&cps)?;
        assert_eq!(store.load(), cps);
        let names: Vec<_> = fs::read_dir(store.path().parent().expect("dir"))
            .expect("read dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(CHECKPOINT_FILE)]);
        // A second save replaces the first.
        cps.advance_at(key(7), Path::new("/var/log/app.log"), 5000, None, now);
        store.save(&cps)?;
        assert_eq!(store.load().offset(&key(7)), Some(5000));
        Ok(())
    }

    #[test]
    fn journal_cursors_round_trip_beside_file_offsets() -> Result<(), CheckpointError> {
        let dir = tempfile::tempdir().map_err(|e| io_error("tempdir", Path::new("."), e))?;
        let store = CheckpointStore::open(dir.path())?;
        let mut cps = Checkpoints::new();
        let now = ts("2026-03-01T10:00:00Z");
        cps.advance_at(key(7), Path::new("/var/log/app.log"), 10, None, now);
        assert!(cps.advance_journal_at("journal", "s=ab;i=1f;b=cd", now));
        assert!(!cps.advance_journal_at("journal", "s=ab;i=1f;b=cd", now));
        assert!(cps.advance_journal_at("journal", "s=ab;i=20;b=cd", now));
        store.save(&cps)?;
        let loaded = store.load();
        assert_eq!(loaded, cps);
        assert_eq!(
            loaded.journal("journal").map(|c| c.cursor.as_str()),
            Some("s=ab;i=20;b=cd")
        );
        assert_eq!(loaded.len(), 2);
        Ok(())
    }

    #[test]
    fn a_file_of_the_earlier_format_loads_and_is_written_the_same() -> Result<(), CheckpointError> {
        let dir = tempfile::tempdir().map_err(|e| io_error("tempdir", Path::new("."), e))?;
        let store = CheckpointStore::open(dir.path())?;
        // As written before journald inputs existed: no "journals".
        let old = "{\n  \"version\": 1,\n  \"files\": [\n    {\n      \"dev\": 1,\n      \"ino\": 2,\n      \"fingerprint\": \"00000000000000ff\",\n      \"offset\": 3,\n      \"path\": \"/a\",\n      \"updated\": \"2026-01-01T00:00:00Z\"\n    }\n  ]\n}";
        fs::write(store.path(), old).expect("write");
        let cps = store.load();
        assert_eq!(cps.len(), 1);
        assert!(cps.journal("x").is_none());
        store.save(&cps)?;
        assert_eq!(fs::read_to_string(store.path()).expect("read"), old);
        Ok(())
    }

    #[test]
    fn a_missing_file_loads_as_empty() -> Result<(), CheckpointError> {
        let dir = tempfile::tempdir().map_err(|e| io_error("tempdir", Path::new("."), e))?;
        assert!(CheckpointStore::open(dir.path())?.load().is_empty());
        Ok(())
    }

    #[test]
    fn a_damaged_file_loads_as_empty_and_is_set_aside() -> Result<(), CheckpointError> {
        let dir = tempfile::tempdir().map_err(|e| io_error("tempdir", Path::new("."), e))?;
        let store = CheckpointStore::open(dir.path())?;
        let damaged: [&[u8]; 5] = [
            b"{\"version\":1,\"files\":[{\"dev\":1",
            b"\x00\x00\x00garbage",
            b"{\"version\":99,\"files\":[]}",
            b"{\"version\":1,\"files\":[{\"dev\":1,\"ino\":2,\"fingerprint\":\"zz\",\"offset\":3,\"path\":\"/a\",\"updated\":\"2026-01-01T00:00:00Z\"}]}",
            b"",
        ];
        for bytes in damaged {
            fs::write(store.path(), bytes).expect("write");
            assert!(
                store.load().is_empty(),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
            assert_eq!(
                fs::read(dir.path().join(CORRUPT_FILE)).expect("aside"),
                bytes
            );
            assert!(!store.path().exists());
        }
        // The store still works afterwards.
        let mut cps = Checkpoints::new();
        cps.advance(key(3), Path::new("/a"), 9, None);
        store.save(&cps)?;
        assert_eq!(store.load(), cps);
        Ok(())
    }

    #[test]
    fn a_failed_save_keeps_the_previous_file() -> Result<(), CheckpointError> {
        let dir = tempfile::tempdir().map_err(|e| io_error("tempdir", Path::new("."), e))?;
        let store = CheckpointStore::open(dir.path())?;
        let mut cps = Checkpoints::new();
        cps.advance(key(1), Path::new("/a"), 10, None);
        store.save(&cps)?;
        // A directory where the temp file goes makes the write fail.
        fs::create_dir(dir.path().join(TEMP_FILE)).expect("mkdir");
        cps.advance(key(1), Path::new("/a"), 20, None);
        assert!(store.save(&cps).is_err());
        assert_eq!(store.load().offset(&key(1)), Some(10));
        Ok(())
    }

    #[test]
    fn a_state_dir_that_cannot_be_written_is_an_error_at_open_with_the_fix() {
        let dir = tempfile::tempdir().expect("tmp");
        // Root ignores permissions: a directory where the probe file goes fails the same way.
        fs::create_dir(dir.path().join(TEMP_FILE)).expect("mkdir");
        let err = CheckpointStore::open(dir.path()).expect_err("unwritable");
        assert!(matches!(err, CheckpointError::Unwritable { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
        assert!(
            msg.contains("StateDirectory=") && msg.contains("state_dir"),
            "{msg}"
        );
        // A file in place of the directory is refused too (by the create).
        let file = dir.path().join("plain-file");
        fs::write(&file, b"x").expect("write");
        assert!(CheckpointStore::open(&file).is_err());
    }

    #[test]
    fn a_full_disk_names_the_file_and_the_os_error_and_a_later_save_works(
    ) -> Result<(), CheckpointError> {
        let dir = tempfile::tempdir().map_err(|e| io_error("tempdir", Path::new("."), e))?;
        let store = CheckpointStore::open(dir.path())?;
        let mut cps = Checkpoints::new();
        cps.advance(key(1), Path::new("/a"), 10, None);
        // Writes to /dev/full fail with ENOSPC, as on a full disk.
        std::os::unix::fs::symlink("/dev/full", dir.path().join(TEMP_FILE)).expect("symlink");
        let err = store.save(&cps).expect_err("disk full");
        let msg = err.to_string();
        assert!(
            msg.contains(TEMP_FILE) && msg.contains("No space left on device"),
            "{msg}"
        );
        assert!(!store.path().exists());
        // The failed temp file was removed; the next save works.
        store.save(&cps)?;
        assert_eq!(store.load(), cps);
        Ok(())
    }

    #[test]
    fn only_a_full_disk_or_quota_counts_as_full() {
        let os = io::Error::from_raw_os_error;
        assert!(is_disk_full(&os(28))); // ENOSPC
        assert!(is_disk_full(&os(122))); // EDQUOT
        assert!(!is_disk_full(&os(13))); // EACCES
        assert!(!is_disk_full(&os(30))); // EROFS
    }

    #[test]
    fn save_or_report_keeps_failing_quietly_and_recovers() -> Result<(), CheckpointError> {
        let dir = tempfile::tempdir().map_err(|e| io_error("tempdir", Path::new("."), e))?;
        let store = CheckpointStore::open(dir.path())?;
        let mut cps = Checkpoints::new();
        cps.advance(key(1), Path::new("/a"), 10, None);
        fs::create_dir(dir.path().join(TEMP_FILE)).expect("mkdir");
        assert!(!store.save_or_report(&cps));
        assert!(!store.save_or_report(&cps));
        fs::remove_dir(dir.path().join(TEMP_FILE)).expect("rmdir");
        assert!(store.save_or_report(&cps));
        assert_eq!(store.load(), cps);
        Ok(())
    }

    #[test]
    fn prune_drops_only_old_entries_whose_file_is_gone() {
        let mut cps = Checkpoints::new();
        let old = ts("2026-01-01T00:00:00Z");
        let recent = ts("2026-01-09T00:00:00Z");
        cps.advance_at(key(1), Path::new("/gone-old"), 1, None, old);
        cps.advance_at(key(2), Path::new("/here-old"), 1, None, old);
        cps.advance_at(key(3), Path::new("/gone-recent"), 1, None, recent);
        let now = ts("2026-01-10T00:00:00Z");
        let removed = cps.prune(now, DEFAULT_MAX_AGE, |_, p| p == Path::new("/here-old"));
        assert_eq!(removed, 1);
        assert_eq!(cps.offset(&key(1)), None);
        assert_eq!(cps.offset(&key(2)), Some(1));
        assert_eq!(cps.offset(&key(3)), Some(1));
    }

    #[test]
    fn prune_drops_an_old_entry_of_an_inode_that_a_newer_entry_holds() {
        let mut cps = Checkpoints::new();
        let old = ts("2026-01-01T00:00:00Z");
        let newer = ts("2026-01-02T00:00:00Z");
        let lookalike = FileKey {
            generation: 1,
            ..key(1)
        };
        cps.advance_at(key(1), Path::new("/here"), 5, None, old);
        cps.advance_at(lookalike, Path::new("/here"), 9, None, newer);
        let now = ts("2026-01-20T00:00:00Z");
        assert_eq!(cps.prune(now, DEFAULT_MAX_AGE, |_, _| true), 1);
        assert_eq!(cps.offset(&key(1)), None);
        assert_eq!(cps.offset(&lookalike), Some(9));
    }

    #[test]
    fn still_at_path_compares_device_and_inode() -> io::Result<()> {
        let tmp = tempfile::NamedTempFile::new()?;
        let meta = fs::metadata(tmp.path())?;
        let here = FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
            fingerprint: 0,
            generation: 0,
        };
        assert!(still_at_path(&here, tmp.path()));
        let other = FileKey {
            ino: meta.ino() + 1,
            ..here
        };
        assert!(!still_at_path(&other, tmp.path()));
        assert!(!still_at_path(&here, Path::new("/nonexistent/dcrship")));
        Ok(())
    }
}
