//! Cross-checks against a real CPython; ignored by default because CI may
//! lack `python3`. Run with
//! `cargo test -p jobpersist-core --test python_parity -- --ignored`.

use std::process::Command;

use jobpersist_core::{decode, escape_code_points, escape_str, LineEncoder};

fn python(script: &str) -> Vec<u8> {
    let out = Command::new("python3")
        .args(["-c", script])
        .output()
        .expect("python3 not available");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 131 + 7) as u8).collect()
}

#[test]
#[ignore = "needs python3"]
fn encodebytes_matches_cpython() {
    let expected = python(
        "import base64, sys\n\
         for n in range(0, 300):\n\
         \x20   d = bytes((i * 131 + 7) % 256 for i in range(n))\n\
         \x20   sys.stdout.buffer.write(base64.encodebytes(d) + b'|')\n",
    );
    let mut got = Vec::new();
    for n in 0..300 {
        let d = data(n);
        let mut enc = LineEncoder::new(b"\n");
        // Uneven pushes exercise the carry and column state.
        for c in d.chunks(n % 7 + 1) {
            enc.push(c, &mut got);
        }
        enc.finish(&mut got);
        got.push(b'|');
    }
    assert_eq!(got, expected);
}

#[test]
#[ignore = "needs python3"]
fn json_dumps_matches_cpython() {
    let samples = [
        "",
        "plain",
        "a\"b\\c\n",
        "\u{7f}",
        "é😀",
        "\u{0}\u{1f}\u{8}\u{c}",
        "\u{2028}x\u{ffff}",
    ];
    let expected = python(
        "import json, sys\n\
         for s in ['', 'plain', 'a\"b\\\\c\\n', '\\x7f', '\\u00e9\\U0001f600', '\\x00\\x1f\\x08\\x0c', '\\u2028x\\uffff']:\n\
         \x20   sys.stdout.write(json.dumps(s) + '|')\n\
         sys.stdout.write(json.dumps('a\\ud800\\udfffb') + '|')\n",
    );
    let mut got = Vec::new();
    for s in samples {
        escape_str(s, &mut got);
        got.push(b'|');
    }
    escape_code_points([0x61, 0xd800, 0xdfff, 0x62], &mut got);
    got.push(b'|');
    assert_eq!(
        String::from_utf8(got).unwrap(),
        String::from_utf8(expected).unwrap()
    );
}

#[test]
#[ignore = "needs python3"]
fn decodes_cpython_checkpoint_values() {
    let out = python(
        "import base64, json, pickle, sys\n\
         v = {'a': list(range(1000)), 'b': 'x' * 5000}\n\
         sys.stdout.write(json.dumps(base64.encodebytes(pickle.dumps(v, protocol=4)).decode()))\n\
         sys.stdout.write('|' + pickle.dumps(v, protocol=4).hex())\n",
    );
    let text = String::from_utf8(out).unwrap();
    let (quoted, hex) = text.split_once('|').unwrap();
    let raw = &quoted.as_bytes()[1..quoted.len() - 1];
    let want: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    assert_eq!(decode(raw).unwrap(), want);
}

#[test]
#[ignore = "needs python3"]
fn pickle_opcode_arguments_match_pickletools() {
    use jobpersist_core::{arg_of, known_opcodes, Arg};
    // One line per opcode CPython knows: its byte, then its argument as pickle_frame's
    // Python twin classifies pickletools' descriptor.
    let expected = python(
        "import pickletools as p\n\
         w = {p.TAKEN_FROM_ARGUMENT1: 1, p.TAKEN_FROM_ARGUMENT4: 4,\n\
         \x20    p.TAKEN_FROM_ARGUMENT4U: 4, p.TAKEN_FROM_ARGUMENT8U: 8}\n\
         for o in sorted(p.opcodes, key=lambda o: ord(o.code)):\n\
         \x20   a = o.arg\n\
         \x20   if a is None: k = 'nothing'\n\
         \x20   elif a.n >= 0: k = f'fixed {a.n}'\n\
         \x20   elif a.n == p.UP_TO_NEWLINE: k = 'lines ' + ('2' if a.name.endswith('_pair') else '1')\n\
         \x20   else: k = f'counted {w[a.n]}'\n\
         \x20   print(ord(o.code), k)\n",
    );
    let mut got = String::new();
    for op in known_opcodes() {
        let kind = match arg_of(op) {
            Arg::Nothing => "nothing".to_owned(),
            Arg::Fixed(n) => format!("fixed {n}"),
            Arg::Counted(n) => format!("counted {n}"),
            Arg::Lines(n) => format!("lines {n}"),
        };
        got.push_str(&format!("{op} {kind}\n"));
    }
    assert_eq!(got, String::from_utf8(expected).unwrap());
}
