//! `quickfreeze-man OUT_DIR`: writes the `quickfreeze` manual pages (one per command, section 1)
//! into OUT_DIR, generated from the same definitions as `--help`. Packaging runs it before
//! `cargo deb` (see `packaging/build-deb.sh`); it is not installed.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::CommandFactory;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(out_dir), None) = (args.next(), args.next()) else {
        eprintln!(
            "usage: quickfreeze-man OUT_DIR  (writes quickfreeze.1 and one page per command)"
        );
        return ExitCode::from(2);
    };
    let out_dir = PathBuf::from(out_dir);
    let result = std::fs::create_dir_all(&out_dir)
        .and_then(|()| clap_mangen::generate_to(quickfreeze_node::cli::Cli::command(), &out_dir));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}: {error}", out_dir.display());
            ExitCode::FAILURE
        }
    }
}
