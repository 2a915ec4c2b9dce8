//! The instruction set `base64-simd` runs on this machine, for `jobpersist info`.
//!
//! `base64-simd` 0.8 does not say which implementation it picked, so this
//! repeats its choice. Its `encode`, `decode` and `check` are declared with
//! vsimd 0.8's `dispatch!` (base64-simd `src/multiversion.rs`) with the targets
//! `avx2, ssse3, neon, simd128` and the portable fallback. With vsimd's
//! `detect` feature (on through base64-simd's default features, which
//! jobpersist-core uses) the first call resolves, once, the first target whose
//! `is_enabled()` holds, in that order (`vsimd/src/macros.rs`,
//! `@resolve_dynamic`). `is_enabled()` is `cfg!(target_feature)` or else std's
//! run-time detection (`vsimd/src/isa.rs`, `is_feature_detected!`); on x86 that
//! is CPUID plus XGETBV, so AVX2 counts only when the OS saves the YMM state.
//! NEON on 32-bit ARM needs vsimd's `unstable` feature, which is off; wasm32
//! resolves at compile time only.

/// The instruction set of the base64 code on this machine: `"avx2"`, `"ssse3"`,
/// `"neon"`, `"simd128"` or `"fallback"` (base64-simd's portable scalar code).
///
/// The answer is the one `base64-simd` 0.8 reaches at its first call, by the
/// same tests in the same order; the tests are cheap after the first (std
/// caches the CPU's features).
pub fn base64_isa() -> &'static str {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            return "avx2";
        }
        if std::arch::is_x86_feature_detected!("ssse3") {
            return "ssse3";
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            return "neon";
        }
    }
    if cfg!(all(target_arch = "wasm32", target_feature = "simd128")) {
        return "simd128";
    }
    "fallback"
}

#[cfg(test)]
mod tests {
    use super::base64_isa;

    /// The CPU flags the Linux kernel reports and lets user space use (it
    /// drops the AVX flags when it does not save their state).
    #[cfg(all(target_os = "linux", any(target_arch = "x86", target_arch = "x86_64")))]
    fn cpuinfo_flags() -> Vec<String> {
        let text = std::fs::read_to_string("/proc/cpuinfo").expect("/proc/cpuinfo");
        let line = text
            .lines()
            .find(|line| line.starts_with("flags"))
            .expect("a flags line in /proc/cpuinfo");
        let (_, flags) = line.split_once(':').expect("flags: ...");
        flags.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    #[cfg(all(target_os = "linux", any(target_arch = "x86", target_arch = "x86_64")))]
    fn agrees_with_the_kernels_cpu_flags() {
        let flags = cpuinfo_flags();
        let has = |name: &str| flags.iter().any(|flag| flag == name);
        let expected = if has("avx2") {
            "avx2"
        } else if has("ssse3") {
            "ssse3"
        } else {
            "fallback"
        };
        assert_eq!(base64_isa(), expected, "cpu flags: {flags:?}");
    }

    #[test]
    #[cfg(target_arch = "aarch64")]
    fn aarch64_has_neon() {
        assert_eq!(base64_isa(), "neon");
    }
}
