//! Log setup for every `quickfreeze` command: human text or JSON lines on stderr, with colour
//! only when stderr is a terminal, so that journald, log files and pipes get plain bytes.
//!
//! Under systemd (`JOURNAL_STREAM` set) the text format leaves out its own timestamp: journald
//! stamps every line already. JSON lines always carry a timestamp, the level, the target and the
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

/// Installs the global subscriber. `filter` is an explicit filter (`--log`); without it,
/// `RUST_LOG` is used, and without that `default_filter` (such as `info`). Fails if the filter
/// does not parse or a subscriber is already installed.
pub fn init(format: LogFormat, filter: Option<&str>, default_filter: &str) -> Result<(), String> {
    let filter = match filter {
        Some(filter) => EnvFilter::try_new(filter).map_err(|error| {
            format!(
                "--log `{filter}`: {error}; use a level such as `info` or `quickfreeze_node=debug`"
            )
        })?,
        None => {
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter))
        }
    };
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
            if std::env::var_os("JOURNAL_STREAM").is_some() {
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
