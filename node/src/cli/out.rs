//! Standard output for every command: `outln!`/`out!` instead of `println!`/`print!`.
//!
//! `println!` panics when stdout is a closed pipe (`quickfreeze send … --wait | head -1`), with
//! exit status 101 after the request was accepted, so a script would retry and send it twice.
//! Here a closed stdout only means "stop writing": later output is dropped and the command ends
//! with the result it had.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once stdout turned out to be closed (or otherwise unwritable).
static STDOUT_GONE: AtomicBool = AtomicBool::new(false);

/// Writes to stdout unless it is gone; never panics.
pub(crate) fn write(arguments: std::fmt::Arguments<'_>, newline: bool) {
    if STDOUT_GONE.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_fmt(arguments)
        .and_then(|()| {
            if newline {
                stdout.write_all(b"\n")
            } else {
                Ok(())
            }
        })
        .and_then(|()| stdout.flush());
    if let Err(error) = written {
        STDOUT_GONE.store(true, Ordering::Relaxed);
        if error.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("warning: cannot write to standard output ({error}); output stops here");
        }
    }
}

/// `println!` that treats a closed stdout as "stop writing".
macro_rules! outln {
    () => {
        $crate::cli::out::write(format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::cli::out::write(format_args!($($arg)*), true)
    };
}

/// `print!` that treats a closed stdout as "stop writing".
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::out::write(format_args!($($arg)*), false)
    };
}
