//! The fault-injection seam of the atomic writer, SQLite-style.
//!
//! Every I/O operation [`AtomicFile`](crate::AtomicFile) performs first asks
//! [`check`] whether to fail. Nothing is armed by default: the check is one
//! thread-local read per system call (a save makes a few dozen), so the seam
//! stays compiled in release builds, where the Python tests reach it through
//! the extension module. The plan is per thread, so a plan armed by one test
//! never fails another thread's save.

use std::cell::RefCell;
use std::io;

/// The kinds of I/O operation an atomic save performs, in the order a save
/// usually performs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// Listing the directory for stale temp files.
    Scan,
    /// Opening a stale temp file to test its lock.
    ScanOpen,
    /// Taking a stale temp file's lock (non-blocking).
    ScanLock,
    /// Removing a stale temp file whose writer is gone.
    ScanUnlink,
    /// Opening the target's directory.
    OpenDir,
    /// Reading the replaced file's mode and size.
    Stat,
    /// Creating the temp file (unnamed or named).
    Open,
    /// Locking the temp file for as long as it is written.
    Lock,
    /// Giving the temp file the replaced file's mode.
    Chmod,
    /// Allocating the blocks of a large content ahead of its writes
    /// (`fallocate`, best effort).
    Reserve,
    /// One `write(2)` of the content.
    Write,
    /// Giving back the blocks reserved beyond the content (`ftruncate`, best
    /// effort).
    Trim,
    /// Flushing the file's data to stable storage.
    FsyncFile,
    /// Naming the unnamed temp file (`linkat`).
    Link,
    /// Opening the replaced file to keep it across the rename (best effort).
    Keep,
    /// Replacing the target (`renameat`).
    Rename,
    /// Flushing the directory, so the rename is durable.
    FsyncDir,
    /// Closing the file once it replaced the target.
    Close,
}

impl Op {
    /// Every operation, for test matrices.
    pub const ALL: [Op; 18] = [
        Op::Scan,
        Op::ScanOpen,
        Op::ScanLock,
        Op::ScanUnlink,
        Op::OpenDir,
        Op::Stat,
        Op::Open,
        Op::Lock,
        Op::Chmod,
        Op::Reserve,
        Op::Write,
        Op::Trim,
        Op::FsyncFile,
        Op::Link,
        Op::Keep,
        Op::Rename,
        Op::FsyncDir,
        Op::Close,
    ];

    /// A short lowercase name, e.g. `"fsync_file"`.
    pub fn name(self) -> &'static str {
        match self {
            Op::Scan => "scan",
            Op::ScanOpen => "scan_open",
            Op::ScanLock => "scan_lock",
            Op::ScanUnlink => "scan_unlink",
            Op::OpenDir => "open_dir",
            Op::Stat => "stat",
            Op::Open => "open",
            Op::Lock => "lock",
            Op::Chmod => "chmod",
            Op::Reserve => "reserve",
            Op::Write => "write",
            Op::Trim => "trim",
            Op::FsyncFile => "fsync_file",
            Op::Link => "link",
            Op::Keep => "keep",
            Op::Rename => "rename",
            Op::FsyncDir => "fsync_dir",
            Op::Close => "close",
        }
    }

    /// Whether a failure of this operation is part of the best-effort stale
    /// temp cleanup, which never fails a save.
    pub fn is_scan(self) -> bool {
        matches!(
            self,
            Op::Scan | Op::ScanOpen | Op::ScanLock | Op::ScanUnlink
        )
    }

    /// Whether a failure of this operation leaves the save going on: the
    /// stale temp cleanup, the block reservation and keeping the replaced
    /// file are optimisations.
    pub fn is_best_effort(self) -> bool {
        self.is_scan() || matches!(self, Op::Reserve | Op::Trim | Op::Keep)
    }
}

/// What to inject into the calling thread's saves.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Fail the operation with this 1-based index (counting every operation
    /// of the thread since [`arm`]) with `errno`.
    pub fail_at: Option<u64>,
    /// The errno of the injected failure.
    pub errno: i32,
    /// Every other attempt of a write or a blocking lock returns EINTR first.
    pub interrupt: bool,
    /// Writes take at most half of what they are given (at least one byte).
    pub short_writes: bool,
    /// Runs once, just before the first operation of this kind: a concurrent actor (another
    /// process's save, say) stepping in at that point.
    pub before: Option<(Op, fn())>,
}

/// What the armed plan saw.
#[derive(Clone, Debug, Default)]
pub struct Record {
    /// Every operation checked, in order.
    pub ops: Vec<Op>,
    /// The operation that failed, if the plan's index was reached.
    pub failed: Option<Op>,
    /// EINTRs returned.
    pub interrupts: u64,
    /// Writes shortened.
    pub short_writes: u64,
}

struct State {
    plan: Plan,
    record: Record,
    toggle: bool,
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

/// Arms `plan` for the calling thread, replacing any armed plan.
pub fn arm(plan: Plan) {
    STATE.with(|s| {
        *s.borrow_mut() = Some(State {
            plan,
            record: Record::default(),
            toggle: false,
        })
    });
}

/// Disarms the calling thread's plan and returns what it recorded.
pub fn disarm() -> Record {
    STATE.with(|s| {
        s.borrow_mut()
            .take()
            .map(|st| st.record)
            .unwrap_or_default()
    })
}

/// The calling thread's armed plan, moved to a thread that does part of the
/// same save (the write pipe's writer) and back, so a plan sees every
/// operation of its save in order.
pub(crate) struct Handoff(Option<State>);

/// Takes the calling thread's plan (if any) for another thread.
pub(crate) fn hand_off() -> Handoff {
    Handoff(STATE.with(|s| s.borrow_mut().take()))
}

/// Installs a plan handed off by another thread in the calling thread.
pub(crate) fn take_over(handoff: Handoff) {
    if let Some(state) = handoff.0 {
        STATE.with(|s| *s.borrow_mut() = Some(state));
    }
}

/// Counts `op`; the injected error if it is the one to fail.
pub(crate) fn check(op: Op) -> io::Result<()> {
    let hook = STATE.with(|s| {
        let mut guard = s.borrow_mut();
        let st = guard.as_mut()?;
        match st.plan.before {
            Some((at, hook)) if at == op => {
                st.plan.before = None;
                Some(hook)
            }
            _ => None,
        }
    });
    // Outside the borrow: the hook may save files itself.
    if let Some(hook) = hook {
        hook();
    }
    STATE.with(|s| {
        let mut guard = s.borrow_mut();
        let Some(st) = guard.as_mut() else {
            return Ok(());
        };
        st.record.ops.push(op);
        if st.plan.fail_at == Some(st.record.ops.len() as u64) {
            st.record.failed = Some(op);
            return Err(io::Error::from_raw_os_error(st.plan.errno));
        }
        Ok(())
    })
}

/// Whether this attempt of a restartable call should return EINTR.
pub(crate) fn interrupt() -> bool {
    STATE.with(|s| {
        let mut guard = s.borrow_mut();
        let Some(st) = guard.as_mut() else {
            return false;
        };
        if !st.plan.interrupt {
            return false;
        }
        st.toggle = !st.toggle;
        if st.toggle {
            st.record.interrupts += 1;
        }
        st.toggle
    })
}

/// How many of `len` bytes this write may take.
pub(crate) fn write_len(len: usize) -> usize {
    STATE.with(|s| {
        let mut guard = s.borrow_mut();
        match guard.as_mut() {
            Some(st) if st.plan.short_writes && len > 1 => {
                st.record.short_writes += 1;
                len / 2
            }
            _ => len,
        }
    })
}
