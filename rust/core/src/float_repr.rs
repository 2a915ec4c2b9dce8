//! `float.__repr__` and `json.dumps` text for `f64`, byte for byte as CPython writes them.
//!
//! CPython's repr is the shortest decimal string that round-trips (David Gay's dtoa, mode 0),
//! laid out in fixed notation when the decimal exponent `e` (of `d.ddd × 10^e`) satisfies
//! `-4 <= e < 16` and as `d.ddde±XX` otherwise. Ryū finds the same shortest, closest digits;
//! its layout agrees with Python's except for `e == -5` (`0.00001` vs `1e-05`) and the
//! exponent's form (`1e16` vs `1e+16`), which are rewritten here.

/// Appends `repr(v)` as Python writes it: `1.0`, `-0.0`, `1e+16`, `1e-05`, `nan`, `inf`.
pub fn write_float_repr(v: f64, out: &mut Vec<u8>) {
    if v.is_finite() {
        write_finite(v, out);
    } else if v.is_nan() {
        out.extend_from_slice(b"nan");
    } else if v > 0.0 {
        out.extend_from_slice(b"inf");
    } else {
        out.extend_from_slice(b"-inf");
    }
}

/// Appends `v` as `json.dumps` writes it (default `allow_nan=True`): the repr for finite
/// values, `NaN`, `Infinity` or `-Infinity` otherwise.
pub fn write_json_float(v: f64, out: &mut Vec<u8>) {
    if v.is_finite() {
        write_finite(v, out);
    } else if v.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if v > 0.0 {
        out.extend_from_slice(b"Infinity");
    } else {
        out.extend_from_slice(b"-Infinity");
    }
}

#[inline]
fn write_finite(v: f64, out: &mut Vec<u8>) {
    let mut buffer = ryu::Buffer::new();
    let text = buffer.format_finite(v).as_bytes();
    let body = match text.first() {
        Some(b'-') => &text[1..],
        _ => text,
    };
    let sign = &text[..text.len() - body.len()];
    // Ryū's exponent is at most `e-324`: look for the `e` in the last five bytes only.
    let tail = body.len().saturating_sub(5);
    if let Some(e_at) = body[tail..]
        .iter()
        .position(|&b| b == b'e')
        .map(|i| tail + i)
    {
        // Scientific in both layouts; only the exponent's form differs.
        let (mantissa, exponent) = (&body[..e_at], &body[e_at + 1..]);
        out.extend_from_slice(sign);
        push_scientific(mantissa, exponent_value(exponent), out);
    } else if body.starts_with(b"0.0000") {
        // Ryū writes 10^-5 <= |v| < 10^-4 as 0.0000ddd; Python as d.dde-05.
        out.extend_from_slice(sign);
        let digits = &body[6..];
        let mut mantissa = [0u8; 24];
        mantissa[0] = digits[0];
        let mut len = 1;
        if digits.len() > 1 {
            mantissa[1] = b'.';
            mantissa[2..digits.len() + 1].copy_from_slice(&digits[1..]);
            len = digits.len() + 1;
        }
        push_scientific(&mantissa[..len], -5, out);
    } else {
        out.extend_from_slice(strip_fraction_zeros(text));
    }
}

/// `12.340` -> `12.34`, keeping `12.0`. (Ryū's shortest digits have no trailing zeros; this
/// only guards the layout against that assumption.)
#[inline]
fn strip_fraction_zeros(text: &[u8]) -> &[u8] {
    let mut end = text.len();
    while end >= 3 && text[end - 1] == b'0' && text[end - 2] != b'.' {
        end -= 1;
    }
    &text[..end]
}

fn exponent_value(text: &[u8]) -> i32 {
    let (negative, digits) = match text.first() {
        Some(b'-') => (true, &text[1..]),
        _ => (false, text),
    };
    let magnitude = digits
        .iter()
        .fold(0i32, |acc, &d| acc * 10 + i32::from(d - b'0'));
    if negative {
        -magnitude
    } else {
        magnitude
    }
}

/// Appends `mantissa` (`d` or `d.ddd`, trailing fraction zeros dropped) and `e±XX`.
fn push_scientific(mantissa: &[u8], exponent: i32, out: &mut Vec<u8>) {
    let mut end = mantissa.len();
    if mantissa.contains(&b'.') {
        while mantissa[end - 1] == b'0' {
            end -= 1;
        }
        if mantissa[end - 1] == b'.' {
            end -= 1;
        }
    }
    out.extend_from_slice(&mantissa[..end]);
    out.push(b'e');
    out.push(if exponent < 0 { b'-' } else { b'+' });
    let magnitude = exponent.unsigned_abs();
    if magnitude < 10 {
        out.push(b'0');
    }
    let mut digits = itoa::Buffer::new();
    out.extend_from_slice(digits.format(magnitude).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn repr(v: f64) -> String {
        let mut out = Vec::new();
        write_float_repr(v, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn json(v: f64) -> String {
        let mut out = Vec::new();
        write_json_float(v, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn known_vectors() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (-1.5, "-1.5"),
            (0.1, "0.1"),
            (5e-324, "5e-324"),
            (-5e-324, "-5e-324"),
            (1e16, "1e+16"),
            (1e-5, "1e-05"),
            (1.5e-5, "1.5e-05"),
            (-1.25e-5, "-1.25e-05"),
            (0.0001, "0.0001"),
            (0.00012, "0.00012"),
            (1e-7, "1e-07"),
            (1e15, "1000000000000000.0"),
            (123456789012345.6, "123456789012345.6"),
            (1234567890123456.8, "1234567890123456.8"),
            (9999999999999998.0, "9999999999999998.0"),
            (12345678901234567.0, "1.2345678901234568e+16"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (2.2250738585072014e-308, "2.2250738585072014e-308"),
            (1e100, "1e+100"),
            (1e-100, "1e-100"),
            (1e22, "1e+22"),
            (1e23, "1e+23"),
            (0.30000000000000004, "0.30000000000000004"),
        ];
        for &(v, want) in cases {
            assert_eq!(repr(v), want, "repr of {v:e}");
            assert_eq!(json(v), want, "json of {v:e}");
        }
    }

    #[test]
    fn non_finite() {
        assert_eq!(repr(f64::NAN), "nan");
        assert_eq!(repr(-f64::NAN), "nan");
        assert_eq!(repr(f64::INFINITY), "inf");
        assert_eq!(repr(f64::NEG_INFINITY), "-inf");
        assert_eq!(json(f64::NAN), "NaN");
        assert_eq!(json(-f64::NAN), "NaN");
        assert_eq!(json(f64::INFINITY), "Infinity");
        assert_eq!(json(f64::NEG_INFINITY), "-Infinity");
    }

    #[test]
    fn appends() {
        let mut out = b"[".to_vec();
        write_json_float(2.5, &mut out);
        out.extend_from_slice(b", ");
        write_json_float(f64::NAN, &mut out);
        assert_eq!(out, b"[2.5, NaN");
    }

    #[test]
    fn python_vectors() {
        for &(bits, want) in PYTHON_VECTORS {
            let v = f64::from_bits(bits);
            assert_eq!(repr(v), want, "bits {bits:#018x}");
        }
    }

    /// The significant digits and decimal exponent `e` (`d.ddd × 10^e`) of a repr text.
    fn digits_and_exponent(text: &str) -> (String, i32) {
        let body = text.trim_start_matches('-');
        let (mantissa, exp) = match body.split_once('e') {
            Some((m, e)) => (m, e.parse::<i32>().unwrap()),
            None => (body, 0),
        };
        let point = mantissa.find('.').unwrap_or(mantissa.len()) as i32;
        let all: String = mantissa.chars().filter(|c| *c != '.').collect();
        let leading = (all.len() - all.trim_start_matches('0').len()) as i32;
        let digits = all.trim_matches('0').to_string();
        (digits, point + exp - leading - 1)
    }

    /// Python's layout rule applied to the digits and exponent of `text`; also checks that
    /// `text` has as few digits as Rust's own shortest round-trip formatting.
    fn python_layout(v: f64, text: &str) -> String {
        let sign = if v.is_sign_negative() { "-" } else { "" };
        if v == 0.0 {
            return format!("{sign}0.0");
        }
        let (digits, exponent) = digits_and_exponent(text);
        let (rust_digits, _) = digits_and_exponent(&format!("{:e}", v.abs()));
        assert_eq!(digits.len(), rust_digits.len(), "not shortest: {text}");
        if (-4..16).contains(&exponent) {
            let point = exponent + 1;
            let body = if point <= 0 {
                format!("0.{}{}", "0".repeat((-point) as usize), digits)
            } else if point as usize >= digits.len() {
                format!("{}{}.0", digits, "0".repeat(point as usize - digits.len()))
            } else {
                format!(
                    "{}.{}",
                    &digits[..point as usize],
                    &digits[point as usize..]
                )
            };
            format!("{sign}{body}")
        } else {
            let mantissa = if digits.len() == 1 {
                digits.clone()
            } else {
                format!("{}.{}", &digits[..1], &digits[1..])
            };
            let exp_sign = if exponent < 0 { '-' } else { '+' };
            format!("{sign}{mantissa}e{exp_sign}{:02}", exponent.abs())
        }
    }

    proptest! {
        #[test]
        fn round_trips(bits in any::<u64>()) {
            let v = f64::from_bits(bits);
            prop_assume!(v.is_finite());
            let text = repr(v);
            let back: f64 = text.parse().unwrap();
            prop_assert_eq!(back.to_bits(), v.to_bits(), "{}", text);
            prop_assert_eq!(&text, &python_layout(v, &text));
            prop_assert_eq!(json(v), text);
        }

        #[test]
        fn round_trips_near_layout_boundaries(
            exponent in -8i32..20,
            mantissa in 1.0f64..10.0,
            negative in any::<bool>(),
        ) {
            let mut v = mantissa * 10f64.powi(exponent);
            if negative {
                v = -v;
            }
            let text = repr(v);
            let back: f64 = text.parse().unwrap();
            prop_assert_eq!(back.to_bits(), v.to_bits(), "{}", text);
            prop_assert_eq!(&text, &python_layout(v, &text));
        }
    }

    /// (bits, Python `repr`) pairs generated with CPython 3.11.
    const PYTHON_VECTORS: &[(u64, &str)] = &[
        (0x0000000000000000, "0.0"),
        (0x8000000000000000, "-0.0"),
        (0x0000000000000001, "5e-324"),
        (0x8000000000000001, "-5e-324"),
        (0x0000000000000002, "1e-323"),
        (0x0010000000000000, "2.2250738585072014e-308"),
        (0x000fffffffffffff, "2.225073858507201e-308"),
        (0x7fefffffffffffff, "1.7976931348623157e+308"),
        (0xffefffffffffffff, "-1.7976931348623157e+308"),
        (0x3ff0000000000000, "1.0"),
        (0xbff0000000000000, "-1.0"),
        (0x3fb999999999999a, "0.1"),
        (0x3fc999999999999a, "0.2"),
        (0x3fd3333333333333, "0.3"),
        (0x3fd5555555555555, "0.3333333333333333"),
        (0x3fe5555555555555, "0.6666666666666666"),
        (0x42dc12218377de66, "123456789012345.6"),
        (0x43118b54f22aeb03, "1234567890123456.8"),
        (0x4340000000000000, "9007199254740992.0"),
        (0x430c6bf526340000, "1000000000000000.0"),
        (0x4341c37937e08000, "1e+16"),
        (0x4376345785d8a000, "1e+17"),
        (0x3f1a36e2eb1c432d, "0.0001"),
        (0x3ee4f8b588e368f1, "1e-05"),
        (0x4341c37937e07fff, "9999999999999998.0"),
        (0x4480f0cf064dd592, "1e+22"),
        (0x44b52d02c7e14af6, "1e+23"),
        (0x444b1ae4d6e2ef50, "1e+21"),
        (0x3f0a36e2eb1c432d, "5e-05"),
        (0x3f1a36371ea531a8, "9.999e-05"),
        (0x3f1a36e2e6b65ccc, "9.9999999e-05"),
        (0x3ff8000000000000, "1.5"),
        (0x4059000000000000, "100.0"),
        (0x54b249ad2594c37d, "1e+100"),
        (0x2b2bff2ee48e0530, "1e-100"),
        (0x400921fb54442d18, "3.141592653589793"),
        (0x4005bf0a8b145769, "2.718281828459045"),
        (0x4011666666666666, "4.35"),
        (0x3fd3333333333334, "0.30000000000000004"),
        (0x43e0000000000000, "9.223372036854776e+18"),
        (0x43f0000000000000, "1.8446744073709552e+19"),
        (0x433fffffffffffff, "9007199254740991.0"),
        (0x7fe1ccf385ebc8a0, "1e+308"),
        (0x000730d67819e8d2, "1e-308"),
        (0x00000000000007e8, "1e-320"),
        (0x3e7ad7f29abcaf48, "1e-07"),
        (0x3e7ad7f29abcaf49, "1.0000000000000001e-07"),
        (0x3e7ad7f29abcaf47, "9.999999999999998e-08"),
        (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-07"),
        (0x3eb0c6f7a0b5ed8d, "1e-06"),
        (0x3eb0c6f7a0b5ed8b, "9.999999999999995e-07"),
        (0x3e7ad7f29abcaf4a, "1.0000000000000002e-07"),
        (0x3e7ad7f29abcaf4b, "1.0000000000000004e-07"),
        (0x3ea0c6f7a0b5ed8d, "5e-07"),
        (0x3ea0c6f7a0b5ed8e, "5.000000000000001e-07"),
        (0x3ea0c6f7a0b5ed8c, "4.999999999999999e-07"),
        (0x3eafe07017c01026, "9.5e-07"),
        (0x3eafe07017c01027, "9.500000000000001e-07"),
        (0x3eafe07017c01025, "9.499999999999999e-07"),
        (0x3eb0c6f7a0b5ed8e, "1.0000000000000002e-06"),
        (0x3ee4f8b588e368ef, "9.999999999999997e-06"),
        (0x3ee4f8b588e368f0, "9.999999999999999e-06"),
        (0x3ee4f8b588e368ee, "9.999999999999996e-06"),
        (0x3eb0c6f7a0b5ed8f, "1.0000000000000004e-06"),
        (0x3ed4f8b588e368f0, "4.9999999999999996e-06"),
        (0x3ed4f8b588e368f1, "5e-06"),
        (0x3ed4f8b588e368ef, "4.999999999999999e-06"),
        (0x3ee3ec460ed80a17, "9.499999999999999e-06"),
        (0x3ee3ec460ed80a18, "9.5e-06"),
        (0x3ee3ec460ed80a16, "9.499999999999997e-06"),
        (0x3ee4f8b588e368f2, "1.0000000000000003e-05"),
        (0x3f1a36e2eb1c432c, "9.999999999999999e-05"),
        (0x3f1a36e2eb1c432b, "9.999999999999998e-05"),
        (0x3ee4f8b588e368f3, "1.0000000000000004e-05"),
        (0x3f0a36e2eb1c432e, "5.000000000000001e-05"),
        (0x3f0a36e2eb1c432c, "4.9999999999999996e-05"),
        (0x3f18e757928e0c9e, "9.5e-05"),
        (0x3f18e757928e0c9f, "9.500000000000002e-05"),
        (0x3f18e757928e0c9d, "9.499999999999999e-05"),
        (0x3f1a36e2eb1c432e, "0.00010000000000000002"),
        (0x3f50624dd2f1a9fb, "0.0009999999999999998"),
        (0x3f50624dd2f1a9fc, "0.001"),
        (0x3f50624dd2f1a9fa, "0.0009999999999999996"),
        (0x3f1a36e2eb1c432f, "0.00010000000000000003"),
        (0x3f1a36e2eb1c4330, "0.00010000000000000005"),
        (0x3f40624dd2f1a9fc, "0.0005"),
        (0x3f40624dd2f1a9fd, "0.0005000000000000001"),
        (0x3f40624dd2f1a9fb, "0.0004999999999999999"),
        (0x3f4f212d77318fc5, "0.00095"),
        (0x3f4f212d77318fc6, "0.0009500000000000001"),
        (0x3f4f212d77318fc4, "0.0009499999999999999"),
        (0x3f50624dd2f1a9fd, "0.0010000000000000002"),
        (0x3f847ae147ae147a, "0.009999999999999998"),
        (0x3f847ae147ae147b, "0.01"),
        (0x3f847ae147ae1479, "0.009999999999999997"),
        (0x3f50624dd2f1a9fe, "0.0010000000000000005"),
        (0x3f747ae147ae147b, "0.005"),
        (0x3f747ae147ae147c, "0.005000000000000001"),
        (0x3f747ae147ae147a, "0.004999999999999999"),
        (0x3f8374bc6a7ef9db, "0.0095"),
        (0x3f8374bc6a7ef9dc, "0.009500000000000001"),
        (0x3f8374bc6a7ef9da, "0.009499999999999998"),
        (0x3f847ae147ae147c, "0.010000000000000002"),
        (0x3fb9999999999998, "0.09999999999999998"),
        (0x3fb9999999999999, "0.09999999999999999"),
        (0x3fb9999999999997, "0.09999999999999996"),
        (0x3f847ae147ae147d, "0.010000000000000004"),
        (0x3fa999999999999a, "0.05"),
        (0x3fa999999999999b, "0.05000000000000001"),
        (0x3fa9999999999999, "0.049999999999999996"),
        (0x3fb851eb851eb852, "0.095"),
        (0x3fb851eb851eb853, "0.09500000000000001"),
        (0x3fb851eb851eb851, "0.09499999999999999"),
        (0x3fb999999999999b, "0.10000000000000002"),
        (0x3fefffffffffffff, "0.9999999999999999"),
        (0x3feffffffffffffe, "0.9999999999999998"),
        (0x3fb999999999999c, "0.10000000000000003"),
        (0x3fb999999999999d, "0.10000000000000005"),
        (0x3fe0000000000000, "0.5"),
        (0x3fe0000000000001, "0.5000000000000001"),
        (0x3fdfffffffffffff, "0.49999999999999994"),
        (0x3fee666666666667, "0.9500000000000001"),
        (0x3fee666666666668, "0.9500000000000002"),
        (0x3fee666666666666, "0.95"),
        (0x3ff0000000000001, "1.0000000000000002"),
        (0x4023ffffffffffff, "9.999999999999998"),
        (0x4024000000000000, "10.0"),
        (0x4023fffffffffffe, "9.999999999999996"),
        (0x3ff0000000000002, "1.0000000000000004"),
        (0x4014000000000000, "5.0"),
        (0x4014000000000001, "5.000000000000001"),
        (0x4013ffffffffffff, "4.999999999999999"),
        (0x4023000000000000, "9.5"),
        (0x4023000000000001, "9.500000000000002"),
        (0x4022ffffffffffff, "9.499999999999998"),
        (0x4024000000000001, "10.000000000000002"),
        (0x4058ffffffffffff, "99.99999999999999"),
        (0x4058fffffffffffe, "99.99999999999997"),
        (0x4024000000000002, "10.000000000000004"),
        (0x4049000000000000, "50.0"),
        (0x4049000000000001, "50.00000000000001"),
        (0x4048ffffffffffff, "49.99999999999999"),
        (0x4057c00000000000, "95.0"),
        (0x4057c00000000001, "95.00000000000001"),
        (0x4057bfffffffffff, "94.99999999999999"),
        (0x4059000000000001, "100.00000000000001"),
        (0x408f3ffffffffffe, "999.9999999999998"),
        (0x408f3fffffffffff, "999.9999999999999"),
        (0x408f3ffffffffffd, "999.9999999999997"),
        (0x4059000000000002, "100.00000000000003"),
        (0x4059000000000003, "100.00000000000004"),
        (0x407f400000000000, "500.0"),
        (0x407f400000000001, "500.00000000000006"),
        (0x407f3fffffffffff, "499.99999999999994"),
        (0x408db00000000000, "950.0"),
        (0x408db00000000001, "950.0000000000001"),
        (0x408dafffffffffff, "949.9999999999999"),
        (0x408f400000000000, "1000.0"),
        (0x408f400000000001, "1000.0000000000001"),
        (0x40c387ffffffffff, "9999.999999999998"),
        (0x40c3880000000000, "10000.0"),
        (0x40c387fffffffffe, "9999.999999999996"),
        (0x408f400000000002, "1000.0000000000002"),
        (0x408f400000000003, "1000.0000000000003"),
        (0x40b3880000000000, "5000.0"),
        (0x40b3880000000001, "5000.000000000001"),
        (0x40b387ffffffffff, "4999.999999999999"),
        (0x40c28e0000000000, "9500.0"),
        (0x40c28e0000000001, "9500.000000000002"),
        (0x40c28dffffffffff, "9499.999999999998"),
        (0x40c3880000000001, "10000.000000000002"),
        (0x40f869ffffffffff, "99999.99999999999"),
        (0x40f86a0000000000, "100000.0"),
        (0x40f869fffffffffe, "99999.99999999997"),
        (0x40c3880000000002, "10000.000000000004"),
        (0x40e86a0000000000, "50000.0"),
        (0x40e86a0000000001, "50000.00000000001"),
        (0x40e869ffffffffff, "49999.99999999999"),
        (0x40f7318000000000, "95000.0"),
        (0x40f7318000000001, "95000.00000000001"),
        (0x40f7317fffffffff, "94999.99999999999"),
        (0x40f86a0000000001, "100000.00000000001"),
        (0x412e847ffffffffe, "999999.9999999998"),
        (0x412e847fffffffff, "999999.9999999999"),
        (0x412e847ffffffffd, "999999.9999999997"),
        (0x40f86a0000000002, "100000.00000000003"),
        (0x40f86a0000000003, "100000.00000000004"),
        (0x411e848000000000, "500000.0"),
        (0x411e848000000001, "500000.00000000006"),
        (0x411e847fffffffff, "499999.99999999994"),
        (0x412cfde000000000, "950000.0"),
        (0x412cfde000000001, "950000.0000000001"),
        (0x412cfddfffffffff, "949999.9999999999"),
        (0x412e848000000000, "1000000.0"),
        (0x412e848000000001, "1000000.0000000001"),
        (0x416312cfffffffff, "9999999.999999998"),
        (0x416312d000000000, "10000000.0"),
        (0x416312cffffffffe, "9999999.999999996"),
        (0x412e848000000002, "1000000.0000000002"),
        (0x412e848000000003, "1000000.0000000003"),
        (0x415312d000000000, "5000000.0"),
        (0x415312d000000001, "5000000.000000001"),
        (0x415312cfffffffff, "4999999.999999999"),
        (0x41621eac00000000, "9500000.0"),
        (0x41621eac00000001, "9500000.000000002"),
        (0x41621eabffffffff, "9499999.999999998"),
        (0x416312d000000001, "10000000.000000002"),
        (0x4197d783ffffffff, "99999999.99999999"),
        (0x4197d78400000000, "100000000.0"),
        (0x4197d783fffffffe, "99999999.99999997"),
        (0x416312d000000002, "10000000.000000004"),
        (0x4187d78400000000, "50000000.0"),
        (0x4187d78400000001, "50000000.00000001"),
        (0x4187d783ffffffff, "49999999.99999999"),
        (0x4196a65700000000, "95000000.0"),
        (0x4196a65700000001, "95000000.00000001"),
        (0x4196a656ffffffff, "94999999.99999999"),
        (0x4197d78400000001, "100000000.00000001"),
        (0x41cdcd64ffffffff, "999999999.9999999"),
        (0x41cdcd6500000000, "1000000000.0"),
        (0x41cdcd64fffffffe, "999999999.9999998"),
        (0x4197d78400000002, "100000000.00000003"),
        (0x41bdcd6500000000, "500000000.0"),
        (0x41bdcd6500000001, "500000000.00000006"),
        (0x41bdcd64ffffffff, "499999999.99999994"),
        (0x41cc4fecc0000000, "950000000.0"),
        (0x41cc4fecc0000001, "950000000.0000001"),
        (0x41cc4fecbfffffff, "949999999.9999999"),
        (0x41cdcd6500000001, "1000000000.0000001"),
        (0x4202a05f1fffffff, "9999999999.999998"),
        (0x4202a05f20000000, "10000000000.0"),
        (0x4202a05f1ffffffe, "9999999999.999996"),
        (0x41cdcd6500000002, "1000000000.0000002"),
        (0x41cdcd6500000003, "1000000000.0000004"),
        (0x41f2a05f20000000, "5000000000.0"),
        (0x41f2a05f20000001, "5000000000.000001"),
        (0x41f2a05f1fffffff, "4999999999.999999"),
        (0x4201b1f3f8000000, "9500000000.0"),
        (0x4201b1f3f8000001, "9500000000.000002"),
        (0x4201b1f3f7ffffff, "9499999999.999998"),
        (0x4202a05f20000001, "10000000000.000002"),
        (0x42374876e7ffffff, "99999999999.99998"),
        (0x42374876e8000000, "100000000000.0"),
        (0x42374876e7fffffe, "99999999999.99997"),
        (0x4202a05f20000002, "10000000000.000004"),
        (0x42274876e8000000, "50000000000.0"),
        (0x42274876e8000001, "50000000000.00001"),
        (0x42274876e7ffffff, "49999999999.99999"),
        (0x42361e70f6000000, "95000000000.0"),
        (0x42361e70f6000001, "95000000000.00002"),
        (0x42361e70f5ffffff, "94999999999.99998"),
        (0x42374876e8000001, "100000000000.00002"),
        (0x426d1a94a1ffffff, "999999999999.9999"),
        (0x426d1a94a2000000, "1000000000000.0"),
        (0x426d1a94a1fffffe, "999999999999.9998"),
        (0x42374876e8000002, "100000000000.00003"),
        (0x425d1a94a2000000, "500000000000.0"),
        (0x425d1a94a2000001, "500000000000.00006"),
        (0x425d1a94a1ffffff, "499999999999.99994"),
        (0x426ba60d33800000, "950000000000.0"),
        (0x426ba60d33800001, "950000000000.0001"),
        (0x426ba60d337fffff, "949999999999.9999"),
        (0x426d1a94a2000001, "1000000000000.0001"),
        (0x42a2309ce53fffff, "9999999999999.998"),
        (0x42a2309ce5400000, "10000000000000.0"),
        (0x42a2309ce53ffffe, "9999999999999.996"),
        (0x426d1a94a2000002, "1000000000000.0002"),
        (0x426d1a94a2000003, "1000000000000.0004"),
        (0x4292309ce5400000, "5000000000000.0"),
        (0x4292309ce5400001, "5000000000000.001"),
        (0x4292309ce53fffff, "4999999999999.999"),
        (0x42a147c840300000, "9500000000000.0"),
        (0x42a147c840300001, "9500000000000.002"),
        (0x42a147c8402fffff, "9499999999999.998"),
        (0x42a2309ce5400001, "10000000000000.002"),
        (0x42d6bcc41e8fffff, "99999999999999.98"),
        (0x42d6bcc41e900000, "100000000000000.0"),
        (0x42d6bcc41e8ffffe, "99999999999999.97"),
        (0x42a2309ce5400002, "10000000000000.004"),
        (0x42c6bcc41e900000, "50000000000000.0"),
        (0x42c6bcc41e900001, "50000000000000.01"),
        (0x42c6bcc41e8fffff, "49999999999999.99"),
        (0x42d599ba503c0000, "95000000000000.0"),
        (0x42d599ba503c0001, "95000000000000.02"),
        (0x42d599ba503bffff, "94999999999999.98"),
        (0x42d6bcc41e900001, "100000000000000.02"),
        (0x430c6bf52633ffff, "999999999999999.9"),
        (0x430c6bf52633fffe, "999999999999999.8"),
        (0x42d6bcc41e900002, "100000000000000.03"),
        (0x42fc6bf526340000, "500000000000000.0"),
        (0x42fc6bf526340001, "500000000000000.06"),
        (0x42fc6bf52633ffff, "499999999999999.94"),
        (0x430b0028e44b0000, "950000000000000.0"),
        (0x430b0028e44b0001, "950000000000000.1"),
        (0x430b0028e44affff, "949999999999999.9"),
        (0x430c6bf526340001, "1000000000000000.1"),
        (0x4341c37937e07ffe, "9999999999999996.0"),
        (0x430c6bf526340002, "1000000000000000.2"),
        (0x430c6bf526340003, "1000000000000000.4"),
        (0x4331c37937e08000, "5000000000000000.0"),
        (0x4331c37937e08001, "5000000000000001.0"),
        (0x4331c37937e07fff, "4999999999999999.0"),
        (0x4340e0198eaee000, "9500000000000000.0"),
        (0x4340e0198eaee001, "9500000000000002.0"),
        (0x4340e0198eaedfff, "9499999999999998.0"),
        (0x4341c37937e08001, "1.0000000000000002e+16"),
        (0x4376345785d89fff, "9.999999999999998e+16"),
        (0x4376345785d89ffe, "9.999999999999997e+16"),
        (0x4341c37937e08002, "1.0000000000000004e+16"),
        (0x4366345785d8a000, "5e+16"),
        (0x4366345785d8a001, "5.000000000000001e+16"),
        (0x4366345785d89fff, "4.999999999999999e+16"),
        (0x4375181ff25a9800, "9.5e+16"),
        (0x4375181ff25a9801, "9.500000000000002e+16"),
        (0x4375181ff25a97ff, "9.499999999999998e+16"),
        (0x4376345785d8a001, "1.0000000000000002e+17"),
        (0x43abc16d674ec7ff, "9.999999999999999e+17"),
        (0x43abc16d674ec800, "1e+18"),
        (0x43abc16d674ec7fe, "9.999999999999997e+17"),
        (0x4376345785d8a002, "1.0000000000000003e+17"),
        (0x439bc16d674ec800, "5e+17"),
        (0x439bc16d674ec801, "5.0000000000000006e+17"),
        (0x439bc16d674ec7ff, "4.9999999999999994e+17"),
        (0x43aa5e27eef13e00, "9.5e+17"),
        (0x43aa5e27eef13e01, "9.500000000000001e+17"),
        (0x43aa5e27eef13dff, "9.499999999999999e+17"),
        (0x43abc16d674ec801, "1.0000000000000001e+18"),
        (0x43e158e460913cff, "9.999999999999998e+18"),
        (0x43e158e460913d00, "1e+19"),
        (0x43e158e460913cfe, "9.999999999999996e+18"),
        (0x43abc16d674ec802, "1.0000000000000003e+18"),
        (0x43abc16d674ec803, "1.0000000000000004e+18"),
        (0x43d158e460913d00, "5e+18"),
        (0x43d158e460913d01, "5.000000000000001e+18"),
        (0x43d158e460913cff, "4.999999999999999e+18"),
        (0x43e07ad8f556c6c0, "9.5e+18"),
        (0x43e07ad8f556c6c1, "9.500000000000002e+18"),
        (0x43e07ad8f556c6bf, "9.499999999999998e+18"),
        (0x43e158e460913d01, "1.0000000000000002e+19"),
        (0x4415af1d78b58c3f, "9.999999999999998e+19"),
        (0x4415af1d78b58c40, "1e+20"),
        (0x4415af1d78b58c3e, "9.999999999999997e+19"),
        (0x43e158e460913d02, "1.0000000000000004e+19"),
        (0x4405af1d78b58c40, "5e+19"),
        (0x4405af1d78b58c41, "5.000000000000001e+19"),
        (0x4405af1d78b58c3f, "4.999999999999999e+19"),
        (0x4414998f32ac7870, "9.5e+19"),
        (0x4414998f32ac7871, "9.500000000000002e+19"),
        (0x4414998f32ac786f, "9.499999999999998e+19"),
        (0x0004da4f3c6da5d7, "6.74860944289536e-309"),
        (0x000b8a1a1a6916c7, "1.6047595358353697e-308"),
        (0x0007a97c656412a9, "1.0655398069092225e-308"),
        (0x0001710c27ac435a, "2.00478003197753e-309"),
        (0x0000512b11072231, "4.40930916852285e-310"),
        (0x0008ca5966ceab36, "1.2224592853958374e-308"),
        (0x0004a148eaff1a09, "6.43883374740912e-309"),
        (0x000fd724ccea71ff, "2.202879481090225e-308"),
        (0x0000f109c3e1b258, "1.30939373953345e-309"),
        (0x0008534f38d048ec, "1.1577932044181695e-308"),
        (0x0005c3908963dc6e, "8.015723168951055e-309"),
        (0x000c79d646d4ac7a, "1.734991029720013e-308"),
        (0x000d3add2c33be0a, "1.839849231004553e-308"),
        (0x000430001b2ed40e, "5.82343774226684e-309"),
        (0x000f165c36e2f24b, "2.0981535012147926e-308"),
        (0x00006905ed6f0b09, "5.70518249394915e-310"),
        (0x000a4042d4341aad, "1.4255797512932304e-308"),
        (0x00042a00ce80c4b0, "5.79085875084147e-309"),
        (0x00045914ccea2645, "6.04660155190915e-309"),
        (0x0002a3183184ff27, "3.667322110473503e-309"),
        (0xc117363057735752, "-380300.08540092886"),
        (0x410efff9a37bf348, "253951.20482626022"),
        (0x411c4eb5abc89af4, "463789.41775743593"),
        (0x4125a5616e9548a2, "709296.7159826944"),
        (0x4127324b0164d48c, "760101.5027223988"),
        (0xc1293986fd4d4564, "-826563.4947301564"),
        (0x4109d7be23b774f0, "211703.7674397598"),
        (0x4114f5aba6f21bd8, "343402.91303294664"),
        (0x40c741c694f53100, "11907.551420830656"),
        (0xc123aa874d93d2e4, "-644419.651518431"),
        (0xc0e9cb0731ce1350, "-52824.22482970974"),
        (0xc12910772bc29f1c, "-821307.5854692194"),
        (0x412a867174a22d70, "869176.727799816"),
        (0x41264eb0ae44ff9c, "730968.3403701666"),
        (0x40f742dbd3a83ab0, "95277.73917410779"),
        (0xc1186252155a94ac, "-399508.52085335064"),
        (0x4128f499285c52d4, "817740.5788293728"),
        (0x4101aaecd3b495d8, "144733.60337178293"),
        (0x412755b4f5a2c918, "764634.47975758"),
        (0x41253e305a574be6, "696088.1764472693"),
    ];
}
