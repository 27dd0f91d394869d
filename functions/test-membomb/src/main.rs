//! Test fixture: allocates 16 MiB chunks until the host's memory limit stops it.
fn main() {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut v = vec![0u8; 16 << 20];
        v[0] = 1;
        chunks.push(std::hint::black_box(v));
        eprintln!("allocated {} MiB", chunks.len() * 16);
    }
}
