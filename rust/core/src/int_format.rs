//! Decimal text of machine integers, as Python's `int.__repr__` writes them.

/// Appends `v` in decimal (`-12`, `0`, `9223372036854775807`).
#[inline]
pub fn write_i64(v: i64, out: &mut Vec<u8>) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        for v in [0i64, 1, -1, 42, -9, i64::MAX, i64::MIN, 10_000_000_000] {
            let mut out = b"x".to_vec();
            write_i64(v, &mut out);
            assert_eq!(out, format!("x{v}").into_bytes());
        }
    }
}
