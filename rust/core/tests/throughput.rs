//! Release-mode throughput checks; run with
//! `cargo test -p jobpersist-core --release --test throughput -- --ignored --nocapture`.

use std::time::Instant;

use jobpersist_core::{decode_into, decoded_len, LineEncoder};

const SIZE: usize = 256 << 20;

fn data() -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..SIZE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn best_of<F: FnMut()>(runs: usize, mut f: F) -> f64 {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

#[test]
#[ignore = "benchmark; run in release mode"]
fn throughput_256mib() {
    let input = data();
    let mut out = Vec::with_capacity(LineEncoder::encoded_len(SIZE, 2));
    let enc_s = best_of(5, || {
        out.clear();
        let mut enc = LineEncoder::new(b"\\n");
        enc.push(&input, &mut out);
        enc.finish(&mut out);
    });
    let mut chunked = Vec::new();
    let chunked_s = best_of(3, || {
        chunked.clear();
        let mut enc = LineEncoder::new(b"\\n");
        for c in input.chunks((3 << 20) + 1) {
            enc.push(c, &mut chunked);
        }
        enc.finish(&mut chunked);
    });
    assert_eq!(chunked, out);

    let mut back = vec![0u8; decoded_len(&out).unwrap()];
    let dec_s = best_of(5, || decode_into(&out, &mut back).unwrap());
    assert_eq!(back, input);

    let gb = SIZE as f64 / 1e9;
    println!(
        "LineEncoder::push 256 MiB one-shot: {:.1} ms = {:.2} GB/s of input",
        enc_s * 1e3,
        gb / enc_s
    );
    println!(
        "LineEncoder::push 256 MiB in ~3 MiB pushes: {:.1} ms = {:.2} GB/s of input",
        chunked_s * 1e3,
        gb / chunked_s
    );
    println!(
        "decode_into 256 MiB (out) / {} MiB (in): {:.1} ms = {:.2} GB/s of decoded output, {:.2} GB/s of input",
        out.len() >> 20,
        dec_s * 1e3,
        gb / dec_s,
        out.len() as f64 / 1e9 / dec_s
    );
}
