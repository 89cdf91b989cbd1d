//! Which files the globs name right now, and which directories to watch for changes.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use glob::{MatchOptions, Pattern};

use super::TailError;

/// `*` and `?` stay inside one path component, as in a shell; `**` crosses directories.
const MATCH: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

/// A file while it is open: device and inode. The kernel cannot reuse an inode that is still
/// open, so this tells the files the tailer holds apart without reading them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    pub fn of(meta: &fs::Metadata) -> Self {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// A regular file one of the globs matched.
#[derive(Debug, Clone)]
pub(super) struct Found {
    pub path: PathBuf,
    pub id: FileId,
    /// Its size when the scan saw it.
    pub size: u64,
}

/// A glob a file must not match. One without a `/` is matched against the file name only, so
/// `exclude = ["*.gz"]` does what it says wherever the file is.
#[derive(Debug)]
struct Exclude {
    pattern: Pattern,
    name_only: bool,
}

impl Exclude {
    fn matches(&self, path: &Path) -> bool {
        if self.name_only {
            path.file_name()
                .is_some_and(|name| self.pattern.matches_path_with(Path::new(name), MATCH))
        } else {
            self.pattern.matches_path_with(path, MATCH)
        }
    }
}

/// The `paths` and `exclude` globs of one input, checked once.
#[derive(Debug)]
pub(super) struct Globs {
    include: Vec<String>,
    patterns: Vec<Pattern>,
    exclude: Vec<Exclude>,
}

impl Globs {
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, TailError> {
        let parse = |pattern: &String| {
            Pattern::new(pattern).map_err(|source| TailError::Glob {
                pattern: pattern.clone(),
                source,
            })
        };
        let patterns = include.iter().map(parse).collect::<Result<_, _>>()?;
        let exclude = exclude
            .iter()
            .map(|p| {
                Ok(Exclude {
                    pattern: parse(p)?,
                    name_only: !p.contains('/'),
                })
            })
            .collect::<Result<_, TailError>>()?;
        Ok(Globs {
            include: include.to_vec(),
            patterns,
            exclude,
        })
    }

    /// Whether a scan would take `path` (by name only: the file need not exist).
    pub fn matches(&self, path: &Path) -> bool {
        self.patterns
            .iter()
            .any(|p| p.matches_path_with(path, MATCH))
            && !self.exclude.iter().any(|x| x.matches(path))
    }

    /// The regular files matched now, each once (by device and inode; symbolic links are
    /// followed), in glob order; and the globs that matched no file. Blocking: it reads
    /// directories.
    pub fn scan_noting_empty(&self) -> (Vec<Found>, Vec<String>) {
        let mut seen = HashSet::new();
        let mut found = Vec::new();
        let mut empty = Vec::new();
        for pattern in &self.include {
            if self.scan_one(pattern, &mut seen, &mut found) == 0 {
                empty.push(pattern.clone());
            }
        }
        (found, empty)
    }

    /// The files each glob matches now (excludes applied), for `check`.
    pub fn scan_each(&self) -> Vec<(String, Vec<PathBuf>)> {
        self.include
            .iter()
            .map(|pattern| {
                let mut found = Vec::new();
                self.scan_one(pattern, &mut HashSet::new(), &mut found);
                (pattern.clone(), found.into_iter().map(|f| f.path).collect())
            })
            .collect()
    }

    /// Adds the files `pattern` matches to `found` (once each); returns how many regular files
    /// it matched, those found already included.
    fn scan_one(&self, pattern: &str, seen: &mut HashSet<FileId>, found: &mut Vec<Found>) -> usize {
        let mut matched = 0;
        let Ok(paths) = glob::glob_with(pattern, MATCH) else {
            return 0; // checked in `new`
        };
        for entry in paths {
            let path = match entry {
                Ok(path) => path,
                Err(e) => {
                    tracing::debug!(pattern, "skipping unreadable directory: {e}");
                    continue;
                }
            };
            if self.exclude.iter().any(|x| x.matches(&path)) {
                continue;
            }
            let Ok(meta) = fs::metadata(&path) else {
                continue; // gone since the directory was read
            };
            matched += usize::from(meta.is_file());
            if meta.is_file() && seen.insert(FileId::of(&meta)) {
                found.push(Found {
                    id: FileId::of(&meta),
                    size: meta.len(),
                    path,
                });
            }
        }
        matched
    }

    /// The deepest directory of each glob that has no wildcard: watching it catches new files.
    pub fn base_dirs(&self) -> Vec<PathBuf> {
        self.include.iter().map(|p| base_dir(p)).collect()
    }
}

/// `/var/log/app/*.log` → `/var/log/app`; `/var/log/**/x.log` → `/var/log`; `/a/b.log` → `/a`.
fn base_dir(pattern: &str) -> PathBuf {
    let mut base = PathBuf::new();
    let mut components = Path::new(pattern).components().peekable();
    while let Some(component) = components.next() {
        let wild = matches!(component, Component::Normal(c) if c.to_string_lossy().contains(['*', '?', '[']));
        if wild || components.peek().is_none() {
            break;
        }
        base.push(component);
    }
    base
}

#[cfg(test)]
mod tests {
    use super::*;

    fn globs(include: &[&str], exclude: &[&str]) -> Globs {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Globs::new(&s(include), &s(exclude)).expect("valid globs")
    }

    #[test]
    fn base_dir_stops_at_the_first_wildcard() {
        assert_eq!(base_dir("/var/log/app/*.log"), Path::new("/var/log/app"));
        assert_eq!(base_dir("/var/log/**/x.log"), Path::new("/var/log"));
        assert_eq!(base_dir("/var/log/a?c/x.log"), Path::new("/var/log"));
        assert_eq!(base_dir("/a/b.log"), Path::new("/a"));
    }

    #[test]
    fn invalid_globs_are_refused_with_the_pattern() {
        let err = Globs::new(&["/var/log/[".into()], &[]).expect_err("invalid");
        assert!(err.to_string().contains("/var/log/["), "{err}");
        assert!(Globs::new(&[], &["a/***".into()]).is_err());
    }

    #[test]
    fn scan_finds_regular_files_once_and_honours_excludes() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        fs::create_dir(d.join("sub"))?;
        fs::create_dir(d.join("dir.log"))?;
        for name in [
            "a.log",
            "b.log",
            "skip.log",
            "c.txt",
            "sub/d.log",
            "sub/e.gz",
        ] {
            fs::write(d.join(name), "x\n")?;
        }
        std::os::unix::fs::symlink(d.join("a.log"), d.join("link.log"))?;
        let root = d.display();
        let g = globs(
            &[&format!("{root}/*.log"), &format!("{root}/**/*")],
            &["skip.*", "*.gz", &format!("{root}/*.txt")],
        );
        let names: Vec<_> = g
            .scan_noting_empty()
            .0
            .into_iter()
            .map(|f| f.path.strip_prefix(d).expect("inside").to_path_buf())
            .collect();
        let want: Vec<PathBuf> = ["a.log", "b.log", "sub/d.log"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(names, want);
        // The same decision by name, for files that are not there.
        for (name, want) in [
            ("a.log", true),
            ("x/y.log", true),
            ("skip.log", false),
            ("q.gz", false),
            ("c.txt", false),
            ("a.log.1", true),
        ] {
            assert_eq!(g.matches(&d.join(name)), want, "{name}");
        }
        Ok(())
    }
}
