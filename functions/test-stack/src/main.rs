//! Test fixture: recurses until the Wasm stack overflows.
fn recurse(n: u64, buf: &mut [u8; 256]) -> u64 {
    buf[(n % 256) as usize] = n as u8;
    let mut next = [0u8; 256];
    std::hint::black_box(&mut next);
    1 + recurse(std::hint::black_box(n + 1), &mut next) + buf[0] as u64
}

fn main() {
    let mut buf = [0u8; 256];
    println!("{}", recurse(0, &mut buf));
}
