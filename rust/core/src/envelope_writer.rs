//! Buffered writer for checkpoint envelopes: JSON text with base64 string
//! values, written atomically via [`AtomicFile`].

use std::path::Path;

use crate::atomic_file::{AtomicFile, Options};
use crate::base64_lines::{LineEncoder, LINE_INPUT_BYTES};
use crate::error::Result;
use crate::json_escape::escape_str;

/// Buffered bytes that trigger a write to the file.
const FLUSH_THRESHOLD: usize = 1 << 20;
/// Input bytes encoded per step of `write_b64` (~3 MiB, whole lines), which
/// bounds the buffer at about 5 MiB regardless of the value's size.
const B64_STEP: usize = (3 << 20) / LINE_INPUT_BYTES * LINE_INPUT_BYTES;

/// Streams a JSON envelope to a temp file and atomically replaces the target
/// on [`commit`](EnvelopeWriter::commit). Dropping it without committing
/// leaves the target untouched.
#[derive(Debug)]
pub struct EnvelopeWriter {
    file: AtomicFile,
    buf: Vec<u8>,
    encoder: LineEncoder,
    written: u64,
}

impl EnvelopeWriter {
    /// Starts writing a replacement for `target`; see [`AtomicFile::create`].
    pub fn create(target: &Path, fsync: bool) -> Result<Self> {
        Self::create_with(
            target,
            Options {
                fsync,
                unnamed_temp: true,
            },
        )
    }

    /// Starts writing a replacement for `target`; see [`AtomicFile::create_with`].
    pub fn create_with(target: &Path, options: Options) -> Result<Self> {
        Ok(EnvelopeWriter {
            file: AtomicFile::create_with(target, options)?,
            buf: Vec::with_capacity(FLUSH_THRESHOLD + B64_STEP / 3 * 4 + 4096),
            encoder: LineEncoder::new(b"\\n"),
            written: 0,
        })
    }

    fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.file.write_all(&self.buf)?;
            self.written += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
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
            self.file.write_all(bytes)?;
            self.written += bytes.len() as u64;
            return Ok(());
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

    /// Appends `data` to the open base64 value, wrapped like
    /// `base64.encodebytes` with JSON-escaped (`\n`) separators.
    pub fn write_b64(&mut self, data: &[u8]) -> Result<()> {
        for chunk in data.chunks(B64_STEP) {
            self.encoder.push(chunk, &mut self.buf);
            self.maybe_flush()?;
        }
        Ok(())
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
    pub fn commit(mut self) -> Result<()> {
        self.flush()?;
        self.file.commit()
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
