//! Whether a directory's filesystem keeps its files in memory (tmpfs, ramfs).
//!
//! A save that replaces a file on a disk keeps the replaced file open across
//! the rename and has it freed off the caller's path (see
//! `Options::keep_replaced`): freeing a file there is disk work (0.1-0.2 ms
//! here, with discards). In memory it is not: keeping a small file open would
//! only cost the save an `open` and the process a hand-over to the freeing
//! thread, so there the rename frees it (a large one is kept anyway:
//! [`KEEP_ANYWAY_AT`]). Known per device, asked once.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Mutex;

/// `statfs.f_type` of the filesystems that hold their files in memory
/// (linux/magic.h): tmpfs, ramfs. The Python twin knows them by name.
const IN_MEMORY_MAGIC: [libc::c_long; 2] = [0x0102_1994, 0x8584_58f6];

/// A replaced file this big or bigger is kept even on such a filesystem:
/// freeing its pages takes milliseconds there too (50 ms for 350 MB here).
pub const KEEP_ANYWAY_AT: u64 = 32 << 20;

/// The most devices remembered; beyond, the list starts again.
const MAX_DEVICES: usize = 16;

/// (device, in memory) of the devices asked about.
static DEVICES: Mutex<Vec<(libc::dev_t, bool)>> = Mutex::new(Vec::new());

/// Whether the filesystem of `dir` (whose device is `dev`) keeps its files in
/// memory. An error asking counts as a disk (the file is then kept: safe,
/// merely a little slower).
pub fn frees_in_memory(dir: &OwnedFd, dev: libc::dev_t) -> bool {
    let mut devices = match DEVICES.lock() {
        Ok(devices) => devices,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some(&(_, in_memory)) = devices.iter().find(|(known, _)| *known == dev) {
        return in_memory;
    }
    let in_memory = filesystem_magic(dir).is_some_and(|magic| IN_MEMORY_MAGIC.contains(&magic));
    if devices.len() >= MAX_DEVICES {
        devices.clear();
    }
    devices.push((dev, in_memory));
    in_memory
}

fn filesystem_magic(dir: &OwnedFd) -> Option<libc::c_long> {
    let mut st = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `st` is writable memory of the right size; fstatfs fills it.
    let rc = unsafe { libc::fstatfs(dir.as_raw_fd(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: fstatfs succeeded, so it initialized `st`.
    Some(unsafe { st.assume_init() }.f_type as libc::c_long)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    fn dir_fd(path: &str) -> Option<(OwnedFd, libc::dev_t)> {
        let file = File::open(path).ok()?;
        let st = crate::atomic_file::fstat(file.as_raw_fd()).ok()?;
        Some((OwnedFd::from(file), st.st_dev))
    }

    /// The filesystem type mounted at `mount_point`, from /proc/self/mountinfo.
    fn mounted_type(mount_point: &str) -> Option<String> {
        let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        info.lines().rev().find_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            (before.split(' ').nth(4)? == mount_point)
                .then(|| after.split(' ').next().map(str::to_owned))?
        })
    }

    #[test]
    fn dev_shm_is_in_memory_and_the_answer_is_remembered() {
        let (Some((fd, dev)), Some(kind)) = (dir_fd("/dev/shm"), mounted_type("/dev/shm")) else {
            return; // no /dev/shm mounted here
        };
        let expected = kind == "tmpfs" || kind == "ramfs";
        assert_eq!(frees_in_memory(&fd, dev), expected);
        assert!(DEVICES
            .lock()
            .unwrap()
            .iter()
            .any(|&(d, m)| d == dev && m == expected));
    }

    #[test]
    fn proc_is_not_in_memory_as_meant_here() {
        // procfs holds no files to free: not one of the two.
        let (fd, dev) = dir_fd("/proc").unwrap();
        assert!(!frees_in_memory(&fd, dev));
    }
}
