//! Finding a file that left its path while the tailer did not hold it open: the agent was
//! stopped, the file was closed to save descriptors, or it was truncated (copytruncate) before
//! all of it was read.
//!
//! A *lost* file is a key, the offset it was read to, and the window before that offset. It is
//! looked for in the directory of its watched name, whatever the globs say:
//! 1. **renamed**: the same device and inode under another name, still holding its first line
//!    and window (Fluent Bit and Vector stop here);
//! 2. **copied** (copytruncate) or **compressed** (`.gz`): a file whose name starts like the
//!    watched one (`app.log.1`, `app.log-20261207`, `app.log.1.gz`, `app-20261207.log`) and
//!    whose bytes, decompressed for `.gz`, have the same first line and the same window. A
//!    new inode can be told only by its bytes, so this needs the window; checkpoints written
//!    before windows existed are found by rename only.
//!
//! A file whose size (for `.gz`, the size its trailer records) equals the offset of a lost file
//! with its first line has nothing left to read and is skipped without decompressing, so old
//! checkpoints of long-rotated files cost a stat at each start. Files the globs match are read
//! in their own right and are never a result.
//!
//! A file can also come and go without the agent ever seeing it: created after a rotation while
//! the agent was stopped, and rotated again before it started. [`Siblings::unseen`] finds those:
//! rotations of a watched name (by logrotate's naming: a number or a date after the name, or
//! before its extension; plain or `.gz`) modified after the agent's last checkpoint of that name
//! and none of the files it read under it; they are read whole. Blocking: it reads directories
//! and files.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::discover::FileId;
use super::gzip::{is_gzip_name, recorded_size, GzStream};
use crate::input::fingerprint::{self, FileKey, Window, FINGERPRINT_BYTES};

/// Related names tried per lost file at most, newest first.
const MAX_CANDIDATES: usize = 64;
/// Compressions this agent cannot read: said at warn when one may hold a lost file.
const UNREADABLE: [&str; 7] = ["bz2", "xz", "zst", "lz4", "Z", "lzma", "zip"];
/// A rotation modified this long before the last checkpoint of its name still counts as new
/// (clocks and timestamps are coarse).
const MTIME_SLACK: Duration = Duration::from_secs(5);

/// A file whose key no longer sits at its watched name.
#[derive(Debug, Clone)]
pub(super) struct Lost {
    pub key: FileKey,
    pub offset: u64,
    pub window: Option<Window>,
    /// The watched name it was read under.
    pub path: Arc<PathBuf>,
    /// A writer may still be appending to it (it was open moments ago): read it even when
    /// nothing is left now. At startup a renamed file read to its end is left alone.
    pub late_writes: bool,
}

/// How a file was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum How {
    /// The same inode under another name.
    Renamed,
    /// Another file with the same bytes up to the offset (copytruncate).
    Copied,
    /// A `.gz` whose decompressed bytes are the same up to the offset.
    Compressed,
    /// A rotation the agent never saw (see [`Siblings::unseen`]).
    Unseen,
}

impl How {
    pub fn as_str(self) -> &'static str {
        match self {
            How::Renamed => "renamed",
            How::Copied => "copied",
            How::Compressed => "compressed",
            How::Unseen => "never seen: rotated while the agent was stopped",
        }
    }
}

/// Where a lost file was found, opened and checked, ready to be read from its offset.
#[derive(Debug)]
pub(super) enum Rotated {
    Plain {
        path: PathBuf,
        file: File,
        id: FileId,
        how: How,
        size: u64,
    },
    Gzip {
        path: PathBuf,
        stream: Box<GzStream>,
        id: FileId,
        how: How,
    },
}

/// What the agent read under one watched name before it started: to tell rotations it never
/// saw from those it did.
#[derive(Debug, Clone)]
pub(super) struct History {
    pub path: PathBuf,
    /// The last time a checkpoint of a file under this name moved.
    pub since: SystemTime,
    /// The files read under it (their key, offset and window).
    pub seen: Vec<Lost>,
}

#[derive(Debug, Clone)]
struct Entry {
    path: PathBuf,
    name: String,
    id: FileId,
    size: u64,
    mtime: (i64, i64),
}

/// A name in a directory listing, with the inode `readdir` gives (no stat yet).
#[derive(Debug, Clone)]
struct Name {
    name: String,
    path: PathBuf,
    ino: u64,
}

/// One search pass: directory listings, stats and gzip probes are read once however many lost
/// files share them; only the names that may be a result are stat'ed, so a directory of ten
/// thousand logs costs one listing.
pub(super) struct Siblings {
    dirs: HashMap<PathBuf, Vec<Name>>,
    stats: HashMap<PathBuf, Option<Entry>>,
    /// (fingerprint, offset) of every lost file of the pass and every checkpoint the tailer
    /// started with: a candidate of that size with that first line was read to its end.
    done: HashSet<(u64, u64)>,
    /// Per `.gz`: its first line's fingerprint and recorded size, when readable.
    probes: HashMap<FileId, Option<(u64, u32)>>,
    /// Files found already, so no two lost files take the same one.
    taken: HashSet<FileId>,
    /// Unreadable compressed candidates were reported.
    warned: bool,
}

/// What a search found.
#[derive(Debug)]
pub(super) enum Search {
    Found(Rotated),
    /// The same inode, still the lost file, under a name the globs match (a scan takes it),
    /// or read to its end already: either way it should be known where it was read to.
    Known,
    Nothing,
}

impl Siblings {
    /// A pass for `lost`; `ends` are (fingerprint, offset) of the checkpoints known besides.
    pub fn new(lost: &[Lost], ends: &HashSet<(u64, u64)>) -> Self {
        let mut done = ends.clone();
        done.extend(lost.iter().map(|l| (l.key.fingerprint, l.offset)));
        Siblings {
            dirs: HashMap::new(),
            stats: HashMap::new(),
            done,
            probes: HashMap::new(),
            taken: HashSet::new(),
            warned: false,
        }
    }

    /// Looks for `lost` beside its watched name. `skip` holds the files the tailer holds (none
    /// of them is it: they were told apart already); `watched` says which paths the globs match
    /// (a copy there is read in its own right).
    pub fn find(
        &mut self,
        lost: &Lost,
        skip: &HashSet<FileId>,
        watched: &dyn Fn(&Path) -> bool,
    ) -> Search {
        match self.find_in_dir(lost, skip, watched) {
            Some(found) => found,
            None => Search::Nothing,
        }
    }

    fn find_in_dir(
        &mut self,
        lost: &Lost,
        skip: &HashSet<FileId>,
        watched: &dyn Fn(&Path) -> bool,
    ) -> Option<Search> {
        let dir = lost.path.parent()?.to_path_buf();
        let name = lost.path.file_name()?.to_string_lossy().into_owned();
        let held =
            |e: &Entry, taken: &HashSet<FileId>| skip.contains(&e.id) || taken.contains(&e.id);
        let key = lost.key;
        // A symbolic link's inode is known only once followed.
        let same_inode = self.entries(&dir, |n| n.ino == key.ino || n.ino == 0);
        for e in same_inode
            .iter()
            .filter(|e| e.id.dev == key.dev && e.id.ino == key.ino && !held(e, &self.taken))
        {
            match open_plain(e, lost) {
                Ok(Some(_)) if watched(&e.path) => return Some(Search::Known),
                Ok(Some(_)) if e.size == lost.offset && !lost.late_writes => {
                    return Some(Search::Known)
                }
                Ok(Some(file)) => {
                    self.taken.insert(e.id);
                    return Some(Search::Found(Rotated::Plain {
                        path: e.path.clone(),
                        file,
                        id: e.id,
                        how: How::Renamed,
                        size: e.size,
                    }));
                }
                Ok(None) => {} // the inode now holds another file
                Err(err) => {
                    tracing::debug!(path = %e.path.display(), "cannot check a rotated file: {err}")
                }
            }
        }
        // A new inode is told by its bytes: the window, or, when nothing was read yet (a file
        // seen but rotated before a line of it was safe), its first line alone.
        if lost.window.is_none() && lost.offset > 0 {
            return None;
        }
        let entries = self.entries(&dir, |n| n.name != name && related_name(&name, &n.name));
        let mut related: Vec<&Entry> = entries
            .iter()
            .filter(|e| !held(e, &self.taken) && !watched(&e.path))
            .collect();
        related.sort_by_key(|e| std::cmp::Reverse(e.mtime));
        let mut unreadable = Vec::new();
        for e in related.into_iter().take(MAX_CANDIDATES) {
            let found = if is_gzip_name(&e.path) {
                self.try_gzip(e, lost)
            } else if UNREADABLE
                .iter()
                .any(|x| Path::new(&e.name).extension() == Some(OsStr::new(x)))
            {
                unreadable.push(e.path.clone());
                continue;
            } else {
                self.try_copy(e, lost)
            };
            match found {
                Ok(Some(found)) => {
                    self.taken.insert(e.id);
                    return Some(Search::Found(found));
                }
                Ok(None) => {}
                Err(Done) => return None,
            }
        }
        if !unreadable.is_empty() && !self.warned {
            self.warned = true;
            tracing::warn!(
                path = %lost.path.display(),
                offset = lost.offset,
                candidates = ?unreadable,
                "a checkpointed file is gone from its path and may have been compressed in a format this agent cannot read (only gzip is); lines written after the checkpoint are not sent unless it is decompressed where the globs match"
            );
        }
        None
    }

    /// A plain copy with the lost file's bytes up to its offset.
    fn try_copy(&mut self, e: &Entry, lost: &Lost) -> Result<Option<Rotated>, Done> {
        if e.size < lost.offset
            || (lost.window.is_none() && self.done_elsewhere(lost, e.size, true))
        {
            return Ok(None);
        }
        match open_plain(e, lost) {
            Ok(Some(_)) if e.size == lost.offset => Err(Done),
            Ok(Some(file)) => Ok(Some(Rotated::Plain {
                path: e.path.clone(),
                file,
                id: e.id,
                how: How::Copied,
                size: e.size,
            })),
            Ok(None) => Ok(None),
            Err(err) => {
                tracing::debug!(path = %e.path.display(), "cannot check a rotated copy: {err}");
                Ok(None)
            }
        }
    }

    /// A `.gz` whose decompressed bytes are the lost file's up to its offset.
    fn try_gzip(&mut self, e: &Entry, lost: &Lost) -> Result<Option<Rotated>, Done> {
        let Some((fp, size)) = self.probe(e) else {
            return Ok(None);
        };
        if fp != lost.key.fingerprint {
            return Ok(None);
        }
        // Sizes are recorded modulo 2^32: exact below 4 GiB, which rotated logs rarely pass.
        if size == lost.offset as u32 {
            return Err(Done);
        }
        if self.done_elsewhere(lost, u64::from(size), false) {
            return Ok(None);
        }
        let Some(window) = lost.window else {
            // Nothing read yet (see `find_in_dir`): the first line is all there is to go by.
            let stream = File::open(&e.path).map(GzStream::new);
            return Ok(stream.ok().map(|stream| Rotated::Gzip {
                path: e.path.clone(),
                stream: Box::new(stream),
                id: e.id,
                how: How::Compressed,
            }));
        };
        let checked = File::open(&e.path).and_then(|file| {
            let mut stream = GzStream::new(file);
            let mut bytes = vec![0; window.len as usize];
            let n = stream.fill_at(&mut bytes, window.start())?;
            Ok((n == bytes.len() && window.matches(&bytes)).then_some(stream))
        });
        match checked {
            Ok(Some(stream)) => Ok(Some(Rotated::Gzip {
                path: e.path.clone(),
                stream: Box::new(stream),
                id: e.id,
                how: How::Compressed,
            })),
            Ok(None) => Ok(None),
            Err(err) => {
                tracing::warn!(path = %e.path.display(), "cannot read a compressed rotated file: {err}");
                Ok(None)
            }
        }
    }

    /// Rotations of `history.path` the agent never saw: named as logrotate names rotations,
    /// modified after `history.since`, neither held nor matched by the globs, and none of the
    /// files in `history.seen` (no seen file with its first line whose window it holds). Each
    /// comes with the key and start (offset 0) to read it under.
    pub fn unseen(
        &mut self,
        history: &History,
        skip: &HashSet<FileId>,
        watched: &dyn Fn(&Path) -> bool,
    ) -> Vec<(Lost, Rotated)> {
        let (Some(dir), Some(name)) = (history.path.parent(), history.path.file_name()) else {
            return Vec::new();
        };
        let name = name.to_string_lossy().into_owned();
        let since = history
            .since
            .checked_sub(MTIME_SLACK)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut fresh: Vec<Entry> = self
            .entries(dir, |n| rotation_of(&name, &n.name))
            .into_iter()
            .filter(|e| {
                mtime_of(e) > since
                    && !skip.contains(&e.id)
                    && !self.taken.contains(&e.id)
                    && !watched(&e.path)
            })
            .collect();
        fresh.sort_by_key(|e| e.mtime);
        let mut found = Vec::new();
        for e in fresh.into_iter().take(MAX_CANDIDATES) {
            let opened = if is_gzip_name(&e.path) {
                self.unseen_gzip(&e, history)
            } else {
                unseen_plain(&e, history)
            };
            match opened {
                Ok(Some((fingerprint, rotated))) => {
                    self.taken.insert(e.id);
                    let lost = Lost {
                        key: FileKey {
                            dev: e.id.dev,
                            ino: e.id.ino,
                            fingerprint,
                            generation: 0,
                        },
                        offset: 0,
                        window: None,
                        path: Arc::new(history.path.clone()),
                        late_writes: false,
                    };
                    found.push((lost, rotated));
                }
                Ok(None) => {}
                Err(err) => {
                    tracing::warn!(path = %e.path.display(), "cannot read a rotated file the agent has not read yet: {err}")
                }
            }
        }
        found
    }

    fn unseen_gzip(&mut self, e: &Entry, history: &History) -> io::Result<Option<(u64, Rotated)>> {
        let Some((fp, _)) = self.probe(e) else {
            return Ok(None);
        };
        for seen in history
            .seen
            .iter()
            .filter(|s| s.key.fingerprint == fp && s.offset > 0)
        {
            let Some(w) = seen.window else {
                return Ok(None); // cannot be told apart: take it as seen
            };
            let mut stream = GzStream::new(File::open(&e.path)?);
            let mut bytes = vec![0; w.len as usize];
            if stream.fill_at(&mut bytes, w.start())? == bytes.len() && w.matches(&bytes) {
                return Ok(None);
            }
        }
        let stream = Box::new(GzStream::new(File::open(&e.path)?));
        Ok(Some((
            fp,
            Rotated::Gzip {
                path: e.path.clone(),
                stream,
                id: e.id,
                how: How::Unseen,
            },
        )))
    }

    /// Another file with the same first line was read to exactly `size` (a `.gz` records it
    /// modulo 2^32, so `exact` is false there): the candidate is that one's, fully read.
    fn done_elsewhere(&self, lost: &Lost, size: u64, exact: bool) -> bool {
        self.done.iter().any(|&(fp, offset)| {
            fp == lost.key.fingerprint
                && offset != lost.offset
                && if exact {
                    offset == size
                } else {
                    offset as u32 == size as u32
                }
        })
    }

    fn probe(&mut self, e: &Entry) -> Option<(u64, u32)> {
        *self.probes.entry(e.id).or_insert_with(|| {
            let probed = File::open(&e.path).and_then(|file| {
                let size = recorded_size(&file)?;
                let mut stream = GzStream::new(file);
                let mut head = vec![0; FINGERPRINT_BYTES];
                let n = stream.fill_at(&mut head, 0)?;
                Ok(size
                    .zip(fingerprint::fingerprint(&head[..n]))
                    .map(|(s, fp)| (fp, s)))
            });
            probed.unwrap_or_else(|err| {
                tracing::debug!(path = %e.path.display(), "cannot read a compressed file: {err}");
                None
            })
        })
    }

    /// The regular files of `dir` whose listing `pick` takes, stat'ed (symbolic links followed).
    fn entries(&mut self, dir: &Path, pick: impl Fn(&Name) -> bool) -> Vec<Entry> {
        let names: Vec<Name> = self
            .dirs
            .entry(dir.to_path_buf())
            .or_insert_with(|| list(dir))
            .iter()
            .filter(|n| pick(n))
            .cloned()
            .collect();
        names
            .into_iter()
            .filter_map(|n| {
                self.stats
                    .entry(n.path.clone())
                    .or_insert_with(|| {
                        let meta = fs::metadata(&n.path).ok().filter(|m| m.is_file())?;
                        Some(Entry {
                            id: FileId::of(&meta),
                            size: meta.len(),
                            mtime: (meta.mtime(), meta.mtime_nsec()),
                            name: n.name,
                            path: n.path,
                        })
                    })
                    .clone()
            })
            .collect()
    }
}

/// The names in `dir`; a symbolic link's inode is 0 (unknown until followed).
fn list(dir: &Path) -> Vec<Name> {
    use std::os::unix::fs::DirEntryExt;
    let Ok(read) = fs::read_dir(dir) else {
        return Vec::new();
    };
    read.flatten()
        .map(|d| {
            let link = d.file_type().is_ok_and(|t| t.is_symlink());
            Name {
                name: d.file_name().to_string_lossy().into_owned(),
                path: d.path(),
                ino: if link { 0 } else { d.ino() },
            }
        })
        .collect()
}

/// The candidate holds exactly what a lost file had up to its offset, and nothing after it.
struct Done;

fn mtime_of(e: &Entry) -> SystemTime {
    let (secs, nanos) = e.mtime;
    SystemTime::UNIX_EPOCH
        + Duration::new(
            u64::try_from(secs).unwrap_or(0),
            u32::try_from(nanos).unwrap_or(0),
        )
}

/// A plain rotation none of `history`'s files: its fingerprint, open.
fn unseen_plain(e: &Entry, history: &History) -> io::Result<Option<(u64, Rotated)>> {
    let file = File::open(&e.path)?;
    let meta = file.metadata()?;
    if FileId::of(&meta) != e.id {
        return Ok(None);
    }
    let Some(fp) = fingerprint::fingerprint(&fingerprint::read_head(&file)?) else {
        return Ok(None);
    };
    // A file seen but not read at all (offset 0) was looked for by the lost search already.
    for seen in history
        .seen
        .iter()
        .filter(|s| s.key.fingerprint == fp && s.offset > 0)
    {
        match seen.window {
            None => return Ok(None),
            Some(w) if w.holds(&file)? => return Ok(None),
            Some(_) => {}
        }
    }
    Ok(Some((
        fp,
        Rotated::Plain {
            path: e.path.clone(),
            file,
            id: e.id,
            how: How::Unseen,
            size: meta.len(),
        },
    )))
}

/// Whether `candidate` is named as logrotate names a rotation of `name`: `name`, `.`, `-` or `_`,
/// then a number or a date (digits, `-`, `_`), and maybe `.gz` (`app.log.1`, `app.log-20261207`,
/// `app.log.2.gz`); or the same between `name`'s stem and its extension (`app-20261207.log`).
/// Stricter than [`related_name`]: a file found this way is read whole without any checkpoint
/// vouching for it, so `app.log.bak` or `app.pid` must not count.
fn rotation_of(name: &str, candidate: &str) -> bool {
    let candidate = candidate.strip_suffix(".gz").unwrap_or(candidate);
    let stamp = |s: &str| {
        s.strip_prefix(['.', '-', '_']).is_some_and(|rest| {
            rest.bytes().any(|b| b.is_ascii_digit())
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b == b'-' || b == b'_')
        })
    };
    if candidate.strip_prefix(name).is_some_and(stamp) {
        return true;
    }
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => candidate
            .strip_prefix(stem)
            .and_then(|rest| rest.strip_suffix(ext))
            .and_then(|rest| rest.strip_suffix('.'))
            .is_some_and(stamp),
        _ => false,
    }
}

/// Opens `e` and checks it is `lost`'s file: same first line, at least its offset long, and the
/// same bytes under its window. `None` when it is another file.
fn open_plain(e: &Entry, lost: &Lost) -> io::Result<Option<File>> {
    let file = File::open(&e.path)?;
    let meta = file.metadata()?;
    if FileId::of(&meta) != e.id || meta.len() < lost.offset {
        return Ok(None);
    }
    let head = fingerprint::read_head(&file)?;
    if fingerprint::fingerprint(&head) != Some(lost.key.fingerprint) {
        return Ok(None);
    }
    if let Some(w) = lost.window {
        if !w.holds(&file)? {
            return Ok(None);
        }
    }
    Ok(Some(file))
}

/// Whether `candidate` is a name logrotate (or a similar tool) gives a rotation of `name`:
/// `name` followed by anything (`app.log.1`, `app.log-20261207.gz`), or `name`'s stem followed
/// by `.`, `-` or `_` (`app-20261207.log`, `app.1.log`).
fn related_name(name: &str, candidate: &str) -> bool {
    if candidate.starts_with(name) {
        return true;
    }
    let stem = match name.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => return false,
    };
    candidate
        .strip_prefix(stem)
        .is_some_and(|rest| rest.starts_with(['.', '-', '_']))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn rotation_names_table() {
        let cases = [
            ("app.log", "app.log.1", true),
            ("app.log", "app.log.12.gz", true),
            ("app.log", "app.log-20261207", true),
            ("app.log", "app.log-2026-12-07-1700000000.gz", true),
            ("app.log", "app-20261207.log", true),
            ("app.log", "app-20261207.log.gz", true),
            ("app.log", "app.1.log", true),
            ("app.log", "app.log", false),
            ("app.log", "app.log.gz", false),
            ("app.log", "app.log.bak", false),
            ("app.log", "app.log.1.bak", false),
            ("app.log", "app.pid", false),
            ("app.log", "app.log.swp", false),
            ("app.log", "app-access.log", false),
            ("messages", "messages-20261207", true),
            ("messages", "messages.1", true),
            ("messages", "messages.old", false),
        ];
        for (name, candidate, want) in cases {
            assert_eq!(rotation_of(name, candidate), want, "{name} / {candidate}");
        }
    }

    #[test]
    fn rotations_never_seen_are_found_and_seen_ones_are_not() {
        let d = Dir::new();
        let seen_text = text("seen", 200);
        let log = d.write("app.log", &seen_text);
        let seen = lost_of(&log, &seen_text, 1500);
        let history = |since: SystemTime| History {
            path: log.clone(),
            since,
            seen: vec![seen.clone()],
        };
        // Renamed, but seen: not unseen (the lost search reads its rest).
        fs::rename(&log, d.path.join("app.log.2")).expect("mv");
        // Born and rotated while stopped, compressed; and one plain, with the same header.
        let mut born = b"born first line\n".to_vec();
        born.extend_from_slice(&text("born", 20));
        d.gzip("app.log.1.gz", &born);
        d.write("app-20261207.log", &text("alike", 30));
        // Not rotation names, and a file the globs match.
        d.write("app.log.bak", &born);
        d.write("app.log.3", &text("watched", 5));
        let watched = |p: &Path| p.ends_with("app.log.3");
        let past = SystemTime::now() - Duration::from_secs(60);
        let mut s = Siblings::new(&[], &HashSet::new());
        let found = s.unseen(&history(past), &HashSet::new(), &watched);
        let mut names: Vec<String> = found
            .iter()
            .map(|(lost, r)| {
                assert_eq!((lost.offset, lost.path.as_path()), (0, log.as_path()));
                match r {
                    Rotated::Gzip { path, how, .. } | Rotated::Plain { path, how, .. } => {
                        assert_eq!(*how, How::Unseen);
                        path.file_name()
                            .expect("name")
                            .to_string_lossy()
                            .into_owned()
                    }
                }
            })
            .collect();
        names.sort();
        assert_eq!(names, ["app-20261207.log", "app.log.1.gz"]);
        // Files older than the last checkpoint of the name are history, not news.
        let future = SystemTime::now() + Duration::from_secs(60);
        assert!(Siblings::new(&[], &HashSet::new())
            .unseen(&history(future), &HashSet::new(), &watched)
            .is_empty());
    }

    #[test]
    fn related_names_table() {
        let cases = [
            ("app.log", "app.log.1", true),
            ("app.log", "app.log-20261207", true),
            ("app.log", "app.log.1.gz", true),
            ("app.log", "app-20261207.log", true),
            ("app.log", "app.1.log", true),
            ("app.log", "app_old.log", true),
            ("app.log", "application.log", false),
            ("app.log", "other.log.1", false),
            ("app.log", "ap.log", false),
            ("messages", "messages-20261207", true),
            ("messages", "messages.1", true),
            ("messages", "mess", false),
            (".hidden", ".hidden.1", true),
        ];
        for (name, candidate, want) in cases {
            assert_eq!(related_name(name, candidate), want, "{name} / {candidate}");
        }
    }

    struct Dir {
        _tmp: tempfile::TempDir,
        path: PathBuf,
    }

    impl Dir {
        fn new() -> Dir {
            let tmp = tempfile::tempdir().expect("tmp");
            let path = tmp.path().canonicalize().expect("canonical");
            Dir { _tmp: tmp, path }
        }

        fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
            let p = self.path.join(name);
            fs::write(&p, bytes).expect("write");
            p
        }

        fn gzip(&self, name: &str, bytes: &[u8]) -> PathBuf {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(bytes).expect("gzip");
            self.write(name, &enc.finish().expect("gzip"))
        }
    }

    /// The lost file `path` was read to `offset` of `content`.
    fn lost_of(path: &Path, content: &[u8], offset: u64) -> Lost {
        let meta = fs::metadata(path).expect("stat");
        Lost {
            key: FileKey {
                dev: meta.dev(),
                ino: meta.ino(),
                fingerprint: fingerprint::fingerprint(content).expect("first line"),
                generation: 0,
            },
            offset,
            window: Window::of(&content[..offset as usize], offset),
            path: Arc::new(path.to_path_buf()),
            late_writes: false,
        }
    }

    fn find(lost: &Lost) -> Option<Rotated> {
        find_skipping(lost, &HashSet::new())
    }

    fn find_skipping(lost: &Lost, skip: &HashSet<FileId>) -> Option<Rotated> {
        match Siblings::new(std::slice::from_ref(lost), &HashSet::new())
            .find(lost, skip, &|_| false)
        {
            Search::Found(found) => Some(found),
            Search::Nothing => None,
            Search::Known => panic!("nothing is watched, and something is left"),
        }
    }

    fn id_of(path: &Path) -> FileId {
        FileId::of(&fs::metadata(path).expect("stat"))
    }

    fn text(tag: &str, n: usize) -> Vec<u8> {
        let mut t = b"timestamp,level,message\n".to_vec();
        for i in 0..n {
            t.extend_from_slice(format!("2026-12-07T10:{i:05},INFO,{tag} {i}\n").as_bytes());
        }
        t
    }

    #[test]
    fn a_renamed_file_is_found_by_its_inode() {
        let d = Dir::new();
        let content = text("old", 50);
        let log = d.write("app.log", &content);
        let lost = lost_of(&log, &content, 300);
        fs::rename(&log, d.path.join("app.log.1")).expect("mv");
        d.write("app.log", &text("new", 5));
        match find(&lost) {
            Some(Rotated::Plain { path, how, .. }) => {
                assert_eq!(path, d.path.join("app.log.1"));
                assert_eq!(how, How::Renamed);
            }
            other => panic!("{other:?}"),
        }
        // The globs match it: a scan takes it, to be resumed where it was.
        let s = &mut Siblings::new(std::slice::from_ref(&lost), &HashSet::new());
        assert!(matches!(
            s.find(&lost, &HashSet::new(), &|_| true),
            Search::Known
        ));
        // At startup, read to its end already: known, not read again.
        let read = Lost {
            offset: content.len() as u64,
            window: Window::of(&content, content.len() as u64),
            ..lost.clone()
        };
        let s = &mut Siblings::new(std::slice::from_ref(&read), &HashSet::new());
        assert!(matches!(
            s.find(&read, &HashSet::new(), &|_| false),
            Search::Known
        ));
        // Moments after it was closed a writer may still add to it: read it.
        let open = Lost {
            late_writes: true,
            ..read
        };
        assert!(find(&open).is_some());
    }

    #[test]
    fn a_copy_and_a_gzip_are_found_by_their_bytes() {
        let d = Dir::new();
        let content = text("old", 200);
        let log = d.write("app.log", &content);
        let lost = lost_of(&log, &content, 1500);
        // copytruncate: the copy has the bytes, the original is refilled with the same header.
        d.write("app.log.1", &content);
        d.write("app.log", &text("new", 300));
        match find(&lost) {
            Some(Rotated::Plain { path, how, .. }) => {
                assert_eq!((path, how), (d.path.join("app.log.1"), How::Copied));
            }
            other => panic!("{other:?}"),
        }
        // Compressed since.
        fs::remove_file(d.path.join("app.log.1")).expect("rm");
        d.gzip("app.log.1.gz", &content);
        let Some(Rotated::Gzip {
            path, mut stream, ..
        }) = find(&lost)
        else {
            panic!("gzip not found");
        };
        assert_eq!(path, d.path.join("app.log.1.gz"));
        let mut rest = vec![0; content.len()];
        let n = stream.fill_at(&mut rest, 1500).expect("read");
        assert_eq!(&rest[..n], &content[1500..]);
    }

    #[test]
    fn lookalikes_fully_read_files_and_old_checkpoints_are_not_results() {
        let d = Dir::new();
        let content = text("old", 200);
        let log = d.write("app.log", &content);
        let lost = lost_of(&log, &content, 1500);
        // Rewritten in place with the same header: the inode is not it any more (the tailer
        // holds it, under a new generation).
        d.write("app.log", &text("new", 300));
        let held = HashSet::from([id_of(&log)]);
        let find = |lost: &Lost| find_skipping(lost, &held);
        // Same header, other lines: not it.
        d.write("app.log.2", &text("other", 200));
        d.gzip("app.log.3.gz", &text("other", 200));
        // Shorter than the offset: not it either.
        d.write("app.log.4", &content[..900]);
        assert!(find(&lost).is_none());
        // Fully read: found, nothing to read.
        d.gzip("app.log.1.gz", &content[..1500]);
        assert!(find(&lost).is_none());
        // Without a window only a rename is found.
        let blind = Lost {
            window: None,
            ..lost.clone()
        };
        fs::remove_file(d.path.join("app.log.1.gz")).expect("rm");
        d.write("app.log.9", &content);
        assert!(find(&blind).is_none());
        assert!(matches!(find(&lost), Some(Rotated::Plain { .. })));
    }

    #[test]
    fn a_file_seen_but_not_read_yet_is_found_by_its_first_line_unless_another_read_it_whole() {
        let d = Dir::new();
        let content = text("old", 200);
        let log = d.write("app.log", &content);
        let seen = lost_of(&log, &content, 0);
        assert_eq!(seen.window, None);
        fs::remove_file(&log).expect("rm");
        d.gzip("app.log.1.gz", &content);
        assert!(matches!(find(&seen), Some(Rotated::Gzip { .. })));
        // Another checkpoint with that first line ended exactly there: that one's, read.
        let ends = HashSet::from([(seen.key.fingerprint, content.len() as u64)]);
        let mut s = Siblings::new(std::slice::from_ref(&seen), &ends);
        assert!(matches!(
            s.find(&seen, &HashSet::new(), &|_| false),
            Search::Nothing
        ));
        // Read a little, with no window (a checkpoint from an older version): rename only.
        let old = Lost {
            offset: 100,
            ..seen.clone()
        };
        assert!(find(&old).is_none());
    }

    #[test]
    fn a_damaged_gzip_is_skipped_and_an_unreadable_compression_is_only_reported() {
        let d = Dir::new();
        let content = text("old", 200);
        let log = d.write("app.log", &content);
        let lost = lost_of(&log, &content, 1500);
        fs::remove_file(&log).expect("rm");
        d.write(
            "app.log.1.gz",
            b"\x1f\x8b\x08\x00not deflate at all, not at all, really",
        );
        d.write("app.log.2.xz", b"whatever");
        assert!(find(&lost).is_none());
    }
}
