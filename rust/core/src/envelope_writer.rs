//! Buffered writer for checkpoint envelopes: JSON text with base64 string
//! values, written atomically via [`AtomicFile`].

use std::path::Path;

use std::os::fd::OwnedFd;

use crate::atomic_file::{AtomicFile, Options};
use crate::base64_lines::{LineEncoder, LINE_INPUT_BYTES};
use crate::error::{Error, Result};
use crate::json_escape::escape_str;
use crate::write_pipe::WritePipe;

/// Buffered bytes that trigger a write to the file.
pub const FLUSH_THRESHOLD: usize = 1 << 20;
/// Base64 input from which `write_b64` reserves the file's blocks first.
pub const RESERVE_AT: usize = 1 << 20;
/// Blocks reserved past a large value's text, for the JSON and pickle
/// framing that follows it (given back at the commit).
pub const RESERVE_SLACK: u64 = 1 << 20;
/// Text from which the writes move to their own thread ([`WritePipe`]): a
/// save this large spends long enough in `write` to pay for the thread.
const PIPE_AT: u64 = 8 << 20;
/// JSON text of one full base64 line: 76 characters and an escaped `\n`.
const LINE_TEXT_BYTES: u64 = 78;

/// Input bytes encoded per step of `write_b64`: whole lines, just over 1 MiB
/// (so a 1 MiB array is one step), which bounds the buffer at about 2.4 MiB
/// regardless of the value's size (and a piped save's memory at three such
/// buffers). These stay in the CPU cache between the encoder and `write`:
/// with 5 MiB buffers the native 256 MiB save took about twice as long here
/// (medians 0.50 s and 0.21 s, both without the pipe).
pub const B64_STEP: usize = 18 * 1024 * LINE_INPUT_BYTES;

/// Streams a JSON envelope to a temp file and atomically replaces the target
/// on [`commit`](EnvelopeWriter::commit). Dropping it without committing
/// leaves the target untouched.
#[derive(Debug)]
pub struct EnvelopeWriter {
    sink: Sink,
    buf: Vec<u8>,
    encoder: LineEncoder,
    written: u64,
    /// [`AtomicFile::in_memory`] of the file (which may move to a pipe's thread).
    in_memory: bool,
}

/// Where the buffer's bytes go.
#[derive(Debug)]
enum Sink {
    /// Written by the calling thread.
    File(AtomicFile),
    /// Written by a thread of their own while the caller encodes on.
    Pipe(WritePipe),
    /// A write failed (the temp is gone): every later call fails too, so no
    /// content with a hole in it can ever be committed.
    Failed(Error),
    /// Only while the sink changes hands.
    Moving,
}

impl EnvelopeWriter {
    /// Starts writing a replacement for `target`; see [`AtomicFile::create`].
    pub fn create(target: &Path, fsync: bool) -> Result<Self> {
        Self::create_with(target, Options::new(fsync))
    }

    /// Starts writing a replacement for `target`; see [`AtomicFile::create_with`].
    pub fn create_with(target: &Path, options: Options) -> Result<Self> {
        let file = AtomicFile::create_with(target, options)?;
        Ok(EnvelopeWriter {
            in_memory: file.in_memory(),
            sink: Sink::File(file),
            buf: Vec::with_capacity(FLUSH_THRESHOLD + B64_STEP / 3 * 4 + 4096),
            encoder: LineEncoder::new(b"\\n"),
            written: 0,
        })
    }

    /// Whether the target's filesystem keeps its files in memory; see
    /// [`AtomicFile::in_memory`].
    pub fn in_memory(&self) -> bool {
        self.in_memory
    }

    fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let len = self.buf.len() as u64;
        match &mut self.sink {
            Sink::File(file) => {
                if let Err(e) = file.write_all(&self.buf) {
                    return Err(self.fail(e));
                }
                self.buf.clear();
            }
            Sink::Pipe(pipe) => {
                if !pipe.write(&mut self.buf) {
                    return Err(self.stop_pipe());
                }
            }
            Sink::Failed(e) => return Err(e.repeat()),
            Sink::Moving => return Err(Error::moving()),
        }
        self.written += len;
        Ok(())
    }

    /// Records a write error: the temp is removed now, later calls fail.
    fn fail(&mut self, e: Error) -> Error {
        self.sink = Sink::Failed(e.repeat());
        e
    }

    /// The writer thread stopped on an error: collects it.
    fn stop_pipe(&mut self) -> Error {
        let e = match std::mem::replace(&mut self.sink, Sink::Moving) {
            Sink::Pipe(pipe) => match pipe.finish() {
                Err(e) => e,
                // It stopped without an error only if it could not start.
                Ok(file) => {
                    drop(file);
                    Error::moving()
                }
            },
            Sink::Failed(e) => e,
            _ => Error::moving(),
        };
        self.fail(e)
    }

    fn maybe_flush(&mut self) -> Result<()> {
        if self.buf.len() >= FLUSH_THRESHOLD {
            self.flush()?;
        }
        Ok(())
    }

    /// Appends already-escaped JSON text. Large spans bypass the buffer.
    pub fn write_raw(&mut self, bytes: &[u8]) -> Result<()> {
        if bytes.len() >= FLUSH_THRESHOLD {
            self.flush()?;
            if let Sink::File(file) = &mut self.sink {
                if let Err(e) = file.write_all(bytes) {
                    return Err(self.fail(e));
                }
                self.written += bytes.len() as u64;
                return Ok(());
            }
            self.buf.extend_from_slice(bytes);
            return self.flush();
        }
        self.buf.extend_from_slice(bytes);
        self.maybe_flush()
    }

    /// Appends `key` as an escaped JSON string followed by `": "`.
    pub fn write_key(&mut self, key: &str) -> Result<()> {
        escape_str(key, &mut self.buf);
        self.buf.extend_from_slice(b": ");
        self.maybe_flush()
    }

    /// Opens a base64 string value (writes the opening quote).
    pub fn begin_b64_string(&mut self) -> Result<()> {
        self.buf.push(b'"');
        self.maybe_flush()
    }

    /// Announces `input_len` bytes of base64 input about to be written (in
    /// one call of [`write_b64`](Self::write_b64) or several): from
    /// [`RESERVE_AT`] on, the file's blocks for their text are reserved.
    pub fn reserve_b64(&mut self, input_len: usize) {
        if input_len < RESERVE_AT {
            return;
        }
        // At most one partial line is pending in the encoder: count it whole.
        let lines = (input_len / LINE_INPUT_BYTES) as u64 + 2;
        let text = lines * LINE_TEXT_BYTES;
        let end = self.bytes_written() + text + RESERVE_SLACK;
        if let Sink::File(file) = &mut self.sink {
            file.reserve(end);
            if end - RESERVE_SLACK >= PIPE_AT {
                self.start_pipe();
            }
        } else if let Sink::Pipe(pipe) = &mut self.sink {
            pipe.reserve(end);
        }
    }

    fn start_pipe(&mut self) {
        if let Sink::File(file) = std::mem::replace(&mut self.sink, Sink::Moving) {
            self.sink = match WritePipe::start(Box::new(file)) {
                Ok(pipe) => Sink::Pipe(pipe),
                Err(file) => Sink::File(*file),
            };
        }
    }

    /// Appends `data` to the open base64 value, wrapped like
    /// `base64.encodebytes` with JSON-escaped (`\n`) separators.
    pub fn write_b64(&mut self, data: &[u8]) -> Result<()> {
        self.reserve_b64(data.len());
        for chunk in data.chunks(B64_STEP) {
            self.encoder.push(chunk, &mut self.buf);
            self.maybe_flush()?;
        }
        Ok(())
    }

    /// Encodes `data` (at most [`B64_STEP`] bytes) into the buffer without
    /// writing anything, for a caller that must not wait for a write while it
    /// holds `data` (Python's buffers are read with the GIL held). It then
    /// writes with [`flush_full`](Self::flush_full) once it has let go.
    pub fn encode_b64(&mut self, data: &[u8]) {
        debug_assert!(data.len() <= B64_STEP);
        self.encoder.push(data, &mut self.buf);
    }

    /// Whether the buffer is due to be written ([`flush_full`](Self::flush_full)).
    pub fn is_full(&self) -> bool {
        self.buf.len() >= FLUSH_THRESHOLD
    }

    /// Writes the buffer out if it is full: after [`encode_b64`](Self::encode_b64),
    /// which keeps the buffer within one step of the threshold if called once
    /// per step.
    pub fn flush_full(&mut self) -> Result<()> {
        self.maybe_flush()
    }

    /// Closes the base64 value: writes the padded tail, the final separator
    /// and the closing quote.
    pub fn end_b64_string(&mut self) -> Result<()> {
        self.encoder.finish(&mut self.buf);
        self.buf.push(b'"');
        self.maybe_flush()
    }

    /// Bytes produced so far (written to the file or still buffered).
    pub fn bytes_written(&self) -> u64 {
        self.written + self.buf.len() as u64
    }

    /// Writes out the buffer and atomically replaces the target.
    pub fn commit(self) -> Result<()> {
        self.commit_keeping().map(drop)
    }

    /// [`commit`](EnvelopeWriter::commit), handing back the replaced file
    /// (see [`AtomicFile::commit_keeping`]).
    pub fn commit_keeping(mut self) -> Result<Option<OwnedFd>> {
        self.flush()?;
        match std::mem::replace(&mut self.sink, Sink::Moving) {
            Sink::File(file) => file.commit_keeping(),
            Sink::Pipe(pipe) => pipe.finish()?.commit_keeping(),
            Sink::Failed(e) => Err(e),
            Sink::Moving => Err(Error::moving()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::PathBuf;

    fn tmp_target(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("jobpersist-core-env-{tag}-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir.join("ckpt.json")
    }

    #[test]
    fn writes_braket_envelope() {
        let target = tmp_target("small");
        let mut w = EnvelopeWriter::create(&target, false).unwrap();
        w.write_raw(br#"{"braketSchemaHeader": {"name": "braket.jobs_data.persisted_job_data", "version": "1"}, "dataDictionary": {"#).unwrap();
        w.write_key("key").unwrap();
        w.begin_b64_string().unwrap();
        let pickled = b"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01K\x02K\x03e.";
        w.write_b64(&pickled[..5]).unwrap();
        w.write_b64(&pickled[5..]).unwrap();
        w.end_b64_string().unwrap();
        w.write_raw(br#"}, "dataFormat": "pickled_v4"}"#).unwrap();
        let n = w.bytes_written();
        w.commit().unwrap();
        let got = fs::read(&target).unwrap();
        assert_eq!(
            String::from_utf8(got.clone()).unwrap(),
            r#"{"braketSchemaHeader": {"name": "braket.jobs_data.persisted_job_data", "version": "1"}, "dataDictionary": {"key": "gASVCwAAAAAAAABdlChLAUsCSwNlLg==\n"}, "dataFormat": "pickled_v4"}"#
        );
        assert_eq!(n, got.len() as u64);
        let _ = fs::remove_dir_all(target.parent().unwrap());
    }

    /// One value of `data`, written in `pieces` calls of `write_b64`.
    fn save_value(target: &Path, data: &[u8], piece: usize) -> EnvelopeWriter {
        let mut w = EnvelopeWriter::create(target, false).unwrap();
        w.write_raw(b"{\"k\": ").unwrap();
        w.begin_b64_string().unwrap();
        for chunk in data.chunks(piece) {
            w.write_b64(chunk).unwrap();
        }
        w.end_b64_string().unwrap();
        w.write_raw(b"}").unwrap();
        w
    }

    fn big_data() -> Vec<u8> {
        (0..20_000_003u32).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn a_piped_save_writes_what_a_direct_one_does() {
        let data = big_data();
        let piped_target = tmp_target("piped");
        let w = save_value(&piped_target, &data, data.len());
        assert!(matches!(w.sink, Sink::Pipe(_)), "{:?}", w.sink);
        w.commit().unwrap();
        // Pieces below RESERVE_AT neither reserve nor start the pipe.
        let direct_target = tmp_target("direct");
        let w = save_value(&direct_target, &data, RESERVE_AT - 1);
        assert!(matches!(w.sink, Sink::File(_)), "{:?}", w.sink);
        w.commit().unwrap();
        let piped = fs::read(&piped_target).unwrap();
        assert_eq!(piped, fs::read(&direct_target).unwrap());
        assert_eq!(crate::decode(&piped[7..piped.len() - 2]).unwrap(), data);
        // The blocks reserved past the content were given back.
        use std::os::unix::fs::MetadataExt;
        let meta = fs::metadata(&piped_target).unwrap();
        assert!(meta.blocks() * 512 < meta.len() + (256 << 10), "{meta:?}");
        for target in [piped_target, direct_target] {
            let _ = fs::remove_dir_all(target.parent().unwrap());
        }
    }

    #[test]
    fn an_abandoned_piped_save_leaves_the_old_file_and_no_temp() {
        let target = tmp_target("abandoned");
        fs::write(&target, b"old").unwrap();
        let w = save_value(&target, &big_data(), 3 << 20);
        assert!(matches!(w.sink, Sink::Pipe(_)));
        drop(w);
        // Dropping waits for the writer thread, so the temp is gone already.
        let names: Vec<_> = fs::read_dir(target.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("ckpt.json")]);
        assert_eq!(fs::read(&target).unwrap(), b"old");
        let _ = fs::remove_dir_all(target.parent().unwrap());
    }

    #[test]
    fn after_a_failed_piped_write_every_call_fails() {
        use crate::fault::{self, Op, Plan};
        let target = tmp_target("poisoned");
        fs::write(&target, b"old").unwrap();
        let data = big_data();
        // A plan reaches the writer thread when the pipe starts: armed before
        // the save, it fails the third write after the first 8 MiB (pieces
        // below RESERVE_AT later: no reservation counts as an operation).
        let start = |plan: Plan| {
            fault::arm(plan);
            let mut w = EnvelopeWriter::create(&target, false).unwrap();
            w.begin_b64_string().unwrap();
            w.write_b64(&data[..8 << 20]).unwrap();
            assert!(matches!(w.sink, Sink::Pipe(_)));
            w
        };
        // Dropping the writer joins its thread, which hands the record back.
        drop(start(Plan::default()));
        let before = fault::disarm().ops.len();
        let mut w = start(Plan {
            fail_at: Some(before as u64 + 3),
            errno: libc::ENOSPC,
            ..Plan::default()
        });
        let mut errors = 0;
        for chunk in data[8 << 20..].chunks(RESERVE_AT - 1) {
            if let Err(e) = w.write_b64(chunk) {
                errors += 1;
                let Error::Io { path, source, .. } = e else {
                    panic!("{e:?}")
                };
                assert_eq!(path, target);
                assert_eq!(source.raw_os_error(), Some(libc::ENOSPC));
            }
        }
        // Once failed, no later piece is written (a file with a hole in it).
        assert!(errors >= 6, "{errors}");
        let _ = w.end_b64_string();
        assert!(w.commit().is_err());
        let record = fault::disarm();
        assert_eq!(record.failed, Some(Op::Write), "{record:?}");
        assert_eq!(fs::read(&target).unwrap(), b"old");
        let names: Vec<_> = fs::read_dir(target.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("ckpt.json")]);
        let _ = fs::remove_dir_all(target.parent().unwrap());
    }

    #[test]
    fn large_value_round_trips() {
        let target = tmp_target("large");
        let data: Vec<u8> = (0..7_000_001u32).map(|i| (i % 251) as u8).collect();
        let big_raw = vec![b' '; FLUSH_THRESHOLD + 5];
        let mut w = EnvelopeWriter::create(&target, true).unwrap();
        w.write_raw(b"{").unwrap();
        w.write_raw(&big_raw).unwrap();
        w.write_key("k\u{e9}").unwrap();
        w.begin_b64_string().unwrap();
        w.write_b64(&data).unwrap();
        assert!(w.buf.len() < FLUSH_THRESHOLD + B64_STEP / 3 * 4 + 4096);
        w.end_b64_string().unwrap();
        w.write_raw(b"}").unwrap();
        w.commit().unwrap();
        let got = fs::read(&target).unwrap();
        let head = format!("{{{}\"k\\u00e9\": \"", " ".repeat(big_raw.len()));
        assert!(got.starts_with(head.as_bytes()));
        let body = &got[head.len()..got.len() - 2];
        assert_eq!(crate::decode(body).unwrap(), data);
        assert_eq!(body.len(), LineEncoder::encoded_len(data.len(), 2));
        let _ = fs::remove_dir_all(target.parent().unwrap());
    }
}
