//! Officer accounts of the web console: names and argon2 password hashes in one file in the data
//! directory (`officers.json`, mode 0600), managed with `quickfreeze officer add|remove|passwd`.
//!
//! Only the PHC hash string (argon2id, random salt) is stored, never the password. The file is
//! rewritten whole through a temporary file and a rename, so a crash leaves the old or the new
//! list, never half of one. A group- or world-readable file is refused, as the node's key file is.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use serde::{Deserialize, Serialize};

/// The file name in the data directory.
pub const OFFICERS_FILE: &str = "officers.json";
/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Longest password accepted (argon2 takes any length; this bounds the work per login).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Longest officer name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// The stored accounts.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Officers {
    /// Officer name → argon2 PHC hash string.
    pub officers: BTreeMap<String, String>,
}

/// The officers file of a data directory.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(OFFICERS_FILE)
}

/// Checks an officer name: 1 to 64 characters, letters (any script), digits, spaces and `.-_'`.
pub fn check_name(name: &str) -> Result<(), String> {
    let chars = name.chars().count();
    if name.trim() != name || chars == 0 {
        return Err("an officer name must not be empty or start or end with a space".into());
    }
    if chars > MAX_NAME_CHARS {
        return Err(format!(
            "an officer name has at most {MAX_NAME_CHARS} characters"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, ' ' | '.' | '-' | '_' | '\'')))
    {
        return Err(format!(
            "`{bad}` may not appear in an officer name; use letters, digits, spaces and . - _ '"
        ));
    }
    Ok(())
}

/// Checks a new password's length.
pub fn check_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "the password is too short: use at least {MIN_PASSWORD_CHARS} characters"
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!(
            "the password is too long: at most {MAX_PASSWORD_BYTES} bytes"
        ));
    }
    Ok(())
}

/// An argon2id hash (PHC string, random salt) of `password`.
pub fn hash_password(password: &str) -> Result<String> {
    let hash: PasswordHash = Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|error| anyhow::anyhow!("cannot hash the password: {error}"))?;
    Ok(hash.to_string())
}

/// Whether `password` matches the PHC string `hash`. A malformed hash never matches.
pub fn verify_password(hash: &str, password: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

impl Officers {
    /// Reads the officers file; a missing file is an empty list.
    pub fn load(data_dir: &Path) -> Result<Officers> {
        let path = path(data_dir);
        let metadata = match std::fs::metadata(&path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Officers::default())
            }
            Err(error) => {
                return Err(error).with_context(|| format!("cannot read {}", path.display()))
            }
        };
        if metadata.permissions().mode() & 0o077 != 0 {
            bail!(
                "{} can be read by other users; fix it with `chmod 600 {}`",
                path.display(),
                path.display()
            );
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is damaged; restore it from a backup or remove it and add the officers again",
                path.display()
            )
        })
    }

    /// Writes the file (mode 0600) through a temporary file and a rename.
    pub fn save(&self, data_dir: &Path) -> Result<()> {
        let path = path(data_dir);
        let temporary = data_dir.join(format!("{OFFICERS_FILE}.tmp"));
        let _ = std::fs::remove_file(&temporary);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)
            .with_context(|| format!("cannot write {}", temporary.display()))?;
        let text = serde_json::to_string_pretty(self)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path)
            .with_context(|| format!("cannot replace {}", path.display()))?;
        Ok(())
    }

    /// The hash stored for `name`.
    pub fn hash_of(&self, name: &str) -> Option<&str> {
        self.officers.get(name).map(String::as_str)
    }
}

/// Reads a password: from the terminal without echo (asked twice), or the first line of
/// standard input when it is not a terminal (for scripts).
pub fn read_new_password(name: &str) -> Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        let password = line.trim_end_matches(['\n', '\r']).to_string();
        check_password(&password).map_err(anyhow::Error::msg)?;
        return Ok(password);
    }
    let first = prompt_hidden(&format!("New password for {name}: "))?;
    check_password(&first).map_err(anyhow::Error::msg)?;
    let second = prompt_hidden("Repeat it: ")?;
    if first != second {
        bail!("the two passwords differ; nothing was changed");
    }
    Ok(first)
}

fn prompt_hidden(prompt: &str) -> Result<String> {
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    // `stty` switches echo off on the terminal that is our standard input; no unsafe termios.
    let echo_off = std::process::Command::new("stty")
        .arg("-echo")
        .stdin(std::process::Stdio::inherit())
        .status()
        .map(|status| status.success())
        .unwrap_or(false);
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if echo_off {
        let _ = std::process::Command::new("stty")
            .arg("echo")
            .stdin(std::process::Stdio::inherit())
            .status();
    }
    eprintln!();
    read.context("cannot read the password")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// `quickfreeze officer add NAME`.
pub fn add(data_dir: &Path, name: &str) -> Result<()> {
    check_name(name).map_err(anyhow::Error::msg)?;
    let mut officers = Officers::load(data_dir)?;
    if officers.officers.contains_key(name) {
        bail!("officer {name} already exists; use `quickfreeze officer passwd {name}` to change the password");
    }
    let password = read_new_password(name)?;
    officers
        .officers
        .insert(name.to_string(), hash_password(&password)?);
    officers.save(data_dir)?;
    eprintln!("officer {name} added to {}", path(data_dir).display());
    Ok(())
}

/// `quickfreeze officer passwd NAME`.
pub fn passwd(data_dir: &Path, name: &str) -> Result<()> {
    let mut officers = Officers::load(data_dir)?;
    if !officers.officers.contains_key(name) {
        bail!("there is no officer {name}; add one with `quickfreeze officer add {name}`");
    }
    let password = read_new_password(name)?;
    officers
        .officers
        .insert(name.to_string(), hash_password(&password)?);
    officers.save(data_dir)?;
    eprintln!(
        "password of officer {name} changed; their open web sessions end at the next request"
    );
    Ok(())
}

/// `quickfreeze officer remove NAME`.
pub fn remove(data_dir: &Path, name: &str) -> Result<()> {
    let mut officers = Officers::load(data_dir)?;
    if officers.officers.remove(name).is_none() {
        bail!("there is no officer {name}");
    }
    officers.save(data_dir)?;
    eprintln!("officer {name} removed; their open web sessions end at the next request");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("Ana Silva").is_ok());
        assert!(check_name("Zoë O'Brien-Ş").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name(" ana").is_err());
        assert!(check_name("ana<script>").is_err());
        assert!(check_name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn hashes_verify_only_the_right_password() {
        let hash = hash_password("correct horse battery").expect("hash");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password(&hash, "correct horse battery"));
        assert!(!verify_password(&hash, "correct horse battery!"));
        assert!(!verify_password("not a hash", "correct horse battery"));
    }

    #[test]
    fn the_file_is_private_and_refused_when_readable_by_others() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut officers = Officers::default();
        officers
            .officers
            .insert("ana".into(), hash_password("0123456789").expect("hash"));
        officers.save(dir.path()).expect("save");
        let mode = std::fs::metadata(path(dir.path()))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(Officers::load(dir.path()).expect("load"), officers);
        std::fs::set_permissions(path(dir.path()), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        let error = Officers::load(dir.path()).expect_err("refused").to_string();
        assert!(error.contains("chmod 600"), "{error}");
    }
}
