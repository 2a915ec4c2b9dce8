//! JSON string escaping identical to Python's `json.dumps(s)` with the
//! default `ensure_ascii=True`.

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Escape class per ASCII byte: 0 = copy, b'u' = `\u00XX`, else the letter
/// of the short escape. Bytes >= 0x80 only occur inside multi-byte UTF-8
/// sequences and are handled separately.
const ASCII_ESCAPE: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[b'\n' as usize] = b'n';
    t[b'\r' as usize] = b'r';
    t[b'\t' as usize] = b't';
    t[0x08] = b'b';
    t[0x0c] = b'f';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t[0x7f] = b'u';
    t
};

#[inline]
fn needs_escape(b: u8) -> bool {
    b >= 0x80 || ASCII_ESCAPE[b as usize] != 0
}

#[inline]
fn push_u16(unit: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(&[
        b'\\',
        b'u',
        HEX[((unit >> 12) & 0xf) as usize],
        HEX[((unit >> 8) & 0xf) as usize],
        HEX[((unit >> 4) & 0xf) as usize],
        HEX[(unit & 0xf) as usize],
    ]);
}

/// Writes the escape for one code point that is not plain printable ASCII.
#[inline]
fn push_escaped(cp: u32, out: &mut Vec<u8>) {
    if cp < 0x80 {
        match ASCII_ESCAPE[cp as usize] {
            0 => out.push(cp as u8),
            b'u' => push_u16(cp, out),
            c => out.extend_from_slice(&[b'\\', c]),
        }
    } else if cp <= 0xffff {
        push_u16(cp, out);
    } else if cp <= 0x10ffff {
        let v = cp - 0x10000;
        push_u16(0xd800 | (v >> 10), out);
        push_u16(0xdc00 | (v & 0x3ff), out);
    } else {
        // Not a code point Python can hold; keep the output valid JSON.
        push_u16(0xfffd, out);
    }
}

/// Appends `s` as a quoted JSON string, escaped exactly like
/// `json.dumps(s)`.
pub fn escape_str(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if !needs_escape(bytes[i]) {
            i += 1;
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        // `i` is at a char boundary: every earlier byte was ASCII or part of
        // a whole char consumed below.
        let ch = s[i..].chars().next().unwrap_or('\u{fffd}');
        push_escaped(u32::from(ch), out);
        i += ch.len_utf8();
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Appends a quoted JSON string for a sequence of code points, escaped like
/// `json.dumps`. Unlike [`escape_str`] this accepts lone surrogates
/// (`0xD800..=0xDFFF`, written as `\udXXX`), which Python strings may hold.
/// Values above `0x10FFFF` are written as `\ufffd`.
pub fn escape_code_points<I: IntoIterator<Item = u32>>(cps: I, out: &mut Vec<u8>) {
    let iter = cps.into_iter();
    out.reserve(iter.size_hint().0 + 2);
    out.push(b'"');
    for cp in iter {
        push_escaped(cp, out);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &str) -> String {
        let mut out = Vec::new();
        escape_str(s, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn esc_cps(cps: &[u32]) -> String {
        let mut out = Vec::new();
        escape_code_points(cps.iter().copied(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn known_vectors() {
        // Expected values produced by Python's json.dumps.
        assert_eq!(esc(""), r#""""#);
        assert_eq!(esc("abc"), r#""abc""#);
        assert_eq!(esc("a\"b\\c\n"), r#""a\"b\\c\n""#);
        assert_eq!(esc("\u{7f}"), r#""\u007f""#);
        assert_eq!(esc("é"), r#""\u00e9""#);
        assert_eq!(esc("😀"), r#""\ud83d\ude00""#);
        assert_eq!(
            esc("\u{0}\u{1}\u{8}\u{9}\u{a}\u{b}\u{c}\u{d}\u{1f} /"),
            r#""\u0000\u0001\b\t\n\u000b\f\r\u001f /""#
        );
        assert_eq!(esc("x\u{ffff}y\u{10ffff}"), r#""x\uffffy\udbff\udfff""#);
        assert_eq!(esc("key é ok"), r#""key \u00e9 ok""#);
        assert_eq!(esc_cps(&[0xd800]), r#""\ud800""#);
        assert_eq!(
            esc_cps(&[0x61, 0xdfff, 0x1f600]),
            r#""a\udfff\ud83d\ude00""#
        );
        assert_eq!(esc_cps(&[0x110000]), r#""\ufffd""#);
    }

    /// Minimal JSON string parser returning UTF-16-joined code points.
    fn unescape(s: &[u8]) -> Vec<u32> {
        assert_eq!(s.first(), Some(&b'"'));
        assert_eq!(s.last(), Some(&b'"'));
        let body = &s[1..s.len() - 1];
        let mut units = Vec::new();
        let mut i = 0;
        while i < body.len() {
            let b = body[i];
            assert!((0x20..0x7f).contains(&b), "unescaped byte {b:#x}");
            assert!(b != b'"');
            if b != b'\\' {
                units.push(u32::from(b));
                i += 1;
                continue;
            }
            let e = body[i + 1];
            i += 2;
            units.push(match e {
                b'"' => 0x22,
                b'\\' => 0x5c,
                b'/' => 0x2f,
                b'b' => 8,
                b'f' => 12,
                b'n' => 10,
                b'r' => 13,
                b't' => 9,
                b'u' => {
                    let h = std::str::from_utf8(&body[i..i + 4]).unwrap();
                    assert_eq!(h, h.to_lowercase());
                    i += 4;
                    u32::from_str_radix(h, 16).unwrap()
                }
                _ => panic!("bad escape"),
            });
        }
        let mut cps = Vec::new();
        let mut j = 0;
        while j < units.len() {
            let u = units[j];
            if (0xd800..0xdc00).contains(&u)
                && j + 1 < units.len()
                && (0xdc00..0xe000).contains(&units[j + 1])
            {
                cps.push(0x10000 + ((u - 0xd800) << 10) + (units[j + 1] - 0xdc00));
                j += 2;
            } else {
                cps.push(u);
                j += 1;
            }
        }
        cps
    }

    proptest::proptest! {
        #[test]
        fn str_and_code_points_agree(s in "\\PC*|[\\x00-\\x7f]*|.*") {
            let mut a = Vec::new();
            escape_str(&s, &mut a);
            let mut b = Vec::new();
            escape_code_points(s.chars().map(u32::from), &mut b);
            proptest::prop_assert_eq!(&a, &b);
            let back: Vec<u32> = s.chars().map(u32::from).collect();
            proptest::prop_assert_eq!(unescape(&a), back);
        }

        #[test]
        fn lone_surrogates_round_trip(
            cps in proptest::collection::vec(
                proptest::prop_oneof![0u32..0x80, 0xd800u32..0xe000, 0u32..0x110000], 0..40)
        ) {
            let mut out = Vec::new();
            escape_code_points(cps.iter().copied(), &mut out);
            // A high surrogate directly followed by a low one is
            // indistinguishable from the pair; json.loads joins them too.
            let mut expect = Vec::new();
            let mut j = 0;
            while j < cps.len() {
                let (u, next) = (cps[j], cps.get(j + 1).copied());
                match next {
                    Some(l) if (0xd800..0xdc00).contains(&u) && (0xdc00..0xe000).contains(&l) => {
                        expect.push(0x10000 + ((u - 0xd800) << 10) + (l - 0xdc00));
                        j += 2;
                    }
                    _ => {
                        expect.push(u);
                        j += 1;
                    }
                }
            }
            proptest::prop_assert_eq!(unescape(&out), expect);
        }
    }
}
