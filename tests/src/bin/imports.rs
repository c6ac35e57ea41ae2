//! The core's module imports for humans: files per layer, file-level imports per pair of
//! layers, layer violations and import cycles (the same reading as the `layers` test).
//!
//!     cargo run -q -p imagehook-tests --bin imports [-- [--files] [SRC]]
//!
//! SRC defaults to the workspace's shared/src; `--files` also lists every file-level import.
//! A layer is the first path segment under SRC, in the layer table or not, so trees of another
//! layout print as well.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut files = false;
    let mut src = None;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--files" => files = true,
            "-h" | "--help" => {
                println!("usage: imports [--files] [SRC]  (SRC defaults to shared/src)");
                return ExitCode::SUCCESS;
            }
            _ if arg.starts_with('-') => {
                eprintln!("imports: unknown option {arg}; usage: imports [--files] [SRC]");
                return ExitCode::from(2);
            }
            _ => src = Some(PathBuf::from(arg)),
        }
    }
    let src = src.unwrap_or_else(|| imagehook_tests::workspace_root().join("shared/src"));
    match imagehook_tests::layers::check(&src) {
        Ok(report) => {
            print!("{}", report.render(files));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("imports: {e}");
            ExitCode::from(2)
        }
    }
}
