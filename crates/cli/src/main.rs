//! `wisp`: parse, dispatch, map errors to exit codes.

use clap::Parser;
use wisp_cli::commands::Cli;

// glibc malloc was a quarter of the server's CPU with thousands of instances
// alive (arena-lock contention and `malloc_consolidate`, as requests hop
// between the I/O and guest threads); mimalloc's per-thread free lists don't
// contend. Built without its MADV_HUGEPAGE on large regions (`no_thp`): with
// THP in `madvise` mode those made an idle server 27 MiB instead of 16 MiB
// and the first warm function cost 50 MiB instead of 15 MiB.
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
