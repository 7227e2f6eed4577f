//! `quickfreeze`: parse the command line, set up logging, run the command. Nothing else.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = quickfreeze_node::cli::Cli::parse();
    quickfreeze_node::cli::init_tracing(&cli);
    match quickfreeze_node::cli::execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            if error
                .downcast_ref::<quickfreeze_node::cli::Damaged>()
                .is_some()
            {
                ExitCode::from(quickfreeze_node::cli::EXIT_DAMAGED)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
