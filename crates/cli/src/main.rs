//! `wisp`: parse, dispatch, map errors to exit codes.

use clap::Parser;
use wisp_cli::commands::Cli;

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
