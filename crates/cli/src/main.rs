//! `wisp`: parse, dispatch, map errors to exit codes.

use clap::Parser;
use wisp_cli::commands::Cli;

// glibc malloc was a quarter of the server's CPU with thousands of instances
// alive (arena-lock contention and `malloc_consolidate`, as requests hop
// between the I/O and guest threads); mimalloc's per-thread free lists don't
// contend. See docs/benchmarks.md, "I/O-bound concurrency".
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = Cli::parse();
    match cli.execute() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            std::process::exit(1);
        }
    }
}
