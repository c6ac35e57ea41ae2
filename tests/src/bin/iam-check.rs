//! `iam-check [--template PATH] [--calls DIR]`: compares the AWS calls the e2e suite recorded
//! (`IMAGEHOOK_IAM_CALLS`, default `target/iam-calls`) with each function's role in
//! `template.yaml`. Prints a table per function and action; exits 1 naming every call a role
//! does not grant and every grant no test exercised, or when nothing was recorded.
//! `scripts/test` runs it after the whole suite.

use std::path::PathBuf;
use std::process::ExitCode;

use imagehook_tests::calls::{calls_dir, read_calls};
use imagehook_tests::iam::compare;
use imagehook_tests::workspace_root;

fn main() -> ExitCode {
    let mut template = workspace_root().join("template.yaml");
    let mut dir = calls_dir();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().map(PathBuf::from);
        match (arg.as_str(), value) {
            ("--template", Some(v)) => template = v,
            ("--calls", Some(v)) => dir = v,
            _ => {
                eprintln!("usage: iam-check [--template PATH] [--calls DIR]");
                return ExitCode::from(2);
            }
        }
    }
    let result = std::fs::read_to_string(&template)
        .map_err(|e| format!("{}: {e}", template.display()))
        .and_then(|text| Ok((text, read_calls(&dir)?)))
        .and_then(|(text, calls)| Ok((calls.len(), compare(&text, &calls)?)));
    let (recorded, report) = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("iam-check: {e}");
            return ExitCode::from(2);
        }
    };
    print!("{}", report.table());
    println!(
        "{recorded} distinct calls recorded in {} against {}",
        dir.display(),
        template.display()
    );
    if report.passed() {
        println!("least privilege: every call is granted and every grant is exercised");
        ExitCode::SUCCESS
    } else {
        eprintln!("least privilege: {} problems", report.problems.len());
        for p in &report.problems {
            eprintln!("  {p}");
        }
        ExitCode::FAILURE
    }
}
