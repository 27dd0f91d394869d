//! Test fixture: unbounded recursion.
//!
//! - default: small frames that live on the Wasm call stack, so the
//!   engine's stack limit trips (a `stack overflow` trap);
//! - `?mode=shadow`: large address-taken locals, so Rust's shadow stack in
//!   linear memory runs out first (an out-of-bounds trap).

#[inline(never)]
fn deep(a: u64, b: u64, c: u64) -> u64 {
    if a == 0 {
        return b;
    }
    let r = deep(a.wrapping_add(1), b ^ a, c.wrapping_mul(3));
    r.rotate_left((c & 63) as u32) ^ a
}

#[allow(unconditional_recursion)] // on purpose: it must overflow
fn shadow(n: u64, buf: &mut [u8; 256]) -> u64 {
    buf[(n % 256) as usize] = n as u8;
    let mut next = [0u8; 256];
    std::hint::black_box(&mut next);
    1 + shadow(std::hint::black_box(n + 1), &mut next) + buf[0] as u64
}

fn main() {
    if std::env::var("mode").as_deref() == Ok("shadow") {
        let mut buf = [0u8; 256];
        println!("{}", shadow(0, &mut buf));
    } else {
        println!("{}", deep(std::hint::black_box(1), 2, 3));
    }
}
