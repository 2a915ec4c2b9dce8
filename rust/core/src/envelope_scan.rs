//! Fast structural scan of a canonical pickled envelope, as the reference
//! and jobpersist write it, without building any JSON value.
//!
//! The scan is deliberately narrow: it accepts only the exact layout
//! `json.dumps` produces, and answers `None` for anything else, so the caller
//! parses such a file in full. Whatever it accepts, `json.loads` reads as a
//! valid `pickled_v4` envelope with the same keys and string values.

/// The envelope text before the first key.
pub const HEAD: &[u8] = br#"{"braketSchemaHeader": {"name": "braket.jobs_data.persisted_job_data", "version": "1"}, "dataDictionary": {"#;
const TAIL: &[u8] = br#"}, "dataFormat": "pickled_v4"}"#;

/// Where one entry's key and value stand in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Raw JSON string content of the key (between its quotes, still escaped).
    pub key: (usize, usize),
    /// Raw JSON string content of the value (between its quotes, still escaped).
    pub value: (usize, usize),
}

/// The end of the JSON string content starting at `start`, or `None` where
/// the string holds an escaped quote or a raw control character, which the
/// full parser handles.
fn string_end(data: &[u8], start: usize) -> Option<usize> {
    let rel = memchr::memchr(b'"', data.get(start..)?)?;
    let end = start + rel;
    // An escaped quote would end the scan early; `\\"` is legal too but rare
    // enough to leave to the full parser.
    if end > start && data[end - 1] == b'\\' {
        return None;
    }
    Some(end)
}

fn key_is_plain(raw: &[u8]) -> bool {
    // Control characters are invalid inside JSON strings: let the parser say so.
    raw.iter().all(|&b| b >= 0x20)
}

/// Scans `data` as a canonical pickled envelope; `None` if it is not one.
pub fn scan_pickled(data: &[u8]) -> Option<Vec<Entry>> {
    let mut pos = HEAD.len();
    if data.get(..pos)? != HEAD {
        return None;
    }
    let mut entries = Vec::new();
    if data.get(pos..pos + TAIL.len())? == TAIL {
        return finish(data, pos + TAIL.len()).then_some(entries);
    }
    loop {
        if *data.get(pos)? != b'"' {
            return None;
        }
        let key_start = pos + 1;
        let key_end = string_end(data, key_start)?;
        if !key_is_plain(&data[key_start..key_end]) {
            return None;
        }
        pos = key_end + 1;
        if data.get(pos..pos + 3)? != b": \"" {
            return None;
        }
        let value_start = pos + 3;
        let value_end = string_end(data, value_start)?;
        entries.push(Entry {
            key: (key_start, key_end),
            value: (value_start, value_end),
        });
        pos = value_end + 1;
        if data.get(pos..pos + 2)? == b", " {
            pos += 2;
            continue;
        }
        if data.get(pos..pos + TAIL.len())? == TAIL {
            return finish(data, pos + TAIL.len()).then_some(entries);
        }
        return None;
    }
}

fn finish(data: &[u8], pos: usize) -> bool {
    // json.loads allows trailing whitespace and nothing else.
    data[pos..]
        .iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(body: &str) -> Vec<u8> {
        let mut v = HEAD.to_vec();
        v.extend_from_slice(body.as_bytes());
        v.extend_from_slice(TAIL);
        v
    }

    #[test]
    fn empty_dictionary() {
        assert_eq!(scan_pickled(&envelope("")), Some(vec![]));
    }

    #[test]
    fn entries_are_located() {
        let data = envelope(r#""a": "QQ==\n", "b\u00e9": "Qg==\n""#);
        let entries = scan_pickled(&data).unwrap();
        assert_eq!(entries.len(), 2);
        let (ks, ke) = entries[1].key;
        assert_eq!(&data[ks..ke], br"b\u00e9");
        let (vs, ve) = entries[0].value;
        assert_eq!(&data[vs..ve], br"QQ==\n");
    }

    #[test]
    fn trailing_whitespace_only() {
        let mut data = envelope(r#""a": "QQ==\n""#);
        data.extend_from_slice(b" \n");
        assert!(scan_pickled(&data).is_some());
        data.push(b'x');
        assert!(scan_pickled(&data).is_none());
    }

    #[test]
    fn odd_layouts_are_left_to_the_parser() {
        for body in [
            r#""a":"QQ==\n""#,
            r#""a": "QQ\"==\n""#,
            r#""a\"": "QQ==\n""#,
            r#""a": 5"#,
            r#""a": "QQ==\n","b": "QQ==\n""#,
            "\"a\u{1}\": \"QQ==\\n\"",
        ] {
            assert!(scan_pickled(&envelope(body)).is_none(), "{body}");
        }
        let plaintext = br#"{"braketSchemaHeader": {"name": "braket.jobs_data.persisted_job_data", "version": "1"}, "dataDictionary": {"a": "QQ==\n"}, "dataFormat": "plaintext"}"#;
        assert!(scan_pickled(plaintext).is_none());
    }

    fn spans_are_sane(data: &[u8], entries: &[Entry]) {
        let mut last = HEAD.len();
        for e in entries {
            assert!(last <= e.key.0 && e.key.0 <= e.key.1 && e.key.1 < e.value.0);
            assert!(e.value.0 <= e.value.1 && e.value.1 < data.len());
            assert_eq!(data[e.value.1], b'"');
            last = e.value.1;
        }
    }

    proptest::proptest! {
        // The loader's fuzz target: arbitrary bytes after a valid head, and arbitrary
        // single-byte damage to a valid envelope, never panic, and spans stay in bounds.
        #[test]
        fn arbitrary_input_never_panics(tail in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let mut data = HEAD.to_vec();
            data.extend_from_slice(&tail);
            if let Some(entries) = scan_pickled(&data) {
                spans_are_sane(&data, &entries);
            }
            let _ = scan_pickled(&tail);
        }

        #[test]
        fn damaged_envelopes_never_panic(pos in 0usize..200, byte in proptest::num::u8::ANY) {
            let mut data = envelope(r#""a": "QQ==\n", "b\u00e9": "Qg==\n""#);
            let at = pos % data.len();
            data[at] = byte;
            if let Some(entries) = scan_pickled(&data) {
                spans_are_sane(&data, &entries);
            }
        }
    }

    #[test]
    fn every_truncation_is_refused_or_consistent() {
        let data = envelope(r#""a": "QQ==\n", "b": "Qg==\n""#);
        for n in 0..data.len() {
            assert!(scan_pickled(&data[..n]).is_none(), "prefix {n}");
        }
    }
}
