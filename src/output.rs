//! Output files: checked before any work starts, written beside their target under a
//! temporary name and put in place — `fsync`, then `rename` — only when the run succeeded.
//!
//! A run that fails, is killed or is interrupted therefore never leaves a half-written
//! output nor destroys the file it would have replaced. The temporary file is
//! `.<name>.gavat-tmp-<pid>` in the target's directory (the same file system, so the rename
//! is atomic); one left behind by a killed run is removed by the next run writing the same
//! target, once its process is gone.

use std::fs::File;
use std::path::{Path, PathBuf};

/// Why an output path cannot be used, or could not be put in place.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The path names a directory: bad input, fatal.
    #[error("{flag} {path}: is a directory, not a file")]
    IsADirectory {
        /// The flag that named it, e.g. `--events`.
        flag: &'static str,
        /// The path as given.
        path: String,
    },
    /// The directory the file would go in does not exist: bad input, fatal.
    #[error("{flag} {path}: directory {dir} does not exist")]
    NoDirectory {
        /// The flag that named it.
        flag: &'static str,
        /// The path as given.
        path: String,
        /// The missing directory.
        dir: String,
    },
    /// Nothing can be written there (permissions, a read-only file system…): bad input, fatal.
    #[error("{flag} {path}: cannot write there: {cause}")]
    NotWritable {
        /// The flag that named it.
        flag: &'static str,
        /// The path as given.
        path: String,
        /// What the operating system said.
        cause: std::io::Error,
    },
    /// Two flags name one file (possibly spelt differently): bad input, fatal.
    #[error("{flag} {path}: is the same file as {other_flag} {other_path}")]
    SameFile {
        /// The output's flag.
        flag: &'static str,
        /// The output as given.
        path: String,
        /// The other flag (an input, or another output).
        other_flag: &'static str,
        /// Its path as given.
        other_path: String,
    },
    /// Putting the finished file in place failed: the run's output is lost, fatal.
    #[error("{path}: cannot put the finished file in place: {cause}")]
    Commit {
        /// The target.
        path: String,
        /// What the operating system said.
        cause: std::io::Error,
    },
}

/// A path named by a flag.
#[derive(Debug, Clone, Copy)]
pub struct Named<'a> {
    /// The flag, e.g. `--scenario`.
    pub flag: &'static str,
    /// The path as given.
    pub path: &'a Path,
}

/// Refuses an output that is the same file as an input or as another output, however each
/// is spelt: existing files are compared by device and inode, others by their canonical
/// directory and file name.
pub fn check_distinct(outputs: &[Named<'_>], inputs: &[Named<'_>]) -> Result<(), OutputError> {
    check_distinct_except(outputs, inputs, &[])
}

/// [`check_distinct`], except that each `(output flag, input flag)` pair in `allowed` may
/// name one file: an output that is written beside its target and renamed into place only
/// after the run has read the input (`--save-state` continuing `--resume`).
pub fn check_distinct_except(
    outputs: &[Named<'_>],
    inputs: &[Named<'_>],
    allowed: &[(&str, &str)],
) -> Result<(), OutputError> {
    for (i, out) in outputs.iter().enumerate() {
        for other in outputs[..i].iter().chain(inputs) {
            if allowed.contains(&(out.flag, other.flag)) {
                continue;
            }
            if same_file(out.path, other.path) {
                return Err(OutputError::SameFile {
                    flag: out.flag,
                    path: out.path.display().to_string(),
                    other_flag: other.flag,
                    other_path: other.path.display().to_string(),
                });
            }
        }
    }
    Ok(())
}

/// Whether `a` and `b` name one file.
pub fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    if let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) {
        use std::os::unix::fs::MetadataExt;
        return ma.dev() == mb.dev() && ma.ino() == mb.ino();
    }
    match (canonical(a), canonical(b)) {
        (Some(ca), Some(cb)) => ca == cb,
        _ => a == b,
    }
}

/// The canonical directory joined with the file name (the file itself need not exist).
fn canonical(path: &Path) -> Option<PathBuf> {
    if let Ok(c) = path.canonicalize() {
        return Some(c);
    }
    let name = path.file_name()?;
    let dir = parent_of(path).canonicalize().ok()?;
    Some(dir.join(name))
}

/// The directory a path lives in (`.` for a bare file name).
fn parent_of(path: &Path) -> &Path {
    path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Checks that run logs can go to `dir` (creating it if needed) by writing a probe file.
pub fn check_log_dir(flag: &'static str, dir: &Path) -> Result<(), OutputError> {
    let display = dir.display().to_string();
    if dir.exists() && !dir.is_dir() {
        return Err(OutputError::NotWritable {
            flag,
            path: display,
            cause: std::io::Error::other("exists and is not a directory"),
        });
    }
    std::fs::create_dir_all(dir).map_err(|cause| OutputError::NotWritable { flag, path: display.clone(), cause })?;
    let probe = dir.join(format!(".gavat-probe-{}", std::process::id()));
    File::create(&probe).map_err(|cause| OutputError::NotWritable { flag, path: display.clone(), cause })?;
    std::fs::remove_file(&probe).map_err(|cause| OutputError::NotWritable { flag, path: display, cause })
}

/// An output being written: the run writes [`PendingFile::temp`]; [`PendingFile::commit`]
/// puts it in place; dropping it uncommitted removes it.
#[derive(Debug)]
pub struct PendingFile {
    flag: &'static str,
    target: PathBuf,
    temp: PathBuf,
    /// SQLite side files (`-wal`, `-shm`, `-journal`) go with the temporary file and, once
    /// it replaces the target, the target's stale ones are removed.
    sqlite: bool,
    committed: bool,
}

/// The suffixes of SQLite's side files.
const SQLITE_SIDE_FILES: [&str; 3] = ["-wal", "-shm", "-journal"];

impl PendingFile {
    /// Checks `target` (not a directory, its directory exists and is writable) and creates
    /// the empty temporary file beside it; removes temporary files of earlier runs that died.
    pub fn create(flag: &'static str, target: &Path, sqlite: bool) -> Result<PendingFile, OutputError> {
        let display = target.display().to_string();
        if target.is_dir() {
            return Err(OutputError::IsADirectory { flag, path: display });
        }
        let Some(name) = target.file_name() else {
            return Err(OutputError::IsADirectory { flag, path: display });
        };
        let dir = parent_of(target);
        if !dir.is_dir() {
            return Err(OutputError::NoDirectory { flag, path: display, dir: dir.display().to_string() });
        }
        let prefix = format!(".{}.gavat-tmp-", name.to_string_lossy());
        remove_dead_temps(dir, &prefix);
        let temp = dir.join(format!("{prefix}{}", std::process::id()));
        let pending = PendingFile { flag, target: target.to_path_buf(), temp, sqlite, committed: false };
        pending.remove_temp();
        File::create(&pending.temp).map_err(|cause| OutputError::NotWritable { flag, path: display, cause })?;
        Ok(pending)
    }

    /// Where the run writes.
    pub fn temp(&self) -> &Path {
        &self.temp
    }

    /// The file it will replace.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The flag that named it.
    pub fn flag(&self) -> &'static str {
        self.flag
    }

    /// Makes the finished temporary file durable and renames it over the target.
    pub fn commit(mut self) -> Result<PathBuf, OutputError> {
        let fail = |cause| OutputError::Commit { path: self.target.display().to_string(), cause };
        File::open(&self.temp).and_then(|f| f.sync_all()).map_err(fail)?;
        std::fs::rename(&self.temp, &self.target).map_err(fail)?;
        self.committed = true;
        if self.sqlite {
            // The replaced store's side files would be read as the new one's.
            for suffix in SQLITE_SIDE_FILES {
                let side = with_suffix(&self.target, suffix);
                match std::fs::remove_file(&side) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(fail(e)),
                }
            }
            self.remove_temp();
        }
        // The rename itself is durable once the directory is.
        if let Ok(dir) = File::open(parent_of(&self.target)) {
            dir.sync_all().map_err(fail)?;
        }
        Ok(self.target.clone())
    }

    fn remove_temp(&self) {
        let mut files = vec![self.temp.clone()];
        if self.sqlite {
            files.extend(SQLITE_SIDE_FILES.iter().map(|s| with_suffix(&self.temp, s)));
        }
        for file in files {
            // Absent is the usual case; anything else leaves a recognisable name that the
            // next run removes.
            let _ = std::fs::remove_file(file);
        }
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if !self.committed {
            self.remove_temp();
        }
    }
}

/// `path` with `suffix` appended to its file name (`x.db` → `x.db-wal`).
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Removes `dir/<prefix><pid>[-wal|-shm|-journal]` files whose process no longer runs.
fn remove_dead_temps(dir: &Path, prefix: &str) {
    let proc_fs = Path::new("/proc/self");
    if !proc_fs.exists() {
        return; // cannot tell a live writer from a dead one: leave them
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else { continue };
        let pid = rest.split('-').next().unwrap_or("");
        if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A committed file replaces the target; an uncommitted one leaves it as it was.
    #[test]
    fn commit_replaces_and_drop_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.jsonl");
        std::fs::write(&target, "old").unwrap();
        let pending = PendingFile::create("--events", &target, false).unwrap();
        std::fs::write(pending.temp(), "half").unwrap();
        drop(pending);
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "the temporary file is gone");
        let pending = PendingFile::create("--events", &target, false).unwrap();
        std::fs::write(pending.temp(), "new").unwrap();
        pending.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    /// A temporary file of a dead process is cleaned up by the next run on the same target.
    #[test]
    fn stale_temporaries_of_dead_runs_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("crm.db");
        // PIDs above the kernel's maximum (4,194,304) never run.
        let stale = dir.path().join(".crm.db.gavat-tmp-999999999");
        std::fs::write(&stale, "x").unwrap();
        std::fs::write(with_suffix(&stale, "-wal"), "x").unwrap();
        let pending = PendingFile::create("--save-state", &target, true).unwrap();
        assert!(!stale.exists() && !with_suffix(&stale, "-wal").exists());
        drop(pending);
    }

    /// One file spelt two ways, existing or not, is caught; different files are not.
    #[test]
    fn same_file_sees_through_spellings() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let a = sub.join("a.toml");
        std::fs::write(&a, "").unwrap();
        assert!(same_file(&a, &dir.path().join("sub/../sub/./a.toml")));
        assert!(same_file(&sub.join("new.db"), &dir.path().join("sub/../sub/new.db")));
        assert!(!same_file(&a, &sub.join("new.db")));
        let err = check_distinct(
            &[Named { flag: "--events", path: &a }],
            &[Named { flag: "--scenario", path: &dir.path().join("sub/../sub/a.toml") }],
        )
        .unwrap_err();
        assert!(err.to_string().contains("--events") && err.to_string().contains("--scenario"), "{err}");
    }

    /// An allowed pair (the new state replacing the store it continues) may name one file;
    /// any other output on that file is still refused.
    #[test]
    fn an_allowed_pair_may_share_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        std::fs::write(&db, "").unwrap();
        let input = [Named { flag: "--resume", path: &db }];
        let allowed = [("--save-state", "--resume")];
        assert!(check_distinct_except(&[Named { flag: "--save-state", path: &db }], &input, &allowed).is_ok());
        assert!(check_distinct(&[Named { flag: "--save-state", path: &db }], &input).is_err());
        assert!(check_distinct_except(&[Named { flag: "--events", path: &db }], &input, &allowed).is_err());
    }

    /// A directory as an output file, a missing directory and a file as the log directory
    /// are refused before anything is written.
    #[test]
    fn bad_output_paths_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(PendingFile::create("--events", dir.path(), false), Err(OutputError::IsADirectory { .. })));
        assert!(matches!(
            PendingFile::create("--events", &dir.path().join("no/x.jsonl"), false),
            Err(OutputError::NoDirectory { .. })
        ));
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        assert!(check_log_dir("--log-dir", &file).is_err());
        assert!(check_log_dir("--log-dir", &dir.path().join("logs")).is_ok());
    }
}
