//! Atomic, optionally durable replacement of a file.
//!
//! A save never leaves a partial file under any name where the filesystem
//! supports `O_TMPFILE` (Linux ext4, xfs, btrfs, tmpfs, ...):
//!
//! 1. the new content goes into an unnamed file opened with `O_TMPFILE` in
//!    the target's directory, locked with `flock(LOCK_EX)`;
//! 2. it is fsynced, then given a temp name with `linkat` of the descriptor
//!    (`AT_EMPTY_PATH`: Linux 6.10 and later allow it for a file the process
//!    opened; before, only with `CAP_DAC_READ_SEARCH`, which Docker's default
//!    capability set lacks), or where that is refused, of `/proc/self/fd/N`
//!    with `AT_SYMLINK_FOLLOW`, then renamed over the target;
//! 3. the directory is fsynced, so the rename is durable.
//!
//! Where `O_TMPFILE` is refused (`EOPNOTSUPP`, `EISDIR`, `EINVAL`, `ENOSYS`:
//! some overlayfs and network filesystems, old kernels), where `/proc` is not
//! mounted, or when the caller asks (`Options::unnamed_temp = false`), the
//! content is written into a named temp `.{name}.jptmp.{pid}.{random}`,
//! created and locked the same way.
//!
//! A caller that knows a large content is coming reserves its blocks first
//! ([`AtomicFile::reserve`], `fallocate` keeping the size), and the commit
//! gives back what the content did not use. Writes into reserved blocks
//! need no delayed allocation, and ext4 flushes a file with delayed
//! allocations inside the `rename` that replaces another file
//! (`auto_da_alloc`): a third of a second per 350 MB here, spent in the
//! caller's save even with fsync off. With fsync on, the file is already on
//! disk by then, so the reservation changes nothing but the time. With fsync
//! off, the data then reaches the disk by ordinary writeback, after the
//! rename: a power cut in between may leave the target's blocks unwritten
//! (zeros), which fsync off allows (old, new or incomplete).
//!
//! The writer holds the lock on its temp for as long as it writes, so a temp
//! whose lock can be taken belongs to a writer that is gone, whatever pid its
//! name carries (pids repeat across container restarts): the next save of the
//! same target that looks for them (`Options::scan_stale`) removes it.

use std::ffi::{CStr, CString, OsStr};
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, ErrorKind};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::fault::{self, Op};
use crate::in_memory_fs;
use crate::spare_files;

/// Marker between the target's name and the writer's pid in temp names.
const TMP_MARKER: &[u8] = b".jptmp.";

/// Attempts at finding an unused temp name before giving up.
const MAX_CREATE_ATTEMPTS: usize = 100;

/// `fallocate` mode: allocate blocks without changing the file's size.
#[cfg(any(target_os = "linux", target_os = "android"))]
const FALLOC_FL_KEEP_SIZE: libc::c_int = 0x01;
/// The most [`AtomicFile::reserve`] reserves beyond what it is asked for.
pub const RESERVE_AHEAD: u64 = 64 << 20;

/// Replacing a file at least this big frees its pages off the caller's path.
const DEFER_FREE_AT: u64 = 32 << 20;

/// How a save replaces its target.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Flush the file before it is named and the directory after the rename.
    pub fsync: bool,
    /// Write into an unnamed `O_TMPFILE` file where the filesystem allows it;
    /// `false` forces the named temp file (tests of the fallback).
    pub unnamed_temp: bool,
    /// Look for the temps that dead writers left beside the target (a
    /// directory listing) before creating this one. A caller saving the same
    /// directory over and over asks for it once, and again after a failure.
    pub scan_stale: bool,
    /// Keep the replaced file open across the rename, and hand it to the
    /// caller ([`AtomicFile::commit_keeping`]): the rename then only unlinks
    /// it, and the caller frees it (closes it) off its own path. Freeing a
    /// file is most of a small save's rename (0.12 ms of 0.13 ms here). Not
    /// on a filesystem that keeps its files in memory ([`in_memory_fs`]),
    /// where freeing costs no more than keeping.
    pub keep_replaced: bool,
}

impl Options {
    /// fsync as asked; unnamed temp and the stale-temp scan on; the replaced
    /// file freed by the commit.
    pub fn new(fsync: bool) -> Options {
        Options {
            fsync,
            unnamed_temp: true,
            scan_stale: true,
            keep_replaced: false,
        }
    }
}

/// A temporary file that atomically replaces `target` on [`commit`].
///
/// Dropping it without committing removes the temporary file and leaves the
/// target untouched.
///
/// [`commit`]: AtomicFile::commit
#[derive(Debug)]
pub struct AtomicFile {
    /// The path the caller gave, named in every error.
    shown: PathBuf,
    /// The file replaced: `shown` with its symlinks resolved.
    target: PathBuf,
    dir: PathBuf,
    dir_fd: OwnedFd,
    name: CString,
    temp: CString,
    /// `None` once committed or aborted, so `Drop` knows there is nothing to
    /// clean up.
    file: Option<OwnedFd>,
    /// Whether `temp` currently names our file (always for a named temp; for
    /// an unnamed one between `linkat` and `rename`).
    linked: bool,
    unnamed: bool,
    fsync: bool,
    /// The size of the file being replaced, if there is one.
    replaced_len: Option<u64>,
    /// Whether the commit hands the replaced file back (`Options::keep_replaced`).
    keep_replaced: bool,
    /// Whether the target's filesystem keeps its files in memory (see [`AtomicFile::in_memory`]).
    in_memory: bool,
    /// Bytes written so far.
    len: u64,
    /// Bytes of blocks reserved ahead of the writes.
    reserved: u64,
    /// Whether reserving still makes sense (it stops at the first refusal).
    reserving: bool,
}

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
        io::Error::from_raw_os_error(libc::ELOOP),
    ))
}

fn split_target(target: &Path) -> Result<(PathBuf, &OsStr)> {
    let name = target
        .file_name()
        .ok_or_else(|| Error::io("open", target, io::Error::from_raw_os_error(libc::EISDIR)))?;
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

fn c_string(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn is_interrupted(e: &io::Error) -> bool {
    e.kind() == ErrorKind::Interrupted
}

// ------------------------------------------------------------------------
// The system calls of a save, each behind the fault seam.
// ------------------------------------------------------------------------

fn sys_openat(
    op: Op,
    dir: RawFd,
    name: &CStr,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
    fault::check(op)?;
    loop {
        // SAFETY: `name` is NUL-terminated and outlives the call; the mode
        // argument is read only with O_CREAT/O_TMPFILE, as passed.
        let rc = unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_CLOEXEC, mode) };
        match cvt(rc) {
            // SAFETY: a descriptor openat just returned is ours alone.
            Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
            Err(e) if is_interrupted(&e) => continue,
            Err(e) => return Err(e),
        }
    }
}

fn sys_flock(op: Op, fd: &OwnedFd, how: libc::c_int) -> io::Result<()> {
    fault::check(op)?;
    loop {
        let rc = if fault::interrupt() {
            Err(io::Error::from_raw_os_error(libc::EINTR))
        } else {
            // SAFETY: `fd` is an open descriptor we own.
            cvt(unsafe { libc::flock(fd.as_raw_fd(), how) })
        };
        match rc {
            Ok(_) => return Ok(()),
            // A signal interrupted a blocking wait: wait again.
            Err(e) if is_interrupted(&e) => continue,
            Err(e) => return Err(e),
        }
    }
}

pub(crate) fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` is writable memory of the right size; fstat fills it.
    cvt(unsafe { libc::fstat(fd, st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded, so it initialized `st`.
    Ok(unsafe { st.assume_init() })
}

fn sys_fstatat(dir: RawFd, name: &CStr, flags: libc::c_int) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `name` is NUL-terminated; `st` is writable memory of the right
    // size that fstatat fills.
    cvt(unsafe { libc::fstatat(dir, name.as_ptr(), st.as_mut_ptr(), flags) })?;
    // SAFETY: fstatat succeeded, so it initialized `st`.
    Ok(unsafe { st.assume_init() })
}

fn same_file(a: &libc::stat, b: &libc::stat) -> bool {
    a.st_dev == b.st_dev && a.st_ino == b.st_ino
}

fn sys_write(fd: &OwnedFd, buf: &[u8]) -> io::Result<usize> {
    fault::check(Op::Write)?;
    if fault::interrupt() {
        return Err(io::Error::from_raw_os_error(libc::EINTR));
    }
    // Linux writes at most 0x7ffff000 bytes per call anyway.
    let len = fault::write_len(buf.len()).min(0x7fff_f000);
    // SAFETY: `buf` is valid for reads of `len <= buf.len()` bytes.
    let rc = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), len) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}

/// fsync, never retried: after a failed fsync the kernel may have dropped
/// the dirty pages, so a second fsync can succeed without the data.
fn sys_fsync(op: Op, fd: &OwnedFd) -> io::Result<()> {
    fault::check(op)?;
    // SAFETY: `fd` is an open descriptor we own.
    cvt(unsafe { libc::fsync(fd.as_raw_fd()) }).map(drop)
}

/// Allocates `count` bytes of blocks at `offset`, keeping the file's size.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn sys_fallocate(fd: RawFd, offset: libc::off_t, count: libc::off_t) -> io::Result<()> {
    loop {
        // SAFETY: `fd` is an open descriptor; fallocate reads no memory of ours.
        match cvt(unsafe { libc::fallocate(fd, FALLOC_FL_KEEP_SIZE, offset, count) }) {
            Err(e) if is_interrupted(&e) => continue,
            other => return other.map(drop),
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn sys_fallocate(_fd: RawFd, _offset: libc::off_t, _count: libc::off_t) -> io::Result<()> {
    Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
}

fn sys_renameat(dir: RawFd, from: &CStr, to: &CStr) -> io::Result<()> {
    fault::check(Op::Rename)?;
    // SAFETY: both names are NUL-terminated and outlive the call.
    cvt(unsafe { libc::renameat(dir, from.as_ptr(), dir, to.as_ptr()) }).map(drop)
}

fn unlinkat(dir: RawFd, name: &CStr) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated and outlives the call.
    cvt(unsafe { libc::unlinkat(dir, name.as_ptr(), 0) }).map(drop)
}

/// Whether this process names unnamed files with `linkat(fd, "",
/// AT_EMPTY_PATH)`: Linux 6.10 and later allow it for a file the process
/// opened (before, only with `CAP_DAC_READ_SEARCH`, which containers lack).
/// 2.5 µs where `/proc/self/fd`'s lookup takes 5 (tmpfs here). Cleared at
/// the first refusal; `/proc` then names them.
static EMPTY_PATH_LINKS: AtomicBool = AtomicBool::new(true);

/// The empty name `AT_EMPTY_PATH` takes.
const EMPTY: &[u8; 1] = b"\0";

/// Names a file by `empty_path` while `allowed`; at its first refusal
/// (`ENOENT` before Linux 6.10 without `CAP_DAC_READ_SEARCH`, or a sandbox's
/// `EPERM`) by `proc_fd`, and, if that works, by `proc_fd` from then on.
fn link_either(
    allowed: &AtomicBool,
    empty_path: impl FnOnce() -> io::Result<()>,
    proc_fd: impl FnOnce() -> io::Result<()>,
) -> io::Result<()> {
    if !allowed.load(Ordering::Relaxed) {
        return proc_fd();
    }
    match empty_path() {
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EPERM)) => {
            proc_fd()?;
            allowed.store(false, Ordering::Relaxed);
            Ok(())
        }
        other => other,
    }
}

/// `linkat` of the descriptor `fd` itself to `name` in `dir`.
fn link_empty_path(fd: RawFd, dir: RawFd, name: &CStr) -> io::Result<()> {
    // SAFETY: both names are NUL-terminated and outlive the call.
    let rc = unsafe {
        libc::linkat(
            fd,
            EMPTY.as_ptr().cast(),
            dir,
            name.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    cvt(rc).map(drop)
}

/// `linkat` of `fd`'s `/proc/self/fd` entry, followed, to `name` in `dir`.
fn link_through_proc(fd: RawFd, dir: RawFd, name: &CStr) -> io::Result<()> {
    let proc_path = c_string(format!("/proc/self/fd/{fd}").as_bytes())?;
    // SAFETY: both names are NUL-terminated and outlive the call.
    let rc = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            proc_path.as_ptr(),
            dir,
            name.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    cvt(rc).map(drop)
}

/// Whether unnamed files can be named through `/proc/self/fd` here.
fn proc_fd_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| Path::new("/proc/self/fd").is_dir())
}

/// An unnamed file in `dir`, or `None` where the filesystem refuses them.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn open_unnamed(dir: RawFd) -> io::Result<Option<OwnedFd>> {
    if !proc_fd_available() {
        return Ok(None);
    }
    // Not a `c"."` literal: the crate supports Rust 1.75.
    let here =
        CStr::from_bytes_with_nul(b".\0").map_err(|_| io::Error::from(ErrorKind::InvalidInput))?;
    match sys_openat(Op::Open, dir, here, libc::O_TMPFILE | libc::O_WRONLY, 0o666) {
        Ok(fd) => Ok(Some(fd)),
        // EISDIR: a kernel that does not know O_TMPFILE sees O_DIRECTORY.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL | libc::ENOSYS)
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn open_unnamed(_dir: RawFd) -> io::Result<Option<OwnedFd>> {
    Ok(None)
}

/// Removes `.{name}.jptmp.*` files whose writer is gone: their lock can be
/// taken. Best effort: failures here never stop the save.
fn remove_stale_temps(dir_fd: &OwnedFd, dir: &Path, name: &OsStr) {
    if fault::check(Op::Scan).is_err() {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let prefix = temp_prefix(name);
    for entry in entries.flatten() {
        let fname = entry.file_name();
        if !fname.as_bytes().starts_with(&prefix) {
            continue;
        }
        let Ok(c) = c_string(fname.as_bytes()) else {
            continue;
        };
        // O_NOFOLLOW: a symlink is nobody's temp; O_NONBLOCK: a FIFO under
        // our prefix must not hang the save. Write access is the fallback for
        // a temp given a write-only mode.
        let flags = libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY;
        let file = match sys_openat(
            Op::ScanOpen,
            dir_fd.as_raw_fd(),
            &c,
            libc::O_RDONLY | flags,
            0,
        ) {
            Err(e) if e.raw_os_error() == Some(libc::EACCES) => sys_openat(
                Op::ScanOpen,
                dir_fd.as_raw_fd(),
                &c,
                libc::O_WRONLY | flags,
                0,
            ),
            other => other,
        };
        let Ok(file) = file else {
            continue;
        };
        let Ok(st) = fstat(file.as_raw_fd()) else {
            continue;
        };
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            continue;
        }
        // Held: a live writer, in this process or another.
        if sys_flock(Op::ScanLock, &file, libc::LOCK_EX | libc::LOCK_NB).is_err() {
            continue;
        }
        // Ours now. Remove it only if the name still means this file (it may
        // have been renamed over the target since we listed it).
        let still_it = sys_fstatat(dir_fd.as_raw_fd(), &c, libc::AT_SYMLINK_NOFOLLOW)
            .is_ok_and(|now| same_file(&now, &st));
        if still_it && fault::check(Op::ScanUnlink).is_ok() {
            let _ = unlinkat(dir_fd.as_raw_fd(), &c);
        }
        // Dropping `file` releases the lock.
    }
}

/// Opens the directory of `path` and stats its last component (not
/// following a symlink there when `nofollow`): the directory, and the stat
/// (`None` when nothing has that name yet). Errors name `shown`.
fn open_target_dir(
    shown: &Path,
    path: &Path,
    nofollow: bool,
) -> Result<(PathBuf, OwnedFd, Option<libc::stat>)> {
    let err = |op: &'static str| move |e: io::Error| Error::io(op, shown, e);
    let (dir, name) = split_target(path)?;
    let dir_c = c_string(dir.as_os_str().as_bytes()).map_err(err("open"))?;
    let name_c = c_string(name.as_bytes()).map_err(err("open"))?;
    let dir_fd = sys_openat(
        Op::OpenDir,
        libc::AT_FDCWD,
        &dir_c,
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
    )
    .map_err(err("open"))?;
    fault::check(Op::Stat).map_err(err("stat"))?;
    let flags = if nofollow {
        libc::AT_SYMLINK_NOFOLLOW
    } else {
        0
    };
    let stat = match sys_fstatat(dir_fd.as_raw_fd(), &name_c, flags) {
        Ok(st) => Some(st),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => return Err(err("stat")(e)),
    };
    Ok((path.to_path_buf(), dir_fd, stat))
}

/// Creates a named temp in `dir_fd`: `temp_name(attempt)` for attempt 0, 1,
/// ... until a name is free (another writer may hold the one drawn). Returns
/// the name and the file; fails on the first error other than `EEXIST`, or
/// with the last `EEXIST` once every attempt is taken.
fn create_named_temp(
    dir_fd: &OwnedFd,
    temp_name: impl Fn(usize) -> io::Result<CString>,
) -> io::Result<(CString, OwnedFd)> {
    let mut last_err = None;
    for attempt in 0..MAX_CREATE_ATTEMPTS {
        let temp = temp_name(attempt)?;
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
        match sys_openat(Op::Open, dir_fd.as_raw_fd(), &temp, flags, 0o666) {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EEXIST)))
}

impl AtomicFile {
    /// Creates a fresh temporary file next to `target`; see
    /// [`create_with`](AtomicFile::create_with). Unnamed where possible.
    pub fn create(target: &Path, fsync: bool) -> Result<AtomicFile> {
        Self::create_with(target, Options::new(fsync))
    }

    /// Creates a fresh temporary file next to `target`, first removing the
    /// temps that dead writers of the same target left (with
    /// `Options::scan_stale`).
    ///
    /// The temp is created with mode `0o666` (subject to the umask, like a
    /// plain `open()`), then given the existing target's permission bits so
    /// a replaced file keeps its mode. Every error names `target` as given.
    pub fn create_with(target: &Path, options: Options) -> Result<AtomicFile> {
        let shown = target;
        let err = |op: &'static str| move |e: io::Error| Error::io(op, shown, e);
        // The target's own stat tells both whether it is a symlink and, if not,
        // the mode and size of the file replaced: one call, where resolving
        // the links first would take another on every save.
        let (mut resolved, mut dir_fd, mut stat) = open_target_dir(shown, target, true)?;
        if matches!(stat, Some(st) if st.st_mode & libc::S_IFMT == libc::S_IFLNK) {
            resolved = resolve_symlinks(target)?;
            (_, dir_fd, stat) = open_target_dir(shown, &resolved, false)?;
        }
        let (dir, name) = split_target(&resolved)?;
        let name_c = c_string(name.as_bytes()).map_err(err("open"))?;
        if options.scan_stale {
            remove_stale_temps(&dir_fd, &dir, name);
        }
        let existing = stat.map(|st| (st.st_mode & 0o7777, st.st_size as u64));
        let in_memory = stat.is_some_and(|st| in_memory_fs::frees_in_memory(&dir_fd, st.st_dev));
        // Where the filesystem frees a small file in memory, the rename frees it.
        let keep_replaced = options.keep_replaced
            && existing.is_some_and(|(_, len)| len >= in_memory_fs::KEEP_ANYWAY_AT || !in_memory);

        let mut base = temp_prefix(name);
        base.extend_from_slice(std::process::id().to_string().as_bytes());
        base.push(b'.');
        let temp_name = |attempt: usize| {
            let mut fname = base.clone();
            fname.extend_from_slice(format!("{:016x}", random_u64(attempt)).as_bytes());
            c_string(&fname)
        };

        // A file replacing another takes the spare made after the last save
        // here, if there is one (see spare_files), and has the next one made.
        let replacing = options.unnamed_temp && existing.is_some();
        let spare = if replacing {
            spare_files::take(&dir_fd)
        } else {
            None
        };
        let spare_mode = spare.as_ref().map(|s| s.mode);
        let started = std::time::Instant::now();
        let (unnamed, slow) = match spare {
            Some(spare) => (Some(spare.file), true),
            None if options.unnamed_temp => {
                let file = open_unnamed(dir_fd.as_raw_fd()).map_err(err("open"))?;
                (file, spare_files::slow(started))
            }
            None => (None, false),
        };
        if replacing && slow && unnamed.is_some() {
            spare_files::want(&dir_fd);
        }
        let (temp, file, named) = match unnamed {
            Some(file) => (temp_name(0).map_err(err("open"))?, file, false),
            None => {
                let (temp, file) = create_named_temp(&dir_fd, temp_name).map_err(err("open"))?;
                (temp, file, true)
            }
        };
        let mut af = AtomicFile {
            shown: shown.to_path_buf(),
            target: resolved.clone(),
            dir,
            dir_fd,
            name: name_c,
            temp,
            file: Some(file),
            linked: named,
            unnamed: !named,
            fsync: options.fsync,
            replaced_len: existing.map(|(_, len)| len),
            keep_replaced,
            in_memory,
            len: 0,
            reserved: 0,
            reserving: true,
        };
        // From here on, dropping `af` on an error removes the temp.
        af.lock()?;
        if let Some((mode, _)) = existing.filter(|&(mode, _)| spare_mode != Some(mode)) {
            fault::check(Op::Chmod).map_err(err("fchmod"))?;
            // SAFETY: the descriptor is open and ours.
            cvt(unsafe { libc::fchmod(af.fd()?.as_raw_fd(), mode as libc::mode_t) })
                .map_err(err("fchmod"))?;
        }
        Ok(af)
    }

    /// Takes the temp's lock, held until the file is closed. A named temp is
    /// visible before it is locked: if a concurrent save took it for a dead
    /// writer's and removed it meanwhile, the writer starts over in a new
    /// temp.
    fn lock(&mut self) -> Result<()> {
        for attempt in 0..MAX_CREATE_ATTEMPTS {
            let file = self.fd()?;
            sys_flock(Op::Lock, file, libc::LOCK_EX).map_err(|e| self.error("flock", e))?;
            if self.unnamed {
                return Ok(());
            }
            let mine = fstat(file.as_raw_fd()).map_err(|e| self.error("stat", e))?;
            match sys_fstatat(
                self.dir_fd.as_raw_fd(),
                &self.temp,
                libc::AT_SYMLINK_NOFOLLOW,
            ) {
                Ok(named) if same_file(&named, &mine) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(self.error("stat", e)),
            }
            // Removed under us: the name is not ours any more.
            self.linked = false;
            let mut fname = temp_prefix(OsStr::from_bytes(self.name.as_bytes()));
            fname.extend_from_slice(
                format!("{}.{:016x}", std::process::id(), random_u64(attempt + 1)).as_bytes(),
            );
            let temp = c_string(&fname).map_err(|e| self.error("open", e))?;
            let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
            match sys_openat(Op::Open, self.dir_fd.as_raw_fd(), &temp, flags, 0o666) {
                Ok(file) => {
                    self.file = Some(file);
                    self.temp = temp;
                    self.linked = true;
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => {
                    self.file = None;
                    return Err(self.error("open", e));
                }
            }
        }
        Err(self.error("open", io::Error::from_raw_os_error(libc::EEXIST)))
    }

    fn error(&self, op: &'static str, e: io::Error) -> Error {
        Error::io(op, &self.shown, e)
    }

    fn fd(&self) -> Result<&OwnedFd> {
        self.file
            .as_ref()
            .ok_or_else(|| self.error("write", io::Error::from_raw_os_error(libc::EBADF)))
    }

    /// The path the temp file will be renamed to.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The temp file's path (it exists only for a named temp, or for an
    /// unnamed one between its link and the rename).
    pub fn temp_path(&self) -> PathBuf {
        self.dir.join(OsStr::from_bytes(self.temp.as_bytes()))
    }

    /// Whether the content is being written into an unnamed (`O_TMPFILE`)
    /// file, invisible in the directory until it is complete.
    pub fn is_unnamed(&self) -> bool {
        self.unnamed
    }

    /// Whether the target's filesystem keeps its files in memory (tmpfs,
    /// ramfs), where no fsync makes a file durable. Known only when a file
    /// is being replaced (its device is at hand then): `false` otherwise.
    pub fn in_memory(&self) -> bool {
        self.in_memory
    }

    /// The path the caller gave, which errors name.
    pub fn shown(&self) -> &Path {
        &self.shown
    }

    /// Bytes written to the temp file so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Allocates the file's blocks up to `end` bytes before they are written
    /// (see the module's notes: it keeps a large save out of ext4's flush at
    /// the rename). Best effort and never an error: a filesystem that cannot
    /// (`EOPNOTSUPP`: NFS, FUSE), or any failure, ends the reservations of
    /// this file, and the writes then allocate as they go, as without it. The
    /// blocks the content does not fill are given back at the commit.
    pub fn reserve(&mut self, end: u64) {
        if !self.reserving || end <= self.reserved.max(self.len) {
            return;
        }
        let start = self.reserved.max(self.len);
        // A file of many large values (a list of 1 MiB arrays) asks once per value: each
        // call costs about 40 us here, in the thread that writes. Reserving ahead as much
        // as is already written (at most RESERVE_AHEAD) makes that a few calls per file,
        // and a file's first reservation (a single large value's) stays exact.
        let end = end.saturating_add(self.len.min(RESERVE_AHEAD));
        let (Ok(offset), Ok(count)) = (
            libc::off_t::try_from(start),
            libc::off_t::try_from(end - start),
        ) else {
            self.reserving = false;
            return;
        };
        let Some(fd) = self.file.as_ref().map(AsRawFd::as_raw_fd) else {
            return;
        };
        if fault::check(Op::Reserve).is_err() || sys_fallocate(fd, offset, count).is_err() {
            self.reserving = false;
            return;
        }
        self.reserved = end;
    }

    /// Gives back the reserved blocks past the content. Best effort: they
    /// cost space, never content (the reservation kept the file's size).
    fn trim(&mut self, file: &OwnedFd) {
        if self.reserved <= self.len || fault::check(Op::Trim).is_err() {
            return;
        }
        let Ok(len) = libc::off_t::try_from(self.len) else {
            return;
        };
        loop {
            // SAFETY: `file` is an open descriptor we own.
            match cvt(unsafe { libc::ftruncate(file.as_raw_fd(), len) }) {
                Err(e) if is_interrupted(&e) => continue,
                _ => break,
            }
        }
        self.reserved = self.len;
    }

    /// Writes all of `buf` to the temp file (unbuffered; EINTR and short
    /// writes are retried).
    pub fn write_all(&mut self, mut buf: &[u8]) -> Result<()> {
        while !buf.is_empty() {
            match sys_write(self.fd()?, buf) {
                Ok(0) => return Err(self.error("write", io::Error::from(ErrorKind::WriteZero))),
                Ok(n) => {
                    buf = &buf[n..];
                    self.len += n as u64;
                }
                Err(e) if is_interrupted(&e) => {}
                Err(e) => return Err(self.error("write", e)),
            }
        }
        Ok(())
    }

    /// Flushes (if requested) and names the file, renames it over the
    /// target, then (if requested) syncs the directory so the rename is
    /// durable.
    ///
    /// If anything fails before the rename took effect, the temp is removed
    /// and the target is untouched; a failure after it (the directory's
    /// fsync) leaves the new content in place, not known to be durable.
    pub fn commit(self) -> Result<()> {
        // A replaced file kept open is freed here, when it is dropped.
        self.commit_keeping().map(drop)
    }

    /// [`commit`](AtomicFile::commit), which, with `Options::keep_replaced`,
    /// returns the replaced file, opened (`O_PATH`) just before the rename:
    /// while it is open, the rename does not free it. Closing it frees it.
    /// `None` when nothing was replaced (or it could not be opened: the
    /// rename then frees it, as without the option).
    pub fn commit_keeping(mut self) -> Result<Option<OwnedFd>> {
        // Taking the file out means Drop only removes the temp's name.
        let Some(file) = self.file.take() else {
            return Ok(None);
        };
        self.trim(&file);
        if self.fsync {
            sys_fsync(Op::FsyncFile, &file).map_err(|e| self.error("fsync", e))?;
        }
        if self.unnamed {
            self.link(&file)?;
        }
        // The rename drops the replaced file's last link, and the kernel frees
        // all its pages inside that call: a tenth of a second for a few hundred
        // MiB. A second link taken first moves that work to a thread. The link
        // is named like our temps and nobody holds its lock, so if we die
        // before removing it, the next save removes it.
        let kept = self.open_replaced();
        let old_alias = match self.replaced_len {
            Some(len) if len >= DEFER_FREE_AT && kept.is_none() => {
                let mut alias = self.temp.as_bytes().to_vec();
                alias.extend_from_slice(format!(".{:08x}", random_u64(7) as u32).as_bytes());
                c_string(&alias).ok().filter(|alias| {
                    let dir = self.dir_fd.as_raw_fd();
                    // SAFETY: both names are NUL-terminated and outlive the call.
                    let rc =
                        unsafe { libc::linkat(dir, self.name.as_ptr(), dir, alias.as_ptr(), 0) };
                    rc == 0
                })
            }
            _ => None,
        };
        if let Err(e) = sys_renameat(self.dir_fd.as_raw_fd(), &self.temp, &self.name) {
            if let Some(alias) = old_alias {
                let _ = unlinkat(self.dir_fd.as_raw_fd(), &alias);
            }
            return Err(self.error("rename", e));
        }
        self.linked = false;
        if let Some(alias) = old_alias {
            self.free_in_background(alias);
        }
        // The lock is released only now: until the rename, the temp's name
        // stayed locked, so no other save could take it for a dead writer's.
        fault::check(Op::Close).map_err(|e| self.error("close", e))?;
        let fd = file.into_raw_fd();
        // SAFETY: `fd` was just released from an owned descriptor, so nothing
        // else closes it; close errors (deferred NFS write errors) are
        // reported instead of silently dropped as OwnedFd's Drop would.
        if let Err(e) = cvt(unsafe { libc::close(fd) }) {
            // After EINTR the descriptor is already closed on Linux.
            if !is_interrupted(&e) {
                return Err(self.error("close", e));
            }
        }
        if self.fsync {
            sys_fsync(Op::FsyncDir, &self.dir_fd).map_err(|e| self.error("fsync", e))?;
        }
        Ok(kept)
    }

    /// The file about to be replaced, opened `O_PATH` (which opens nothing
    /// but the name: no device, FIFO or permission check), if the caller
    /// keeps it. Best effort: without it, the rename frees it.
    fn open_replaced(&self) -> Option<OwnedFd> {
        if !self.keep_replaced || self.replaced_len.is_none() {
            return None;
        }
        sys_openat(
            Op::Keep,
            self.dir_fd.as_raw_fd(),
            &self.name,
            libc::O_PATH | libc::O_NOFOLLOW,
            0,
        )
        .ok()
    }

    /// Names the unnamed file: `linkat` of the descriptor itself
    /// (`AT_EMPTY_PATH`) where the kernel lets this process, else of its
    /// `/proc/self/fd` entry.
    fn link(&mut self, file: &OwnedFd) -> Result<()> {
        fault::check(Op::Link).map_err(|e| self.error("link", e))?;
        let (fd, dir, temp) = (file.as_raw_fd(), self.dir_fd.as_raw_fd(), &self.temp);
        link_either(
            &EMPTY_PATH_LINKS,
            || link_empty_path(fd, dir, temp),
            || link_through_proc(fd, dir, temp),
        )
        .map_err(|e| self.error("link", e))?;
        self.linked = true;
        Ok(())
    }

    fn free_in_background(&self, alias: CString) {
        if let Ok(dir) = self.dir_fd.try_clone() {
            let name = alias.clone();
            let spawned = std::thread::Builder::new()
                .name("jobpersist-free".into())
                .spawn(move || {
                    let _ = unlinkat(dir.as_raw_fd(), &name);
                });
            if spawned.is_ok() {
                return;
            }
        }
        let _ = unlinkat(self.dir_fd.as_raw_fd(), &alias);
    }

    /// Discards the temp file, leaving the target untouched.
    pub fn abort(mut self) {
        self.discard();
    }

    fn discard(&mut self) {
        self.file = None;
        if self.linked {
            self.linked = false;
            let _ = unlinkat(self.dir_fd.as_raw_fd(), &self.temp);
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
    use std::fs::File;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

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

    fn options(fsync: bool, unnamed_temp: bool) -> Options {
        Options {
            fsync,
            unnamed_temp,
            scan_stale: true,
            keep_replaced: false,
        }
    }

    #[test]
    fn reserved_blocks_come_before_the_writes_and_the_rest_goes_at_commit() {
        let d = TempDir::new("reserve");
        let target = d.0.join("ckpt.json");
        for unnamed in [true, false] {
            let mut f = AtomicFile::create_with(&target, options(false, unnamed)).unwrap();
            f.reserve(8 << 20);
            // Linux's local filesystems (ext4, xfs, btrfs, tmpfs) all reserve.
            assert!(f.reserving);
            let st = fstat(f.fd().unwrap().as_raw_fd()).unwrap();
            assert!(st.st_blocks as u64 * 512 >= 8 << 20, "{}", st.st_blocks);
            assert_eq!(st.st_size, 0);
            // A reservation below what is reserved or written asks nothing.
            f.reserve(1 << 20);
            assert_eq!(f.reserved, 8 << 20);
            f.write_all(b"content").unwrap();
            f.commit().unwrap();
            assert_eq!(fs::read(&target).unwrap(), b"content");
            use std::os::unix::fs::MetadataExt;
            let blocks = fs::metadata(&target).unwrap().blocks();
            assert!(blocks * 512 < 1 << 20, "{blocks} blocks kept");
        }
    }

    #[test]
    fn many_values_in_a_row_reserve_ahead_in_few_calls() {
        let d = TempDir::new("reserve-ahead");
        let target = d.0.join("ckpt.json");
        let mut f = AtomicFile::create_with(&target, options(false, true)).unwrap();
        let value = vec![b'x'; 1 << 20];
        fault::arm(fault::Plan::default());
        for _ in 0..96 {
            // What a writer asks before each 1 MiB value: its size and some slack.
            let end = f.len() + (2 << 20);
            f.reserve(end);
            assert!(f.reserved >= end);
            f.write_all(&value).unwrap();
        }
        let reserves = fault::disarm()
            .ops
            .iter()
            .filter(|&&op| op == Op::Reserve)
            .count();
        // Ahead by as much as is written: about log2(96) calls, not 96.
        assert!((2..=10).contains(&reserves), "{reserves} reservations");
        // Never more than RESERVE_AHEAD past what was asked.
        assert!(f.reserved <= f.len() + (2 << 20) + RESERVE_AHEAD);
        f.commit().unwrap();
        use std::os::unix::fs::MetadataExt;
        let meta = fs::metadata(&target).unwrap();
        assert_eq!(meta.len(), 96 << 20);
        assert!(
            meta.blocks() * 512 < (97 << 20),
            "{} blocks kept",
            meta.blocks()
        );
    }

    #[test]
    fn a_refused_empty_path_link_falls_back_to_proc_for_good() {
        let errno = |n| move || Err(io::Error::from_raw_os_error(n));
        let calls = std::cell::Cell::new(0);
        let proc_ok = || {
            calls.set(calls.get() + 1);
            Ok(())
        };
        // Allowed: /proc is never asked, and the answer stays.
        let allowed = AtomicBool::new(true);
        link_either(&allowed, || Ok(()), proc_ok).unwrap();
        assert!(allowed.load(Ordering::Relaxed) && calls.get() == 0);
        // Another error is the save's: no /proc, and the next save tries again.
        let err = link_either(&allowed, errno(libc::EEXIST), proc_ok).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EEXIST));
        assert!(allowed.load(Ordering::Relaxed) && calls.get() == 0);
        // A refusal whose /proc link fails too (the directory is gone) changes nothing.
        let err = link_either(&allowed, errno(libc::ENOENT), errno(libc::ENOENT)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
        assert!(allowed.load(Ordering::Relaxed));
        // A refusal: /proc names it, and names every later one.
        for refusal in [libc::ENOENT, libc::EPERM] {
            let allowed = AtomicBool::new(true);
            calls.set(0);
            link_either(&allowed, errno(refusal), proc_ok).unwrap();
            assert!(!allowed.load(Ordering::Relaxed) && calls.get() == 1);
            link_either(&allowed, || panic!("asked again"), proc_ok).unwrap();
            assert_eq!(calls.get(), 2);
        }
    }

    #[test]
    fn both_links_name_an_unnamed_file() {
        let dir = TempDir::new("links");
        let dir_fd: OwnedFd = File::open(&dir.0).unwrap().into();
        for (name, link) in [
            (
                "by-fd",
                link_empty_path as fn(RawFd, RawFd, &CStr) -> io::Result<()>,
            ),
            ("by-proc", link_through_proc),
        ] {
            let Some(file) = open_unnamed(dir_fd.as_raw_fd()).unwrap() else {
                return; // no O_TMPFILE here
            };
            let name_c = c_string(name.as_bytes()).unwrap();
            match link(file.as_raw_fd(), dir_fd.as_raw_fd(), &name_c) {
                Ok(()) => assert!(dir.0.join(name).is_file()),
                // An older kernel refuses the first without CAP_DAC_READ_SEARCH.
                Err(e) => assert_eq!((name, e.raw_os_error()), ("by-fd", Some(libc::ENOENT))),
            }
        }
    }

    #[test]
    fn write_commit_creates_with_default_mode() {
        let d = TempDir::new("create");
        let target = d.0.join("ckpt.json");
        for fsync in [false, true] {
            for unnamed in [false, true] {
                let _ = fs::remove_file(&target);
                let mut f = AtomicFile::create_with(&target, options(fsync, unnamed)).unwrap();
                assert!(f.temp_path().starts_with(&d.0));
                f.write_all(b"hello ").unwrap();
                f.write_all(b"world").unwrap();
                f.commit().unwrap();
                assert_eq!(fs::read(&target).unwrap(), b"hello world");
            }
        }
        let plain = d.0.join("plain");
        File::create(&plain).unwrap();
        let want = fs::metadata(&plain).unwrap().mode() & 0o7777;
        assert_eq!(fs::metadata(&target).unwrap().mode() & 0o7777, want);
        assert_eq!(names(&d.0), ["ckpt.json", "plain"]);
    }

    #[test]
    fn the_unnamed_temp_is_invisible_until_complete() {
        let d = TempDir::new("unnamed");
        let target = d.0.join("t");
        fs::write(&target, b"old").unwrap();
        let mut f = AtomicFile::create(&target, true).unwrap();
        // The temp directory is on a filesystem with O_TMPFILE (ext4, tmpfs).
        assert!(f.is_unnamed());
        f.write_all(&[b'x'; 100_000]).unwrap();
        assert_eq!(names(&d.0), ["t"]);
        f.commit().unwrap();
        assert_eq!(fs::read(&target).unwrap().len(), 100_000);
        assert_eq!(names(&d.0), ["t"]);

        let mut f = AtomicFile::create_with(&target, options(false, false)).unwrap();
        assert!(!f.is_unnamed());
        f.write_all(b"named").unwrap();
        assert_eq!(names(&d.0).len(), 2);
        f.commit().unwrap();
        assert_eq!(names(&d.0), ["t"]);
    }

    #[test]
    fn replace_keeps_mode() {
        let d = TempDir::new("mode");
        let target = d.0.join("t");
        for unnamed in [false, true] {
            fs::write(&target, b"old").unwrap();
            fs::set_permissions(&target, fs::Permissions::from_mode(0o600)).unwrap();
            let mut f = AtomicFile::create_with(&target, options(true, unnamed)).unwrap();
            f.write_all(b"new").unwrap();
            f.commit().unwrap();
            assert_eq!(fs::read(&target).unwrap(), b"new");
            assert_eq!(fs::metadata(&target).unwrap().mode() & 0o7777, 0o600);
            assert_eq!(names(&d.0), ["t"]);
        }
    }

    #[test]
    fn a_kept_replaced_file_is_handed_back_unlinked_and_alive() {
        let d = TempDir::new("keep");
        let target = d.0.join("t");
        let keep = Options {
            keep_replaced: true,
            ..options(false, true)
        };
        fs::write(&target, b"old").unwrap();
        let mut f = AtomicFile::create_with(&target, keep).unwrap();
        f.write_all(b"new!").unwrap();
        let kept = f.commit_keeping().unwrap();
        if in_memory(&d.0) {
            assert!(kept.is_none(), "a file freed in memory is not kept");
            return;
        }
        let kept = kept.expect("the replaced file");
        assert_eq!(fs::read(&target).unwrap(), b"new!");
        // The rename unlinked it; it lives on while open (closing it frees it).
        let st = fstat(kept.as_raw_fd()).unwrap();
        assert_eq!((st.st_nlink, st.st_size), (0, 3));
        assert_eq!(names(&d.0), ["t"]);
        // Nothing replaced, nothing kept; without the option, nothing kept either.
        fs::remove_file(&target).unwrap();
        let f = AtomicFile::create_with(&target, keep).unwrap();
        assert!(f.commit_keeping().unwrap().is_none());
        let f = AtomicFile::create_with(&target, options(false, true)).unwrap();
        assert!(f.commit_keeping().unwrap().is_none());
    }

    fn in_memory(dir: &Path) -> bool {
        let dir = OwnedFd::from(fs::File::open(dir).unwrap());
        let dev = fstat(dir.as_raw_fd()).unwrap().st_dev;
        in_memory_fs::frees_in_memory(&dir, dev)
    }

    #[test]
    fn nothing_is_kept_where_files_live_in_memory() {
        let dir = Path::new("/dev/shm").join(format!("jp-core-keep-{}", std::process::id()));
        if fs::create_dir_all(&dir).is_err() || !in_memory(&dir) {
            let _ = fs::remove_dir(&dir);
            return; // no tmpfs at /dev/shm here
        }
        let target = dir.join("t");
        fs::write(&target, b"old").unwrap();
        let keep = Options {
            keep_replaced: true,
            ..options(false, true)
        };
        let mut f = AtomicFile::create_with(&target, keep).unwrap();
        f.write_all(b"new").unwrap();
        let kept = f.commit_keeping();
        fs::remove_dir_all(&dir).unwrap();
        assert!(kept.unwrap().is_none());
    }

    #[test]
    fn drop_and_abort_leave_old_file() {
        let d = TempDir::new("abort");
        let target = d.0.join("t");
        fs::write(&target, b"old").unwrap();
        for unnamed in [false, true] {
            {
                let mut f = AtomicFile::create_with(&target, options(false, unnamed)).unwrap();
                f.write_all(b"partial").unwrap();
            }
            assert_eq!(fs::read(&target).unwrap(), b"old");
            assert_eq!(names(&d.0), ["t"]);
            let mut f = AtomicFile::create_with(&target, options(false, unnamed)).unwrap();
            f.write_all(b"partial").unwrap();
            f.abort();
            assert_eq!(fs::read(&target).unwrap(), b"old");
            assert_eq!(names(&d.0), ["t"]);
        }
    }

    #[test]
    fn unlocked_temps_are_removed_whatever_their_pid_locked_ones_kept() {
        let d = TempDir::new("stale");
        let target = d.0.join("t.json");
        let me = std::process::id();
        let stale: Vec<PathBuf> = [
            format!(".t.json.jptmp.{me}.abcdef"),
            ".t.json.jptmp.1.abcdef".into(),
            ".t.json.jptmp.0.abcdef".into(),
            ".t.json.jptmp.-1.abcdef".into(),
            ".t.json.jptmp.2147483632.abcdef".into(),
            ".t.json.jptmp.junk".into(),
        ]
        .iter()
        .map(|n| d.0.join(n))
        .collect();
        for p in &stale {
            fs::write(p, b"x").unwrap();
        }
        // Another target's temp, a directory and a symlink under the prefix.
        let other = d.0.join(format!(".u.json.jptmp.{me}.abcdef"));
        fs::write(&other, b"x").unwrap();
        let subdir = d.0.join(".t.json.jptmp.1.dir");
        fs::create_dir(&subdir).unwrap();
        let link = d.0.join(".t.json.jptmp.1.link");
        std::os::unix::fs::symlink(&other, &link).unwrap();
        // A live writer's temp: its lock is held (by this process, through
        // another open file description, as another thread's save would).
        let live = d.0.join(format!(".t.json.jptmp.{me}.live"));
        fs::write(&live, b"x").unwrap();
        let held = File::open(&live).unwrap();
        // SAFETY: the descriptor is open for the call.
        let rc = unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        assert_eq!(rc, 0);
        let f = AtomicFile::create(&target, false).unwrap();
        drop(f);
        for p in &stale {
            assert!(!p.exists(), "{p:?} kept");
        }
        for p in [&other, &subdir, &live] {
            assert!(p.exists(), "{p:?} removed");
        }
        assert!(fs::symlink_metadata(&link).is_ok());
        drop(held);
        drop(AtomicFile::create(&target, false).unwrap());
        assert!(!live.exists());
    }

    thread_local! {
        static RACE_DIR: std::cell::RefCell<PathBuf> = const { std::cell::RefCell::new(PathBuf::new()) };
    }

    /// Another save's cleanup, between the creation of a named temp and its lock: every
    /// unlocked temp in the directory looks like a dead writer's and is removed.
    fn concurrent_cleanup() {
        let dir = RACE_DIR.with(|d| d.borrow().clone());
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.to_string_lossy().contains(".jptmp.") {
                fs::remove_file(path).unwrap();
            }
        }
    }

    #[test]
    fn a_named_temp_removed_before_its_lock_is_replaced() {
        let d = TempDir::new("race");
        let target = d.0.join("t");
        fs::write(&target, b"old").unwrap();
        RACE_DIR.with(|r| *r.borrow_mut() = d.0.clone());
        crate::fault::arm(crate::fault::Plan {
            before: Some((Op::Lock, concurrent_cleanup)),
            ..Default::default()
        });
        let created = AtomicFile::create_with(&target, options(false, false));
        let record = crate::fault::disarm();
        let mut f = created.unwrap();
        // Created, found removed after locking, created again under a new name.
        assert_eq!(record.ops.iter().filter(|op| **op == Op::Open).count(), 2);
        assert_eq!(names(&d.0).len(), 2);
        f.write_all(b"new").unwrap();
        f.commit().unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"new");
        assert_eq!(names(&d.0), ["t"]);
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
        for unnamed in [false, true] {
            let _ = fs::remove_dir_all(&target);
            let f = AtomicFile::create_with(&target, options(false, unnamed)).unwrap();
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
}
