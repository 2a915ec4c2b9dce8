//! A thread that writes an [`AtomicFile`]'s buffers while the caller encodes
//! the next ones.
//!
//! Copying a large save's text into the page cache (the `write` calls) takes
//! three times as long as encoding it here, and both keep one core busy: done
//! one after the other, the save costs their sum; through the pipe, about the
//! larger of the two. The caller hands a buffer over only when the writer is
//! done with the last, so a save needs three buffers, whatever its size.

use std::io;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Mutex;
use std::thread::JoinHandle;

use crate::atomic_file::AtomicFile;
use crate::error::{Error, Result};
use crate::fault;

/// Filled buffers waiting for the writer, beyond the one it is writing: none,
/// the caller hands its buffer over when the writer is ready for it.
const QUEUED: usize = 0;

enum Msg {
    /// The file, first; then the caller's fault plan, so injected faults
    /// count the writer's operations in the order the save makes them.
    Start(Box<AtomicFile>, fault::Handoff),
    /// Bytes to write, after reserving the file's blocks up to `reserve` (if
    /// more than is reserved): riding with the bytes, a reservation never
    /// makes the caller wait for the writer.
    Write { buf: Vec<u8>, reserve: u64 },
}

struct Finished {
    file: Box<AtomicFile>,
    result: Result<()>,
    faults: fault::Handoff,
}

/// The writing end of a save: hand it filled buffers, get back empty ones.
pub(crate) struct WritePipe {
    tx: Option<SyncSender<Msg>>,
    /// In a mutex only so the pipe is `Sync`, as a Python object's fields
    /// must be; one thread uses it at a time.
    spares: Mutex<Receiver<Vec<u8>>>,
    handle: Option<JoinHandle<Option<Finished>>>,
    /// The path the save's errors name.
    shown: PathBuf,
    /// The largest reservation asked for since the last write.
    reserve: u64,
}

impl WritePipe {
    /// Starts the writer thread with `file`; gives the file back if no thread
    /// can be started (the caller then writes it itself).
    pub(crate) fn start(file: Box<AtomicFile>) -> std::result::Result<WritePipe, Box<AtomicFile>> {
        let (tx, rx) = mpsc::sync_channel::<Msg>(QUEUED);
        let (spare_tx, spares) = mpsc::channel::<Vec<u8>>();
        // The file goes over the channel once the thread runs: a closure that
        // held it would drop it (and the save's temp) if the spawn failed.
        let spawned = std::thread::Builder::new()
            .name("jobpersist-write".into())
            .spawn(move || writer(rx, spare_tx));
        let Ok(handle) = spawned else {
            return Err(file);
        };
        let pipe = WritePipe {
            tx: Some(tx),
            spares: Mutex::new(spares),
            handle: Some(handle),
            shown: file.shown().to_path_buf(),
            reserve: 0,
        };
        pipe.send(Msg::Start(file, fault::hand_off()));
        Ok(pipe)
    }

    fn send(&self, msg: Msg) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.send(msg).is_ok())
    }

    /// Queues `buf`'s bytes for writing and leaves an empty buffer (of at
    /// least the same capacity) in its place. `false` once the writer has
    /// stopped on an error, which [`finish`](Self::finish) returns.
    pub(crate) fn write(&mut self, buf: &mut Vec<u8>) -> bool {
        let returned = match self.spares.get_mut() {
            Ok(spares) => spares.try_recv().ok(),
            Err(_) => None,
        };
        let spare = returned.unwrap_or_else(|| Vec::with_capacity(buf.capacity()));
        let full = std::mem::replace(buf, spare);
        let reserve = std::mem::take(&mut self.reserve);
        self.send(Msg::Write { buf: full, reserve })
    }

    /// Asks for a block reservation ([`AtomicFile::reserve`]) before the
    /// next write.
    pub(crate) fn reserve(&mut self, end: u64) {
        self.reserve = self.reserve.max(end);
    }

    /// Waits for the queued writes: the file back, or the first write error
    /// (the file, and with it the temp, is then gone).
    pub(crate) fn finish(mut self) -> Result<AtomicFile> {
        let shown = self.shown.clone();
        match self.join() {
            Some((file, Ok(()))) => Ok(*file),
            Some((_, Err(e))) => Err(e),
            // Only a panic ends the thread without its file (none is known):
            // it dropped the file, temp included, on its way out.
            None => Err(Error::io(
                "write",
                shown,
                io::Error::from(io::ErrorKind::Other),
            )),
        }
    }

    fn join(&mut self) -> Option<(Box<AtomicFile>, Result<()>)> {
        self.tx = None;
        let finished = self.handle.take()?.join().ok().flatten()?;
        fault::take_over(finished.faults);
        Some((finished.file, finished.result))
    }
}

impl std::fmt::Debug for WritePipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WritePipe")
            .field("shown", &self.shown)
            .finish_non_exhaustive()
    }
}

impl Drop for WritePipe {
    /// An abandoned save: the writer finishes its current write, then the
    /// file is dropped, which removes the temp before this returns.
    fn drop(&mut self) {
        drop(self.join());
    }
}

fn writer(rx: Receiver<Msg>, spares: mpsc::Sender<Vec<u8>>) -> Option<Finished> {
    let Ok(Msg::Start(mut file, faults)) = rx.recv() else {
        return None;
    };
    fault::take_over(faults);
    let mut result = Ok(());
    for msg in rx.iter() {
        match msg {
            Msg::Write { mut buf, reserve } => {
                file.reserve(reserve);
                if let Err(e) = file.write_all(&buf) {
                    result = Err(e);
                    break;
                }
                buf.clear();
                // The caller may be gone (an abandoned save): nothing to do.
                let _ = spares.send(buf);
            }
            Msg::Start(..) => {}
        }
    }
    Some(Finished {
        file,
        result,
        faults: fault::hand_off(),
    })
}
