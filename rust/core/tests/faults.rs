//! Injected I/O faults, SQLite-style: for every errno of the matrix, the
//! save is run again and again with its Nth I/O operation failing, N = 1, 2,
//! ... until a run completes without reaching N. After each run the target
//! holds the old content or the new one (nothing else), the error names the
//! target with the injected errno, and no temp file is left.
//!
//! The plan is per thread, so these tests run in parallel with the others.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use jobpersist_core::fault::{self, Op, Plan};
use jobpersist_core::{AtomicFile, EnvelopeWriter, Error, Options};

const ERRNOS: [(i32, &str); 5] = [
    (libc::EIO, "EIO"),
    (libc::ENOSPC, "ENOSPC"),
    (libc::EDQUOT, "EDQUOT"),
    (libc::EROFS, "EROFS"),
    (libc::EACCES, "EACCES"),
];

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "jobpersist-faults-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&p);
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

const OLD: &[u8] = b"old checkpoint";

fn new_content() -> Vec<u8> {
    (0..300_000u32).map(|i| (i % 251) as u8).collect()
}

/// One save of `new_content()` in three writes.
fn save(target: &Path, options: Options) -> jobpersist_core::Result<()> {
    let content = new_content();
    let mut f = AtomicFile::create_with(target, options)?;
    // As the envelope writer does before a large value; more than it needs, so
    // the commit trims.
    f.reserve(content.len() as u64 + 4096);
    for piece in content.chunks(100_000) {
        f.write_all(piece)?;
    }
    f.commit()
}

/// A 12 MiB value through the envelope writer: its writes move to the write
/// pipe's thread, which must see (and fail) them under the caller's plan.
fn big_value() -> Vec<u8> {
    (0..12_000_000u32).map(|i| (i % 253) as u8).collect()
}

fn save_envelope(target: &Path, options: Options) -> jobpersist_core::Result<()> {
    let mut w = EnvelopeWriter::create_with(target, options)?;
    w.write_raw(b"{\"k\": ")?;
    w.begin_b64_string()?;
    w.write_b64(&big_value())?;
    w.end_b64_string()?;
    w.write_raw(b"}")?;
    w.commit()
}

/// What a save writes when nothing fails.
fn expected(save: Save, tag: &str) -> Vec<u8> {
    let d = TempDir::new(&format!("{tag}-expected"));
    let target = d.0.join("ckpt.json");
    save(&target, options(true, true)).unwrap();
    fs::read(&target).unwrap()
}

type Save = fn(&Path, Options) -> jobpersist_core::Result<()>;

fn options(unnamed_temp: bool, fsync: bool) -> Options {
    Options {
        fsync,
        unnamed_temp,
        scan_stale: true,
        keep_replaced: false,
    }
}

/// Runs the sweep for one errno and one configuration; counts of injected
/// failures per operation.
fn sweep(errno: i32, options: Options, tag: &str) -> BTreeMap<Op, usize> {
    sweep_with(save, &new_content(), errno, options, tag)
}

fn sweep_with(
    save: Save,
    new_content: &[u8],
    errno: i32,
    options: Options,
    tag: &str,
) -> BTreeMap<Op, usize> {
    let d = TempDir::new(tag);
    let target = d.0.join("ckpt.json");
    let stale = d.0.join(".ckpt.json.jptmp.1.0123456789abcdef");
    let mut counts = BTreeMap::new();
    for n in 1.. {
        fs::write(&target, OLD).unwrap();
        fs::write(&stale, b"a dead writer's half file").unwrap();
        fault::arm(Plan {
            fail_at: Some(n),
            errno,
            ..Plan::default()
        });
        let result = save(&target, options);
        let record = fault::disarm();
        let Some(failed) = record.failed else {
            result.unwrap();
            assert_eq!(fs::read(&target).unwrap(), new_content);
            assert_eq!(names(&d.0), ["ckpt.json"]);
            return counts;
        };
        *counts.entry(failed).or_insert(0) += 1;
        let content = fs::read(&target).unwrap();
        let context = format!("{tag}: op #{n} = {failed:?}, ops {:?}", record.ops);
        if failed.is_best_effort() {
            // The cleanup and the reservation are best effort: the save goes on.
            assert!(result.is_ok(), "{context}: {result:?}");
            assert_eq!(content, new_content, "{context}");
        } else {
            match result {
                Err(Error::Io { path, source, .. }) => {
                    assert_eq!(path, target, "{context}");
                    assert_eq!(source.raw_os_error(), Some(errno), "{context}");
                }
                other => panic!("{context}: {other:?}"),
            }
            // Only after the rename can the new content be in place.
            if matches!(failed, Op::FsyncDir | Op::Close) {
                assert_eq!(content, new_content, "{context}");
            } else {
                assert_eq!(content, OLD, "{context}");
            }
            // A failed fsync is never retried, nor is the file named after it.
            if failed == Op::FsyncFile {
                let after = &record.ops[n as usize..];
                assert!(
                    !after
                        .iter()
                        .any(|op| matches!(op, Op::FsyncFile | Op::Link | Op::Rename)),
                    "{context}"
                );
            }
        }
        let mut left = names(&d.0);
        left.retain(|name| name != ".ckpt.json.jptmp.1.0123456789abcdef");
        assert_eq!(left, ["ckpt.json"], "{context}");
        // The dead writer's temp is gone unless the failure hit the scan
        // before its removal, or what comes before the scan.
        if !stale.exists() {
            continue;
        }
        assert!(
            matches!(
                failed,
                Op::Scan | Op::ScanOpen | Op::ScanLock | Op::ScanUnlink | Op::OpenDir | Op::Stat
            ),
            "{context}: stale temp kept"
        );
    }
    unreachable!()
}

fn run_matrix(unnamed_temp: bool, fsync: bool) -> BTreeMap<(Op, &'static str), usize> {
    // Every save creates its own file (a spare would skip its creation and chmod; the
    // Python tests sweep the saves that take one).
    jobpersist_core::spare_files::set_policy(jobpersist_core::spare_files::Policy::Off);
    // The replaced file kept across the rename, so that its opening is swept too.
    let options = Options {
        fsync,
        unnamed_temp,
        scan_stale: true,
        keep_replaced: true,
    };
    let mut matrix = BTreeMap::new();
    for (errno, name) in ERRNOS {
        let tag = format!("{name}-{unnamed_temp}-{fsync}");
        for (op, count) in sweep(errno, options, &tag) {
            matrix.insert((op, name), count);
        }
    }
    let ops: Vec<Op> = {
        let mut v: Vec<Op> = matrix.keys().map(|(op, _)| *op).collect();
        v.dedup();
        v
    };
    // The matrix, for the record (`cargo test -- --nocapture`).
    println!(
        "fault matrix, {} temp, fsync {fsync}:",
        if unnamed_temp { "unnamed" } else { "named" }
    );
    for op in &ops {
        let row: Vec<String> = ERRNOS
            .iter()
            .map(|(_, name)| format!("{name}={}", matrix.get(&(*op, *name)).unwrap_or(&0)))
            .collect();
        println!("  {:<12} {}", op.name(), row.join(" "));
    }
    matrix
}

fn assert_covers(matrix: &BTreeMap<(Op, &'static str), usize>, ops: &[Op]) {
    for op in ops {
        for (_, name) in ERRNOS {
            assert!(
                matrix.get(&(*op, name)).copied().unwrap_or(0) > 0,
                "{op:?} x {name} never injected"
            );
        }
    }
}

#[test]
fn every_operation_of_an_unnamed_temp_save_fails_cleanly() {
    let matrix = run_matrix(true, true);
    assert_covers(&matrix, &Op::ALL);
    // Every write is its own operation: three writes, three failures each.
    assert_eq!(matrix[&(Op::Write, "EIO")], 3);
}

#[test]
fn every_operation_of_a_named_temp_save_fails_cleanly() {
    let matrix = run_matrix(false, true);
    // A named temp is never linked: every other operation is failed in turn.
    let ops: Vec<Op> = Op::ALL.into_iter().filter(|op| *op != Op::Link).collect();
    assert_covers(&matrix, &ops);
    assert!(!matrix.contains_key(&(Op::Link, "EIO")));
}

#[test]
fn without_fsync_only_the_fsyncs_are_missing() {
    for unnamed in [true, false] {
        let matrix = run_matrix(unnamed, false);
        assert!(!matrix
            .keys()
            .any(|(op, _)| matches!(op, Op::FsyncFile | Op::FsyncDir)));
        assert_covers(&matrix, &[Op::Open, Op::Write, Op::Rename, Op::Close]);
        assert_eq!(matrix.contains_key(&(Op::Link, "EIO")), unnamed);
    }
}

#[test]
fn every_write_of_a_piped_save_fails_cleanly() {
    // One errno is enough: the others take the same paths.
    let content = expected(save_envelope, "piped");
    for unnamed in [true, false] {
        let tag = format!("piped-{unnamed}");
        let counts = sweep_with(
            save_envelope,
            &content,
            libc::EIO,
            options(unnamed, true),
            &tag,
        );
        // 16 MiB of text in buffers of at most 2.4 MiB: the writer thread's
        // writes were counted (and failed) under this thread's plan.
        assert!(counts[&Op::Write] >= 7, "{counts:?}");
        assert_eq!(counts[&Op::Reserve], 1, "{counts:?}");
        assert_eq!(counts[&Op::Trim], 1, "{counts:?}");
        assert_eq!(counts[&Op::Rename], 1, "{counts:?}");
    }
}

#[test]
fn interrupted_and_short_writes_are_retried_not_surfaced() {
    for unnamed in [true, false] {
        let d = TempDir::new(&format!("eintr-{unnamed}"));
        let target = d.0.join("ckpt.json");
        fs::write(&target, OLD).unwrap();
        fault::arm(Plan {
            interrupt: true,
            short_writes: true,
            ..Plan::default()
        });
        let result = save(
            &target,
            Options {
                fsync: true,
                unnamed_temp: unnamed,
                scan_stale: true,
                keep_replaced: false,
            },
        );
        let record = fault::disarm();
        result.unwrap();
        assert_eq!(fs::read(&target).unwrap(), new_content());
        assert_eq!(names(&d.0), ["ckpt.json"]);
        // Halving 100,000 bytes down to one byte takes 17 writes per piece.
        assert!(record.short_writes >= 3 * 16, "{record:?}");
        assert!(record.interrupts >= 3 * 16, "{record:?}");
    }
}

#[test]
fn a_plan_fails_only_its_own_thread() {
    let d = TempDir::new("threads");
    let target = d.0.join("ckpt.json");
    fault::arm(Plan {
        fail_at: Some(1),
        errno: libc::EIO,
        ..Plan::default()
    });
    let other = {
        let target = target.clone();
        std::thread::spawn(move || {
            save(
                &target,
                Options {
                    fsync: false,
                    unnamed_temp: true,
                    scan_stale: true,
                    keep_replaced: false,
                },
            )
        })
    };
    other.join().unwrap().unwrap();
    let record = fault::disarm();
    assert!(record.ops.is_empty());
    assert_eq!(fs::read(&target).unwrap(), new_content());
}
