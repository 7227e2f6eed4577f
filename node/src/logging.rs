//! Log setup for every `quickfreeze` command: human text or JSON lines on stderr, with colour
//! only when stderr is a terminal, so that journald, log files and pipes get plain bytes.
//!
//! When stderr is the journal (`JOURNAL_STREAM` names it) the text format leaves out its own
//! timestamp: journald stamps every line already. JSON lines always carry a timestamp, the level, the target and the
//! event's fields at the top level, one object per line, for log shippers.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Whether text logs may carry ANSI colour: only on a terminal, and never with `NO_COLOR` set
/// (<https://no-color.org>).
pub fn colour_allowed(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|value| value.is_empty())
}

/// Whether stderr is connected to journald: `JOURNAL_STREAM` (set by systemd) names the device
/// and inode of stderr, as systemd.exec(5) says to check, so a redirected stderr still gets
/// timestamps.
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((device, inode)) = stream.to_str().and_then(|text| text.split_once(':')) else {
        return false;
    };
    let metadata = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .and_then(|file| file.metadata());
    match metadata {
        Ok(metadata) => device.parse() == Ok(metadata.dev()) && inode.parse() == Ok(metadata.ino()),
        Err(_) => false,
    }
}

/// Installs the global subscriber. `filter` is an explicit filter (`--log`); without it,
/// `RUST_LOG` is used, and without that `default_filter` (such as `info`). Fails only if a
/// subscriber is already installed.
pub fn init(format: LogFormat, filter: Option<&str>, default_filter: &str) -> Result<(), String> {
    // Lenient, as before: a directive that does not parse is reported by tracing and skipped.
    let mut filter = match filter {
        Some(filter) => EnvFilter::new(filter),
        None => {
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter))
        }
    };
    // libp2p lines a peer could trigger once per frame are kept out; the network counts and
    // summarises those events itself.
    for directive in crate::network::LOG_FILTER_DIRECTIVES {
        if let Ok(directive) = directive.parse() {
            filter = filter.add_directive(directive);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => {
            let ansi = colour_allowed(
                std::io::stderr().is_terminal(),
                std::env::var_os("NO_COLOR").as_deref(),
            );
            let builder = builder.with_ansi(ansi);
            if stderr_is_journal() {
                builder.without_time().try_init()
            } else {
                builder.try_init()
            }
        }
    };
    result.map_err(|error| format!("cannot set up logging: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour_allowed(true, None));
        assert!(!colour_allowed(false, None));
        assert!(!colour_allowed(true, Some(std::ffi::OsStr::new("1"))));
        // An empty NO_COLOR does not count, as the convention says.
        assert!(colour_allowed(true, Some(std::ffi::OsStr::new(""))));
    }
}
