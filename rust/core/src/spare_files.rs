//! Spare unnamed files: the file a save replaces its target with, created
//! before the save needs it.
//!
//! Creating a file is most of the cost of a small save on some disks: an
//! `O_TMPFILE` open took 0.09-0.2 ms on this project's test machine's ext4,
//! where the rest of a tiny save (writes, `linkat`, `rename`) takes under
//! 0.1 ms. The reference pays nothing of the kind: it truncates the file in
//! place (and so can leave it torn). After a save that replaced a file
//! through an unnamed temp, a thread of this module creates the next unnamed
//! file in the same directory, and the next save there takes it instead of
//! creating its own.
//!
//! Only where creating is slow: a save wants a spare when its own creation
//! took [`SLOW_CREATE_NS`] or more, and the thread keeps a spare only if making
//! it took as long. On tmpfs (5 µs) a spare would cost more (a thread's
//! wake-up, the other core) than it saves, and no directory there keeps one.
//!
//! A spare is an `O_TMPFILE` file nobody can reach: it has no name until a
//! save names it, and it vanishes with the process. Each directory keeps at
//! most one, and at most [`MAX_SPARES`] directories keep one (the oldest
//! goes first). A spare is used only to replace an existing file, whose mode
//! the save gives it anyway, so a umask changed meanwhile changes nothing.
//!
//! Forks: a spare is taken only by the process that made it (a child holds
//! copies of its parent's descriptors: two processes must never write one
//! file). A save only ever try-locks the pool: a child forked while the
//! thread held the lock finds it locked forever and creates its own files,
//! as a save without a spare does.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Instant;

/// The most directories that keep a spare.
pub const MAX_SPARES: usize = 4;

/// A file creation this slow (in nanoseconds) makes its directory keep a
/// spare: on ext4 on the project's test machine, creating took 90-200 µs.
pub const SLOW_CREATE_NS: u64 = 40_000;

/// When saves take and want spares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Never: every save creates its own file (tests of that path).
    Off,
    /// In directories where creating a file is slow (the default).
    WhereSlow,
    /// After every save that replaced a file (tests of the spares).
    Always,
}

static POLICY: AtomicU8 = AtomicU8::new(Policy::WhereSlow as u8);

fn policy() -> Policy {
    match POLICY.load(Ordering::Relaxed) {
        0 => Policy::Off,
        2 => Policy::Always,
        _ => Policy::WhereSlow,
    }
}

/// A directory, as the kernel knows it: a spare made in one is linked there.
type DirKey = (libc::dev_t, libc::ino_t);

/// An unnamed file of this process, ready for a save in its directory.
#[derive(Debug)]
pub struct Spare {
    dir: DirKey,
    /// Its permission bits (`0o666` less the umask when it was made).
    pub mode: u32,
    /// The open file, empty.
    pub file: OwnedFd,
}

enum Thread {
    NotStarted,
    Running,
    /// It could not be started: no spares in this process.
    Failed,
}

struct Pool {
    /// The process these spares and this thread belong to.
    pid: u32,
    /// Oldest first.
    spares: Vec<Spare>,
    /// Directories (their keys and a descriptor of each) waiting for a spare.
    wanted: Vec<(DirKey, OwnedFd)>,
    /// The directory the thread is making a spare in.
    making: Option<DirKey>,
    thread: Thread,
}

impl Pool {
    /// Forgets what a parent process left: its spares (this process's
    /// copies of them are closed, which frees nothing the parent holds) and
    /// its thread, which does not exist here.
    fn own(&mut self) {
        let pid = std::process::id();
        if self.pid != pid {
            self.pid = pid;
            self.spares.clear();
            self.wanted.clear();
            self.making = None;
            self.thread = Thread::NotStarted;
        }
    }
}

fn pool() -> &'static (Mutex<Pool>, Condvar) {
    static POOL: OnceLock<(Mutex<Pool>, Condvar)> = OnceLock::new();
    POOL.get_or_init(|| {
        let pool = Pool {
            pid: std::process::id(),
            spares: Vec::new(),
            wanted: Vec::new(),
            making: None,
            thread: Thread::NotStarted,
        };
        (Mutex::new(pool), Condvar::new())
    })
}

fn key(st: &libc::stat) -> DirKey {
    (st.st_dev, st.st_ino)
}

fn dir_key(dir: &OwnedFd) -> Option<DirKey> {
    crate::atomic_file::fstat(dir.as_raw_fd())
        .ok()
        .map(|st| key(&st))
}

/// Sets when this process's saves use spares; `Off` also closes the spares
/// made (a test hook).
pub fn set_policy(policy: Policy) {
    POLICY.store(policy as u8, Ordering::Relaxed);
    if policy == Policy::Off {
        if let Ok(mut pool) = pool().0.lock() {
            pool.spares.clear();
        }
    }
}

/// How many spares this process holds (a test hook).
pub fn count() -> usize {
    let Ok(mut pool) = pool().0.lock() else {
        return 0;
    };
    pool.own();
    pool.spares.len()
}

/// The spare made in `dir`, if this process has one (never waits).
pub fn take(dir: &OwnedFd) -> Option<Spare> {
    if policy() == Policy::Off {
        return None;
    }
    let mut pool = pool().0.try_lock().ok()?;
    if pool.spares.is_empty() {
        return None; // (the common case where creating is fast: no getpid, no fstat)
    }
    pool.own();
    if pool.spares.is_empty() {
        return None; // a parent's
    }
    let dir = dir_key(dir)?;
    let at = pool.spares.iter().position(|s| s.dir == dir)?;
    Some(pool.spares.remove(at))
}

/// Has a spare made in `dir` for the next save there, unless one is there
/// or coming (never waits; best effort).
pub fn want(dir: &OwnedFd) {
    if policy() == Policy::Off {
        return;
    }
    let Some(key) = dir_key(dir) else {
        return;
    };
    let (lock, ready) = pool();
    let Ok(mut pool) = lock.try_lock() else {
        return;
    };
    pool.own();
    let known = pool.making == Some(key)
        || pool.spares.iter().any(|s| s.dir == key)
        || pool.wanted.iter().any(|w| w.0 == key);
    if known || matches!(pool.thread, Thread::Failed) {
        return;
    }
    let Ok(copy) = dir.try_clone() else {
        return;
    };
    pool.wanted.push((key, copy));
    if matches!(pool.thread, Thread::NotStarted) {
        let spawned = std::thread::Builder::new()
            .name("jobpersist-spares".into())
            .spawn(make_spares);
        pool.thread = match spawned {
            Ok(_) => Thread::Running,
            Err(_) => {
                pool.wanted.clear();
                Thread::Failed
            }
        };
    }
    ready.notify_one();
}

/// The thread: makes a spare for each directory that wants one.
fn make_spares() {
    let (lock, ready) = pool();
    loop {
        let (dir, fd) = {
            let Ok(mut pool) = lock.lock() else {
                return;
            };
            loop {
                if let Some(next) = pool.wanted.pop() {
                    pool.making = Some(next.0);
                    break next;
                }
                pool = match ready.wait(pool) {
                    Ok(pool) => pool,
                    Err(_) => return,
                };
            }
        };
        let started = Instant::now();
        // A spare made fast is dropped: the directory creates its files fast.
        let spare = make(dir, &fd).filter(|_| slow(started));
        let Ok(mut pool) = lock.lock() else {
            return;
        };
        pool.making = None;
        let Some(spare) = spare else {
            continue;
        };
        if policy() == Policy::Off || pool.spares.iter().any(|s| s.dir == dir) {
            continue;
        }
        if pool.spares.len() >= MAX_SPARES {
            pool.spares.remove(0);
        }
        pool.spares.push(spare);
    }
}

/// Whether a creation that began at `started` was slow enough for a spare:
/// it took [`SLOW_CREATE_NS`] or more (always, under `Policy::Always`).
pub fn slow(started: Instant) -> bool {
    policy() == Policy::Always || started.elapsed().as_nanos() >= u128::from(SLOW_CREATE_NS)
}

fn make(dir: DirKey, fd: &OwnedFd) -> Option<Spare> {
    let file = crate::atomic_file::open_unnamed(fd.as_raw_fd()).ok()??;
    let st = crate::atomic_file::fstat(file.as_raw_fd()).ok()?;
    Some(Spare {
        dir,
        mode: st.st_mode & 0o7777,
        file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn dir_fd(path: &std::path::Path) -> OwnedFd {
        fs::File::open(path).unwrap().into()
    }

    fn wait_for_spare(dir: &OwnedFd) -> Spare {
        for _ in 0..500 {
            if let Some(spare) = take(dir) {
                return spare;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        panic!("no spare was made");
    }

    #[test]
    fn a_wanted_spare_is_made_in_its_directory_and_taken_once() {
        set_policy(Policy::Always);
        let base = std::env::temp_dir().join(format!("jp-spares-{}", std::process::id()));
        let (a, b) = (base.join("a"), base.join("b"));
        fs::create_dir_all(&a).unwrap();
        fs::create_dir_all(&b).unwrap();
        let (fa, fb) = (dir_fd(&a), dir_fd(&b));
        want(&fa);
        let spare = wait_for_spare(&fa);
        // Only the directory it was made in gets it, and only once.
        assert!(take(&fb).is_none());
        assert!(take(&fa).is_none());
        let st = crate::atomic_file::fstat(spare.file.as_raw_fd()).unwrap();
        assert_eq!(st.st_size, 0);
        assert_eq!(st.st_nlink, 0);
        assert_eq!(st.st_mode & 0o7777, spare.mode);
        // Nothing appeared in the directory.
        assert_eq!(fs::read_dir(&a).unwrap().count(), 0);
        want(&fb);
        wait_for_spare(&fb);
        fs::remove_dir_all(&base).unwrap();
    }
}
