//! I/O-bound stand-in for a remote call: sleeps `ms` milliseconds (default 300)
//! through WASI `poll_oneoff`, then answers.
fn main() {
    let ms: u64 = std::env::var("ms").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    std::thread::sleep(std::time::Duration::from_millis(ms));
    println!("slept {ms} ms");
}
