//! Hello world: the smallest useful function.
fn main() {
    print!("Content-Type: text/plain\n\nHello, world!\n");
}
