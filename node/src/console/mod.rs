//! `quickfreeze console`: the duty officer's live terminal UI.
//!
//! Three parts, so that everything but the terminal and the socket can be tested:
//! - [`app`]: the state machine. Keys in, [`app::Command`]s out; daemon answers in.
//! - [`render`]: draws an [`app::App`] onto a ratatui frame.
//! - [`run`] (this file): the thin loop that owns the terminal and the control socket, refreshes
//!   every second, reconnects when the node restarts, and always gives the terminal back (on
//!   quit, on error and on panic).

pub mod app;
pub mod editor;
pub mod render;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use quickfreeze_keys::Timestamp;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event};
use ratatui::crossterm::{cursor, execute, terminal};
use ratatui::Terminal;

use crate::control::{ClientError, ControlClient, ControlRequest};
use app::{App, Command};

/// How often the lists refresh.
pub const REFRESH: Duration = Duration::from_secs(1);
/// How long one request to the daemon may take before the console gives up on the connection.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Puts the terminal back: raw mode off, main screen, cursor shown, paste mode off. Safe to call
/// more than once.
fn restore_terminal() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(
        std::io::stdout(),
        event::DisableBracketedPaste,
        terminal::LeaveAlternateScreen,
        cursor::Show
    );
}

/// Owns the terminal's special modes for as long as it lives.
struct TerminalGuard;

impl TerminalGuard {
    fn enter() -> Result<TerminalGuard> {
        // A panic anywhere restores the terminal before the message is printed.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            previous(info);
        }));
        terminal::enable_raw_mode().context("cannot switch the terminal to raw mode")?;
        let guard = TerminalGuard;
        execute!(
            std::io::stdout(),
            terminal::EnterAlternateScreen,
            event::EnableBracketedPaste
        )
        .context("cannot open the console screen")?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// The socket side of the loop: one connection, re-opened when it breaks.
struct Link {
    data_dir: PathBuf,
    client: Option<ControlClient>,
}

impl Link {
    fn client(&mut self, app: &mut App) -> Result<&mut ControlClient, ClientError> {
        if self.client.is_none() {
            match ControlClient::connect(&self.data_dir, REQUEST_TIMEOUT) {
                Ok(client) => {
                    app.connected(&client.node_id);
                    self.client = Some(client);
                }
                Err(error) => {
                    app.disconnected(&error.to_string());
                    return Err(error);
                }
            }
        }
        // Just set above when it was missing.
        self.client.as_mut().ok_or_else(|| {
            ClientError::Protocol("the connection to the node went away".to_string())
        })
    }

    /// Runs commands, and the commands their answers produce, until none are left.
    fn execute(&mut self, app: &mut App, commands: Vec<Command>) -> Result<()> {
        let mut queue: std::collections::VecDeque<Command> = commands.into();
        while let Some(command) = queue.pop_front() {
            match command {
                Command::Quit => {}
                Command::Bell => {
                    let mut stdout = std::io::stdout();
                    let _ = stdout.write_all(b"\x07");
                    let _ = stdout.flush();
                }
                Command::Request(request) => {
                    match self.send(app, &request) {
                        Ok(more) => queue.extend(more),
                        Err(error) => {
                            app.request_failed(&request, &error.to_string());
                            // One failed refresh is enough: skip the rest of this round.
                            if is_refresh(&request) {
                                queue.retain(|command| !matches!(command, Command::Request(r) if is_refresh(r)));
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn send(
        &mut self,
        app: &mut App,
        request: &ControlRequest,
    ) -> Result<Vec<Command>, ClientError> {
        let client = self.client(app)?;
        match client.request(request) {
            Ok(response) => Ok(app.apply(response)),
            Err(error) => {
                // The node restarted or hung: drop the connection; the next refresh reconnects.
                self.client = None;
                app.disconnected(&error.to_string());
                Err(error)
            }
        }
    }
}

fn is_refresh(request: &ControlRequest) -> bool {
    matches!(
        request,
        ControlRequest::Status
            | ControlRequest::Inbox { .. }
            | ControlRequest::Outbox { .. }
            | ControlRequest::InboxQuery { .. }
            | ControlRequest::OutboxQuery { .. }
            | ControlRequest::Peers
    )
}

/// Runs the console against the node whose data directory is `data_dir` until the officer quits.
pub fn run(data_dir: &Path, officer: &str, attachments_dir: PathBuf) -> Result<()> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "the console needs a terminal; for scripts use `quickfreeze inbox`, `outbox`, `show`, `ack` and `reply`"
        );
    }
    let mut app = App::new(officer);
    app.attachments_dir = attachments_dir;
    app.language = crate::config::configured_language(data_dir)?;
    let mut link = Link {
        data_dir: data_dir.to_path_buf(),
        client: None,
    };
    let guard = TerminalGuard::enter()?;
    let mut terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))
        .context("cannot draw on this terminal")?;
    let result = event_loop(&mut terminal, &mut app, &mut link);
    drop(terminal);
    drop(guard);
    result
}

fn event_loop(
    terminal: &mut Terminal<CrosstermBackend<std::io::Stdout>>,
    app: &mut App,
    link: &mut Link,
) -> Result<()> {
    let mut next_refresh = Instant::now();
    loop {
        if Instant::now() >= next_refresh {
            app.now = Timestamp::now();
            let commands = app.refresh();
            link.execute(app, commands)?;
            next_refresh = Instant::now() + REFRESH;
        }
        let size = terminal.size().context("cannot read the terminal size")?;
        app.size = (size.width, size.height);
        terminal
            .draw(|frame| render::render(app, frame))
            .context("cannot draw on the terminal")?;
        let wait = next_refresh.saturating_duration_since(Instant::now());
        if event::poll(wait).context("cannot read the keyboard")? {
            let commands = match event::read().context("cannot read the keyboard")? {
                Event::Key(key) => app.handle_key(key),
                Event::Paste(text) => app.paste(&text),
                _ => Vec::new(), // resize and the rest: redraw on the next turn
            };
            let quit = commands.iter().any(|c| matches!(c, Command::Quit));
            app.now = Timestamp::now();
            link.execute(app, commands)?;
            if quit || app.should_quit() {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests;
