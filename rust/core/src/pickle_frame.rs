//! Where CPython's unpickler reads a pickle from a file differently from bytes.
//!
//! `pickle.loads(data)` reads opcodes one after the other and treats `FRAME`
//! as a hint. `pickle.Unpickler(file).load()` reads each frame into a buffer
//! of its own; an opcode whose argument runs past the end of that buffer is
//! read again from the file, and what the frame still held is dropped
//! (CPython issue #154848). A value reader that offers `peek()` keeps the two
//! readings equal for every frame the unpickler takes through `peek`; frames
//! of [`PEEK_SIZE`] bytes or more it takes with one `read(n)`, and for those
//! the reader checks, before handing them over, that no opcode crosses the
//! frame's end ([`frame_crossing`]). Files CPython's pickler writes never
//! have such an opcode.
//!
//! The Python twin is `src/jobpersist/_codec/python/pickle_frame.py`.

/// How many bytes CPython's unpickler asks `peek()` for (`PREFETCH` in
/// `Modules/_pickle.c`, CPython 3.8 to 3.13): a frame this long or longer is
/// read with `read(n)`, not peeked.
pub const PEEK_SIZE: usize = 8192 * 16;

/// The `FRAME` opcode.
pub const FRAME: u8 = 0x95;

/// What follows an opcode, as the unpickler reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg {
    /// Nothing (or an opcode CPython does not know: it stops there).
    Nothing,
    /// A fixed number of bytes.
    Fixed(usize),
    /// A little-endian length of this many bytes, then that many bytes.
    Counted(usize),
    /// Bytes up to and including a newline, this many times.
    Lines(usize),
}

/// The argument of opcode `op` (protocols 0 to 5), as `pickletools` lists it.
pub fn arg_of(op: u8) -> Arg {
    match op {
        // BININT1, BINGET, BINPUT, EXT1, PROTO
        b'K' | b'h' | b'q' | 0x82 | 0x80 => Arg::Fixed(1),
        // BININT2, EXT2
        b'M' | 0x83 => Arg::Fixed(2),
        // BININT, LONG_BINGET, LONG_BINPUT, EXT4
        b'J' | b'j' | b'r' | 0x84 => Arg::Fixed(4),
        // BINFLOAT, FRAME
        b'G' | FRAME => Arg::Fixed(8),
        // SHORT_BINSTRING, SHORT_BINBYTES, SHORT_BINUNICODE, LONG1
        b'U' | b'C' | 0x8c | 0x8a => Arg::Counted(1),
        // BINSTRING, BINUNICODE, BINBYTES, LONG4
        b'T' | b'X' | b'B' | 0x8b => Arg::Counted(4),
        // BINUNICODE8, BINBYTES8, BYTEARRAY8
        0x8d | 0x8e | 0x96 => Arg::Counted(8),
        // INT, LONG, FLOAT, STRING, UNICODE, PERSID, GET, PUT
        b'I' | b'L' | b'F' | b'S' | b'V' | b'P' | b'g' | b'p' => Arg::Lines(1),
        // GLOBAL, INST: module and name, a line each
        b'c' | b'i' => Arg::Lines(2),
        _ => Arg::Nothing,
    }
}

/// Whether the last nine bytes read before a `read(n)` were a `FRAME` opcode
/// announcing `n` bytes: the read is then that frame's content.
pub fn is_frame_header(last: &[u8], n: usize) -> bool {
    match last {
        [FRAME, len @ ..] if len.len() == 8 => {
            let mut le = [0u8; 8];
            le.copy_from_slice(len);
            u64::from_le_bytes(le) == n as u64
        }
        _ => false,
    }
}

/// An opcode that crosses the end of a frame the unpickler reads with one
/// `read(n)`: `at` is its offset in the pickle, `frame` the frame's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crossing {
    /// The offset of the opcode in the pickle.
    pub at: u64,
    /// The length of the frame it crosses.
    pub frame: usize,
}

/// Follows what a value reader hands the unpickler, to check each frame it
/// reads with one `read(n)` before handing it over.
#[derive(Debug, Default)]
pub struct FrameGuard {
    /// The last bytes handed over (at most nine), oldest first.
    last: Vec<u8>,
    /// How many bytes were handed over.
    pos: u64,
}

impl FrameGuard {
    /// A guard at the start of a pickle.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks `block`, what a `read(requested)` is about to hand over, and
    /// records it. The error names the opcode that crosses the frame's end.
    pub fn pass_read(&mut self, requested: usize, block: &[u8]) -> Result<(), Crossing> {
        if requested >= PEEK_SIZE && is_frame_header(&self.last, requested) {
            if let Some(at) = frame_crossing(block) {
                return Err(Crossing {
                    at: self.pos + at as u64,
                    frame: requested,
                });
            }
        }
        self.pass(block);
        Ok(())
    }

    /// Records bytes handed over by anything but a `read(n)` (`readinto`,
    /// `readline`): the unpickler never reads a frame that way.
    pub fn pass(&mut self, bytes: &[u8]) {
        self.pos += bytes.len() as u64;
        let keep = bytes.len().min(9);
        self.last.extend_from_slice(&bytes[bytes.len() - keep..]);
        let excess = self.last.len().saturating_sub(9);
        self.last.drain(..excess);
    }
}

/// The offset of the first opcode in `frame` (a frame's content) that does
/// not end inside it, or `None` when every opcode does, or the pickle stops
/// (or names an opcode CPython refuses) before the end. A `FRAME` opcode
/// inside the frame counts as crossing it.
pub fn frame_crossing(frame: &[u8]) -> Option<usize> {
    let mut pos = 0;
    while pos < frame.len() {
        let op = frame[pos];
        let next = match (op, arg_of(op)) {
            (b'.', _) => return None, // STOP: nothing after it is read
            (FRAME, _) => return Some(pos),
            (_, Arg::Nothing) if !known_without_arg(op) => return None,
            (_, Arg::Nothing) => Some(pos + 1),
            (_, Arg::Fixed(n)) => Some(pos + 1 + n),
            (_, Arg::Counted(width)) => counted_end(frame, pos + 1, width),
            (_, Arg::Lines(lines)) => lines_end(frame, pos + 1, lines),
        };
        match next {
            Some(end) if end <= frame.len() => pos = end,
            _ => return Some(pos),
        }
    }
    None
}

/// The end of a counted argument whose length field starts at `at`.
fn counted_end(frame: &[u8], at: usize, width: usize) -> Option<usize> {
    let field = frame.get(at..at + width)?;
    let mut len = [0u8; 8];
    len[..width].copy_from_slice(field);
    let len = usize::try_from(u64::from_le_bytes(len)).ok()?;
    (at + width).checked_add(len)
}

/// The end of `lines` newline-terminated lines from `at`.
fn lines_end(frame: &[u8], mut at: usize, lines: usize) -> Option<usize> {
    for _ in 0..lines {
        at += frame.get(at..)?.iter().position(|&b| b == b'\n')? + 1;
    }
    Some(at)
}

/// Opcodes without an argument that CPython's unpickler knows.
fn known_without_arg(op: u8) -> bool {
    matches!(
        op,
        b'(' | b')'
            | b'.'
            | b'0'
            | b'1'
            | b'2'
            | b'N'
            | b'Q'
            | b'R'
            | b']'
            | b'a'
            | b'b'
            | b'd'
            | b'e'
            | b'l'
            | b'o'
            | b's'
            | b't'
            | b'u'
            | b'}'
            | 0x81
            | 0x85
            | 0x86
            | 0x87
            | 0x88
            | 0x89
            | 0x8f
            | 0x90
            | 0x91
            | 0x92
            | 0x93
            | 0x94
            | 0x97
            | 0x98
    )
}

/// The opcodes CPython's unpickler knows (protocols 0 to 5).
pub fn known_opcodes() -> impl Iterator<Item = u8> {
    (0..=255u8).filter(|&op| arg_of(op) != Arg::Nothing || known_without_arg(op))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(n: u64) -> Vec<u8> {
        let mut h = vec![FRAME];
        h.extend_from_slice(&n.to_le_bytes());
        h
    }

    #[test]
    fn whole_opcodes_do_not_cross() {
        // BININT1 7, SHORT_BINUNICODE "ab", MEMOIZE, BINFLOAT, EMPTY_LIST, APPENDS
        let frame = b"K\x07\x8c\x02ab\x94G\x00\x00\x00\x00\x00\x00\xf0?]e";
        assert_eq!(frame_crossing(frame), None);
    }

    #[test]
    fn an_argument_past_the_end_crosses() {
        assert_eq!(frame_crossing(b"N\x8c\x0bhello"), Some(1));
        assert_eq!(frame_crossing(b"NVhel"), Some(1));
        assert_eq!(frame_crossing(b"Nc__main__\nf"), Some(1));
        assert_eq!(frame_crossing(b"N\x8e\x05\x00"), Some(1));
        assert_eq!(frame_crossing(b"NG\x00"), Some(1));
    }

    #[test]
    fn a_large_payload_right_after_the_frame_does_not_cross() {
        // BINBYTES8 whose header ends the frame exactly: the payload follows it.
        let mut frame = b"N".to_vec();
        frame.push(0x8e);
        frame.extend_from_slice(&5u64.to_le_bytes());
        frame.extend_from_slice(b"abcde");
        assert_eq!(frame_crossing(&frame), None);
        assert_eq!(frame_crossing(&frame[..frame.len() - 1]), Some(1));
    }

    #[test]
    fn a_frame_inside_a_frame_crosses_and_stop_ends_the_check() {
        let mut frame = b"N".to_vec();
        frame.extend_from_slice(&header(1));
        frame.push(b'N');
        assert_eq!(frame_crossing(&frame), Some(1));
        assert_eq!(frame_crossing(b"N.\x8c\x0bhello"), None);
        assert_eq!(frame_crossing(b"N\xffV"), None);
    }

    #[test]
    fn huge_counts_cross_without_overflow() {
        let mut frame = vec![0x8e];
        frame.extend_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(frame_crossing(&frame), Some(0));
    }

    #[test]
    fn frame_headers_are_recognised() {
        assert!(is_frame_header(&header(200_000), 200_000));
        assert!(!is_frame_header(&header(200_000), 200_001));
        assert!(!is_frame_header(&header(5)[1..], 5));
        let mut other = header(7);
        other[0] = 0x8e;
        assert!(!is_frame_header(&other, 7));
    }

    #[test]
    fn the_guard_checks_only_large_frames_read_whole() {
        let straddled = |n: usize| {
            let mut frame = vec![b'N'; n - 3];
            frame.extend_from_slice(b"Vhe");
            frame
        };
        let mut guard = FrameGuard::new();
        guard.pass(b"\x80\x04");
        guard.pass(&header(PEEK_SIZE as u64));
        assert_eq!(
            guard.pass_read(PEEK_SIZE, &straddled(PEEK_SIZE)),
            Err(Crossing {
                at: 11 + PEEK_SIZE as u64 - 3,
                frame: PEEK_SIZE
            })
        );
        // A smaller frame is peeked, where the unpickler reads it as loads does.
        let mut guard = FrameGuard::new();
        guard.pass(&header(100));
        assert_eq!(guard.pass_read(100, &straddled(100)), Ok(()));
        // A large read that does not follow a FRAME opcode is an argument.
        let mut guard = FrameGuard::new();
        guard.pass(b"\x8d");
        guard.pass(&(PEEK_SIZE as u64).to_le_bytes());
        assert_eq!(guard.pass_read(PEEK_SIZE, &straddled(PEEK_SIZE)), Ok(()));
        // Bytes passed in small pieces still form the header.
        let mut guard = FrameGuard::new();
        for b in header(PEEK_SIZE as u64) {
            guard.pass(&[b]);
        }
        assert!(guard.pass_read(PEEK_SIZE, &straddled(PEEK_SIZE)).is_err());
    }
}
