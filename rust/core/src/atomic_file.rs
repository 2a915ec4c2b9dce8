//! Atomic, optionally durable replacement of a file via a temporary file in
//! the same directory and `rename(2)`.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{ErrorKind, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::io::IntoRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Marker between the target's name and the writer's pid in temp names.
const TMP_MARKER: &[u8] = b".jptmp.";

/// Attempts at finding an unused temp name before giving up.
const MAX_CREATE_ATTEMPTS: usize = 100;

/// A temporary file that atomically replaces `target` on [`commit`].
///
/// Dropping it without committing removes the temporary file and leaves the
/// target untouched.
///
/// [`commit`]: AtomicFile::commit
#[derive(Debug)]
pub struct AtomicFile {
    target: PathBuf,
    dir: PathBuf,
    tmp: PathBuf,
    /// `None` once committed or aborted, so `Drop` knows there is nothing to
    /// clean up.
    file: Option<File>,
    fsync: bool,
    /// The size of the file being replaced, if there is one.
    replaced_len: Option<u64>,
}

/// Replacing a file at least this big frees its pages off the caller's path.
const DEFER_FREE_AT: u64 = 32 << 20;

/// Symlinks resolved at the last path component, so the save replaces the
/// file a link points to (as writing through the link would) and keeps the
/// link itself.
fn resolve_symlinks(target: &Path) -> Result<PathBuf> {
    let mut path = target.to_path_buf();
    // The kernel's own limit on links followed in one lookup.
    for _ in 0..40 {
        match fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                let link = fs::read_link(&path).map_err(|e| Error::io("readlink", target, e))?;
                path = match path.parent() {
                    Some(parent) if link.is_relative() => parent.join(link),
                    _ => link,
                };
            }
            _ => return Ok(path),
        }
    }
    Err(Error::io(
        "open",
        target,
        std::io::Error::from_raw_os_error(libc::ELOOP),
    ))
}

fn split_target(target: &Path) -> Result<(PathBuf, &OsStr)> {
    let name = target.file_name().ok_or_else(|| {
        Error::io(
            "open",
            target,
            std::io::Error::from_raw_os_error(libc::EISDIR),
        )
    })?;
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name))
}

fn temp_prefix(name: &OsStr) -> Vec<u8> {
    let mut p = Vec::with_capacity(name.len() + 16);
    p.push(b'.');
    p.extend_from_slice(name.as_bytes());
    p.extend_from_slice(TMP_MARKER);
    p
}

fn random_u64(attempt: usize) -> u64 {
    // RandomState is seeded from the OS once per process and then varied
    // per instance; mixing in time and the attempt keeps retries distinct.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.write_u128(now);
    h.write_usize(attempt);
    h.finish()
}

/// Whether a process with this pid may still exist. Only a definite ESRCH
/// counts as dead, so temps of processes we cannot signal (EPERM) survive.
fn pid_alive(pid: libc::pid_t) -> bool {
    // SAFETY: kill with signal 0 sends nothing; it only checks existence and
    // permission. pid > 0 is guaranteed by the caller, so it never targets a
    // process group.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Removes `.{name}.jptmp.{pid}.*` files left behind by writers that died
/// before committing. Best effort: failures here must not stop the write.
fn remove_stale_temps(dir: &Path, name: &OsStr) {
    let prefix = temp_prefix(name);
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let me = std::process::id();
    for entry in entries.flatten() {
        let fname = entry.file_name();
        let Some(rest) = fname.as_bytes().strip_prefix(prefix.as_slice()) else {
            continue;
        };
        let Some(dot) = rest.iter().position(|&b| b == b'.') else {
            continue;
        };
        let Some(pid) = std::str::from_utf8(&rest[..dot])
            .ok()
            .and_then(|s| s.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        if pid <= 0 || pid as u32 == me || pid_alive(pid) {
            continue;
        }
        let _ = fs::remove_file(entry.path());
    }
}

impl AtomicFile {
    /// Creates a fresh temporary file next to `target`.
    ///
    /// The temp is created with mode `0o666` (subject to the umask, like a
    /// plain `open()`), or with the existing target's permission bits so a
    /// replaced file keeps its mode. When `fsync` is set, [`commit`]
    /// flushes the file and its directory to stable storage.
    ///
    /// [`commit`]: AtomicFile::commit
    pub fn create(target: &Path, fsync: bool) -> Result<AtomicFile> {
        let shown = target;
        let resolved = resolve_symlinks(target)?;
        let target = resolved.as_path();
        let (dir, name) = split_target(target)?;
        remove_stale_temps(&dir, name);

        let existing = match fs::metadata(target) {
            Ok(m) => Some((m.permissions().mode() & 0o7777, m.len())),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io("stat", shown, e)),
        };

        let mut base = temp_prefix(name);
        base.extend_from_slice(std::process::id().to_string().as_bytes());
        base.push(b'.');

        let mut last_err = None;
        for attempt in 0..MAX_CREATE_ATTEMPTS {
            let mut fname = base.clone();
            fname.extend_from_slice(format!("{:016x}", random_u64(attempt)).as_bytes());
            let tmp = dir.join(OsString::from_vec(fname));
            // std already adds O_CLOEXEC; create_new is O_CREAT|O_EXCL.
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o666)
                .open(&tmp)
            {
                Ok(file) => {
                    let af = AtomicFile {
                        target: target.to_path_buf(),
                        dir,
                        tmp,
                        file: Some(file),
                        fsync,
                        replaced_len: existing.map(|(_, len)| len),
                    };
                    if let Some((mode, _)) = existing {
                        af.file()?
                            .set_permissions(fs::Permissions::from_mode(mode))
                            .map_err(|e| Error::io("fchmod", shown, e))?;
                    }
                    return Ok(af);
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => last_err = Some(e),
                Err(e) => return Err(Error::io("open", shown, e)),
            }
        }
        Err(Error::io(
            "open",
            shown,
            last_err.unwrap_or_else(|| std::io::Error::from_raw_os_error(libc::EEXIST)),
        ))
    }

    fn file(&self) -> Result<&File> {
        self.file.as_ref().ok_or_else(|| {
            Error::io(
                "write",
                &self.target,
                std::io::Error::from_raw_os_error(libc::EBADF),
            )
        })
    }

    /// The path the temp file will be renamed to.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The temporary file's path.
    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }

    /// Writes all of `buf` to the temp file (unbuffered; EINTR is retried).
    pub fn write_all(&mut self, buf: &[u8]) -> Result<()> {
        let mut f = self.file()?;
        f.write_all(buf)
            .map_err(|e| Error::io("write", &self.target, e))
    }

    /// Flushes (if requested), closes and renames the temp over the target,
    /// then (if requested) syncs the directory so the rename is durable.
    ///
    /// If anything fails before the rename took effect, the temp is removed.
    pub fn commit(mut self) -> Result<()> {
        // Taking the file out means Drop will not touch the temp any more;
        // failures below clean up explicitly.
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        // The rename drops the replaced file's last link, and the kernel frees
        // all its pages inside that call: a tenth of a second for a few hundred
        // MiB. A second link taken first moves that work to a thread. The link
        // is named like our temps, so if we die before removing it, the next
        // save removes it (the pid is gone).
        let old_alias = match self.replaced_len {
            Some(len) if len >= DEFER_FREE_AT => {
                let alias = self.sibling_name();
                fs::hard_link(&self.target, &alias).ok().map(|()| alias)
            }
            _ => None,
        };
        if let Err(e) = self.close_and_rename(file) {
            let _ = fs::remove_file(&self.tmp);
            if let Some(alias) = old_alias {
                let _ = fs::remove_file(alias);
            }
            return Err(e);
        }
        if let Some(alias) = old_alias {
            let spawned = std::thread::Builder::new()
                .name("jobpersist-free".into())
                .spawn({
                    let alias = alias.clone();
                    move || {
                        let _ = fs::remove_file(alias);
                    }
                });
            if spawned.is_err() {
                let _ = fs::remove_file(alias);
            }
        }
        if self.fsync {
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::io("fsync", &self.dir, e))?;
        }
        Ok(())
    }

    /// A fresh name beside the temp file, in the temp files' pattern.
    fn sibling_name(&self) -> PathBuf {
        let mut name = self.tmp.as_os_str().to_owned();
        name.push(format!(".{:08x}", random_u64(7) as u32));
        PathBuf::from(name)
    }

    fn close_and_rename(&self, file: File) -> Result<()> {
        if self.fsync {
            file.sync_all()
                .map_err(|e| Error::io("fsync", &self.target, e))?;
        }
        let fd = file.into_raw_fd();
        // SAFETY: `fd` was just released from an owned File, so nothing else
        // closes it; close errors (e.g. deferred NFS write errors) are
        // reported instead of silently dropped as File's Drop would.
        let rc = unsafe { libc::close(fd) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            // After EINTR the descriptor is already closed on Linux.
            if e.kind() != ErrorKind::Interrupted {
                return Err(Error::io("close", &self.target, e));
            }
        }
        fs::rename(&self.tmp, &self.target).map_err(|e| Error::io("rename", &self.target, e))
    }

    /// Discards the temp file, leaving the target untouched.
    pub fn abort(mut self) {
        self.discard();
    }

    fn discard(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        self.discard();
    }
}

#[cfg(test)]
mod symlink_tests {
    use super::*;

    #[test]
    fn a_big_replaced_file_is_freed_off_the_commit_path() {
        let dir = std::env::temp_dir().join(format!("jp-core-big-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let target = dir.join("big.json");
        fs::write(&target, vec![b'o'; (DEFER_FREE_AT + 1) as usize]).unwrap();
        let mut f = AtomicFile::create(&target, false).unwrap();
        f.write_all(b"new").unwrap();
        f.commit().unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"new");
        // The old file's second link goes away shortly, from the freeing thread.
        let mut names = Vec::new();
        for _ in 0..200 {
            names = fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            if names.len() == 1 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(names, vec![std::ffi::OsString::from("big.json")]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_symlinked_target_is_replaced_through_the_link() {
        let dir = std::env::temp_dir().join(format!("jp-core-link-{}", std::process::id()));
        fs::create_dir_all(dir.join("real")).unwrap();
        let real = dir.join("real").join("ckpt.json");
        fs::write(&real, b"old").unwrap();
        let link = dir.join("link.json");
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink("real/ckpt.json", &link).unwrap();
        let mut f = AtomicFile::create(&link, false).unwrap();
        f.write_all(b"new").unwrap();
        f.commit().unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&real).unwrap(), b"new");
        fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let p = std::env::temp_dir().join(format!(
                "jobpersist-core-{tag}-{}-{:x}",
                std::process::id(),
                random_u64(0)
            ));
            fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn write_commit_creates_with_default_mode() {
        let d = TempDir::new("create");
        let target = d.0.join("ckpt.json");
        for fsync in [false, true] {
            let _ = fs::remove_file(&target);
            let mut f = AtomicFile::create(&target, fsync).unwrap();
            assert!(f.temp_path().starts_with(&d.0));
            f.write_all(b"hello ").unwrap();
            f.write_all(b"world").unwrap();
            f.commit().unwrap();
            assert_eq!(fs::read(&target).unwrap(), b"hello world");
        }
        let plain = d.0.join("plain");
        File::create(&plain).unwrap();
        let want = fs::metadata(&plain).unwrap().mode() & 0o7777;
        assert_eq!(fs::metadata(&target).unwrap().mode() & 0o7777, want);
        assert_eq!(names(&d.0), ["ckpt.json", "plain"]);
    }

    #[test]
    fn replace_keeps_mode() {
        let d = TempDir::new("mode");
        let target = d.0.join("t");
        fs::write(&target, b"old").unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o600)).unwrap();
        let mut f = AtomicFile::create(&target, true).unwrap();
        f.write_all(b"new").unwrap();
        f.commit().unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"new");
        assert_eq!(fs::metadata(&target).unwrap().mode() & 0o7777, 0o600);
        assert_eq!(names(&d.0), ["t"]);
    }

    #[test]
    fn drop_and_abort_leave_old_file() {
        let d = TempDir::new("abort");
        let target = d.0.join("t");
        fs::write(&target, b"old").unwrap();
        {
            let mut f = AtomicFile::create(&target, false).unwrap();
            f.write_all(b"partial").unwrap();
        }
        assert_eq!(fs::read(&target).unwrap(), b"old");
        assert_eq!(names(&d.0), ["t"]);
        let mut f = AtomicFile::create(&target, false).unwrap();
        f.write_all(b"partial").unwrap();
        f.abort();
        assert_eq!(fs::read(&target).unwrap(), b"old");
        assert_eq!(names(&d.0), ["t"]);
    }

    #[test]
    fn stale_temps_of_dead_pids_are_removed() {
        let dead: libc::pid_t = 0x7fff_fff0;
        assert!(!pid_alive(dead), "test pid unexpectedly exists");
        let d = TempDir::new("stale");
        let target = d.0.join("t.json");
        let stale = d.0.join(format!(".t.json.jptmp.{dead}.abcdef"));
        let mine =
            d.0.join(format!(".t.json.jptmp.{}.abcdef", std::process::id()));
        let init = d.0.join(".t.json.jptmp.1.abcdef");
        let zero = d.0.join(".t.json.jptmp.0.abcdef");
        let neg = d.0.join(".t.json.jptmp.-1.abcdef");
        let other = d.0.join(format!(".u.json.jptmp.{dead}.abcdef"));
        for p in [&stale, &mine, &init, &zero, &neg, &other] {
            fs::write(p, b"x").unwrap();
        }
        let f = AtomicFile::create(&target, false).unwrap();
        drop(f);
        assert!(!stale.exists());
        for p in [&mine, &init, &zero, &neg, &other] {
            assert!(p.exists(), "{p:?} removed");
        }
    }

    #[test]
    fn missing_directory_is_io_error_with_target_path() {
        let d = TempDir::new("missing");
        let target = d.0.join("nope").join("t");
        match AtomicFile::create(&target, false) {
            Err(Error::Io { op, path, source }) => {
                assert_eq!(op, "open");
                assert_eq!(path, target);
                assert_eq!(source.raw_os_error(), Some(libc::ENOENT));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn relative_target_uses_cwd() {
        assert_eq!(
            split_target(Path::new("x.json")).unwrap().0,
            PathBuf::from(".")
        );
        assert!(split_target(Path::new("/")).is_err());
    }

    #[test]
    fn rename_failure_removes_temp() {
        let d = TempDir::new("renamefail");
        let target = d.0.join("t");
        let f = AtomicFile::create(&target, false).unwrap();
        // A non-empty directory at the target makes rename fail.
        fs::create_dir(&target).unwrap();
        fs::write(target.join("inner"), b"x").unwrap();
        match f.commit() {
            Err(Error::Io { op, path, .. }) => {
                assert_eq!(op, "rename");
                assert_eq!(path, target);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(names(&d.0), ["t"]);
    }
}
