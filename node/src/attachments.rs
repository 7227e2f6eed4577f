//! Attachments as files: reading the files an officer attaches to a request (`send --attach`)
//! into payload attachments, and writing a received request's attachments into a directory
//! under safe names (`show --save-attachments`, the console's save key).
//!
//! Names from a peer are hostile until proven otherwise: [`safe_file_name`] turns any name into a
//! single path component that is not hidden, not reserved on Windows, has no control or
//! direction-changing characters, and is not too long. [`save_all`] checks every digest before it
//! writes anything, never overwrites a file (a taken name gets ` (2)`, ` (3)`, ...), and never
//! follows a symbolic link out of the directory.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use quickfreeze_keys::Digest32;
use quickfreeze_proto::payload::{
    Attachment, MAX_ATTACHMENTS, MAX_ATTACHMENTS_TOTAL_BYTES, MAX_ATTACHMENT_BYTES,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Longest file name written, in UTF-8 bytes (most file systems allow 255).
pub const MAX_SAVED_NAME_BYTES: usize = 120;
/// Most ` (N)` variants tried for one taken name before giving up.
const MAX_NAME_VARIANTS: usize = 1000;

/// Names Windows reserves for devices, whatever the extension.
const WINDOWS_RESERVED: [&str; 22] = [
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// Media types by file extension (lower case). Anything else is sniffed from the content.
const MEDIA_TYPES: [(&str, &str); 22] = [
    ("csv", "text/csv"),
    ("txt", "text/plain"),
    ("log", "text/plain"),
    ("md", "text/markdown"),
    ("json", "application/json"),
    ("xml", "application/xml"),
    ("html", "text/html"),
    ("htm", "text/html"),
    ("eml", "message/rfc822"),
    ("pdf", "application/pdf"),
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("gif", "image/gif"),
    ("webp", "image/webp"),
    ("zip", "application/zip"),
    ("gz", "application/gzip"),
    ("7z", "application/x-7z-compressed"),
    ("pcap", "application/vnd.tcpdump.pcap"),
    ("pcapng", "application/vnd.tcpdump.pcap"),
    (
        "docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ),
    (
        "xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ),
];

/// Leading bytes of common binary formats, for files whose extension says nothing.
const MAGIC: [(&[u8], &str); 7] = [
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"PK\x03\x04", "application/zip"),
    (b"\x1f\x8b", "application/gzip"),
    (b"\xd4\xc3\xb2\xa1", "application/vnd.tcpdump.pcap"),
];

/// The media type of a file: from its extension, else from its first bytes, else `text/plain`
/// for UTF-8 text without NUL bytes, else `application/octet-stream`.
pub fn media_type(name: &str, bytes: &[u8]) -> &'static str {
    let extension = name
        .rsplit_once('.')
        .map(|(_, extension)| extension.to_ascii_lowercase());
    if let Some(extension) = extension {
        if let Some((_, media)) = MEDIA_TYPES.iter().find(|(known, _)| *known == extension) {
            return media;
        }
    }
    if let Some((_, media)) = MAGIC.iter().find(|(magic, _)| bytes.starts_with(magic)) {
        return media;
    }
    if !bytes.contains(&0) && std::str::from_utf8(bytes).is_ok() {
        "text/plain"
    } else {
        "application/octet-stream"
    }
}

/// Characters that change text direction or hide themselves: a name like `invoice\u{202E}fdp.exe`
/// would display as `invoiceexe.pdf`.
fn is_invisible_or_bidi(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// One safe path component for `name`: the last component of any path, control, direction and
/// Windows-forbidden characters replaced by `_`, no leading dots (nothing hidden, never `..`),
/// no trailing dots or spaces, Windows device names prefixed with `_`, cut to
/// [`MAX_SAVED_NAME_BYTES`] keeping the extension, and `attachment` when nothing is left.
pub fn safe_file_name(name: &str) -> String {
    let last = name
        .split(['/', '\\'])
        .rfind(|part| !part.trim().is_empty())
        .unwrap_or("");
    let replaced: String = last
        .chars()
        .map(|c| {
            if c.is_control() || is_invisible_or_bidi(c) || "<>:\"|?*".contains(c) {
                '_'
            } else {
                c
            }
        })
        .collect();
    let trimmed = replaced
        .trim_start_matches(|c: char| c == '.' || c.is_whitespace())
        .trim_end_matches(|c: char| c == '.' || c.is_whitespace());
    let mut safe = if trimmed.is_empty() {
        String::from("attachment")
    } else {
        trimmed.to_string()
    };
    let stem = safe.split('.').next().unwrap_or("").trim_end();
    if WINDOWS_RESERVED
        .iter()
        .any(|reserved| reserved.eq_ignore_ascii_case(stem))
    {
        safe.insert(0, '_');
    }
    shorten(&safe, MAX_SAVED_NAME_BYTES)
}

/// Cuts `name` to at most `limit` bytes on a character boundary, keeping a short extension.
fn shorten(name: &str, limit: usize) -> String {
    if name.len() <= limit {
        return name.to_string();
    }
    let (stem, extension) = match name.rsplit_once('.') {
        Some((stem, extension)) if !stem.is_empty() && extension.len() <= 16 => {
            (stem, format!(".{extension}"))
        }
        _ => (name, String::new()),
    };
    let mut cut = String::new();
    for c in stem.chars() {
        if cut.len() + c.len_utf8() + extension.len() > limit {
            break;
        }
        cut.push(c);
    }
    format!("{}{extension}", cut.trim_end())
}

/// `name` with ` (n)` before its extension: `log.csv` → `log (2).csv`.
fn variant(name: &str, n: usize) -> String {
    let suffix = format!(" ({n})");
    let (stem, extension) = match name.rsplit_once('.') {
        Some((stem, extension)) if !stem.is_empty() => (stem, format!(".{extension}")),
        _ => (name, String::new()),
    };
    let stem = shorten(stem, MAX_SAVED_NAME_BYTES - suffix.len() - extension.len());
    format!("{stem}{suffix}{extension}")
}

/// Reads the files for `send --attach` into attachments, with their base name (made safe),
/// media type and SHA-256. `already` is the number of attachments the form itself carries.
/// Refuses, naming the limit, more than [`MAX_ATTACHMENTS`] files, a file over
/// [`MAX_ATTACHMENT_BYTES`], all files together over [`MAX_ATTACHMENTS_TOTAL_BYTES`], and
/// anything that is not a regular file.
pub fn read_files(paths: &[PathBuf], already: usize) -> Result<Vec<Attachment>> {
    if paths.len() + already > MAX_ATTACHMENTS {
        bail!(
            "{} attachments ({} from --attach, {already} in the form); a request may carry at \
             most {MAX_ATTACHMENTS}: pack related files into one archive or send a follow-up",
            paths.len() + already,
            paths.len()
        );
    }
    let mut total = 0usize;
    let mut attachments = Vec::with_capacity(paths.len());
    for path in paths {
        let shown = path.display();
        let metadata =
            fs::metadata(path).with_context(|| format!("--attach {shown}: cannot read"))?;
        if !metadata.is_file() {
            bail!("--attach {shown}: not a regular file; attach files one by one");
        }
        if metadata.len() > MAX_ATTACHMENT_BYTES as u64 {
            bail!(
                "--attach {shown}: {} bytes; one attachment may have at most \
                 {MAX_ATTACHMENT_BYTES} bytes (256 KiB): send an extract, or compress it",
                metadata.len()
            );
        }
        let mut bytes = Vec::with_capacity(metadata.len() as usize);
        File::open(path)
            .with_context(|| format!("--attach {shown}: cannot open"))?
            .take(MAX_ATTACHMENT_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("--attach {shown}: cannot read"))?;
        if bytes.len() > MAX_ATTACHMENT_BYTES {
            bail!("--attach {shown}: grew past {MAX_ATTACHMENT_BYTES} bytes while being read");
        }
        total += bytes.len();
        if total > MAX_ATTACHMENTS_TOTAL_BYTES {
            bail!(
                "--attach: the files hold more than {MAX_ATTACHMENTS_TOTAL_BYTES} bytes together \
                 (768 KiB, the limit for all attachments of one request; reached at {shown}): \
                 send fewer or smaller files"
            );
        }
        let raw_name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = safe_file_name(&raw_name);
        let media = media_type(&name, &bytes);
        attachments.push(Attachment::new(name, media, bytes));
    }
    Ok(attachments)
}

/// Where one attachment was written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Saved {
    /// The name the sender gave.
    pub original_name: String,
    /// The file written.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: usize,
    /// Its media type, as the sender declared it.
    pub media_type: String,
    /// Its SHA-256, checked before writing.
    pub sha256: String,
}

fn sha256(bytes: &[u8]) -> Digest32 {
    Digest32(Sha256::digest(bytes).into())
}

/// Writes every attachment into `dir` (created if missing) under a safe, unused name. Checks
/// every digest first and writes nothing if one does not match. Never overwrites: a taken name
/// gets ` (2)`, ` (3)`, ...; files are created with `O_EXCL | O_NOFOLLOW`, so a symbolic link
/// planted in `dir` is never followed.
pub fn save_all(dir: &Path, attachments: &[Attachment]) -> Result<Vec<Saved>> {
    for (index, attachment) in attachments.iter().enumerate() {
        let actual = sha256(&attachment.bytes);
        if actual != attachment.sha256 {
            bail!(
                "attachment {} ({}) does not match its SHA-256 (declared {}, content {actual}); \
                 nothing was saved: ask the sender to send it again",
                index + 1,
                safe_file_name(&attachment.name),
                attachment.sha256
            );
        }
    }
    fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let metadata = fs::metadata(dir).with_context(|| format!("{}: cannot read", dir.display()))?;
    if !metadata.is_dir() {
        bail!(
            "{}: not a directory; name a directory to save into",
            dir.display()
        );
    }
    let mut used = BTreeSet::new();
    let mut saved = Vec::with_capacity(attachments.len());
    for attachment in attachments {
        let base = safe_file_name(&attachment.name);
        let (path, mut file) = create_unused(dir, &base, &mut used)?;
        let written = file
            .write_all(&attachment.bytes)
            .and_then(|()| file.sync_all());
        if let Err(error) = written {
            let _ = fs::remove_file(&path);
            return Err(anyhow!("{}: cannot write: {error}", path.display()));
        }
        saved.push(Saved {
            original_name: attachment.name.clone(),
            path,
            bytes: attachment.bytes.len(),
            media_type: attachment.media_type.clone(),
            sha256: attachment.sha256.to_string(),
        });
    }
    Ok(saved)
}

/// Creates a new file for `base` (or its first free ` (n)` variant) in `dir`.
fn create_unused(dir: &Path, base: &str, used: &mut BTreeSet<String>) -> Result<(PathBuf, File)> {
    for n in 1..=MAX_NAME_VARIANTS {
        let name = if n == 1 {
            base.to_string()
        } else {
            variant(base, n)
        };
        // Names that differ only in case collide on some file systems (and when copied on).
        if !used.insert(name.to_lowercase()) {
            continue;
        }
        let path = dir.join(&name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(file) => return Ok((path, file)),
            Err(error) if error.kind() == ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(anyhow!("{}: cannot create: {error}", path.display())),
        }
    }
    bail!(
        "{}: {MAX_NAME_VARIANTS} files named like {base} already exist; save into an empty directory",
        dir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_become_one_safe_component() {
        let cases = [
            ("../x", "x"),
            ("../../etc/passwd", "passwd"),
            ("/etc/shadow", "shadow"),
            ("C:\\Windows\\system32\\evil.dll", "evil.dll"),
            ("..", "attachment"),
            (".", "attachment"),
            ("", "attachment"),
            ("   ", "attachment"),
            (".bashrc", "bashrc"),
            ("nul\0byte.txt", "nul_byte.txt"),
            ("line\nbreak\r.csv", "line_break_.csv"),
            ("\u{1b}[31mred.txt", "_[31mred.txt"),
            ("invoice\u{202E}fdp.exe", "invoice_fdp.exe"),
            ("CON", "_CON"),
            ("con.txt", "_con.txt"),
            ("LPT9.log", "_LPT9.log"),
            ("console.txt", "console.txt"),
            ("trailing dots...", "trailing dots"),
            ("a<b>c:d\"e|f?g*h.txt", "a_b_c_d_e_f_g_h.txt"),
            ("Протокол допроса.pdf", "Протокол допроса.pdf"),
        ];
        for (hostile, expected) in cases {
            assert_eq!(safe_file_name(hostile), expected, "{hostile:?}");
        }
        let long = format!("{}.csv", "é".repeat(300));
        let safe = safe_file_name(&long);
        assert!(safe.len() <= MAX_SAVED_NAME_BYTES, "{}", safe.len());
        assert!(safe.ends_with(".csv"));
        assert_eq!(variant("log.csv", 2), "log (2).csv");
        assert!(variant(&safe, 999).len() <= MAX_SAVED_NAME_BYTES);
    }

    #[test]
    fn media_types_come_from_the_extension_then_the_content() {
        assert_eq!(media_type("x.CSV", b"a,b"), "text/csv");
        assert_eq!(media_type("scan", b"%PDF-1.7 ..."), "application/pdf");
        assert_eq!(media_type("notes", b"plain words"), "text/plain");
        assert_eq!(
            media_type("blob", &[0, 159, 146, 150]),
            "application/octet-stream"
        );
    }

    fn attachment(name: &str, content: &[u8]) -> Attachment {
        Attachment::new(name, "text/plain", content.to_vec())
    }

    #[test]
    fn hostile_names_are_saved_inside_the_directory_without_overwriting() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("saved");
        fs::create_dir(&dir).expect("mkdir");
        fs::write(dir.join("x"), b"was here first").expect("existing file");
        // A symbolic link planted where a name will land must not be followed out of `dir`.
        let outside = root.path().join("outside.txt");
        std::os::unix::fs::symlink(&outside, dir.join("report.txt")).expect("symlink");
        let list = vec![
            attachment("../x", b"one"),
            attachment("/tmp/x", b"two"),
            attachment("X", b"three"),
            attachment("report.txt", b"four"),
            attachment("CON", b"five"),
            attachment(&"a".repeat(400), b"six"),
        ];
        let saved = save_all(&dir, &list).expect("saved");
        assert_eq!(saved.len(), list.len());
        for (entry, original) in saved.iter().zip(&list) {
            assert_eq!(entry.path.parent(), Some(dir.as_path()), "{entry:?}");
            assert_eq!(fs::read(&entry.path).expect("read"), original.bytes);
        }
        let names: Vec<String> = saved
            .iter()
            .map(|entry| {
                entry
                    .path
                    .file_name()
                    .expect("present")
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(
            names[..5],
            ["x (2)", "x (3)", "X (4)", "report (2).txt", "_CON"]
        );
        assert_eq!(fs::read(dir.join("x")).expect("present"), b"was here first");
        assert!(!outside.exists(), "the symbolic link was followed");
        // Saving again never overwrites: every file gets a new name.
        let again = save_all(&dir, &list[..1]).expect("again");
        let again_name = again[0]
            .path
            .file_name()
            .expect("present")
            .to_string_lossy()
            .into_owned();
        assert!(!names.contains(&again_name), "{again_name} was overwritten");
        for (entry, original) in saved.iter().zip(&list) {
            assert_eq!(fs::read(&entry.path).expect("read"), original.bytes);
        }
    }

    #[test]
    fn a_digest_mismatch_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = attachment("good.txt", b"fine");
        let mut bad = attachment("bad.txt", b"original");
        bad.bytes = b"tampered".to_vec();
        let error = save_all(dir.path(), &[good, bad]).expect_err("mismatch");
        assert!(
            error.to_string().contains("does not match its SHA-256"),
            "{error}"
        );
        assert_eq!(fs::read_dir(dir.path()).expect("present").count(), 0);
    }

    #[test]
    fn reading_names_each_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let small = dir.path().join("..hidden log.csv");
        fs::write(&small, b"a,b\n1,2\n").expect("write");
        let read = read_files(std::slice::from_ref(&small), 0).expect("read");
        assert_eq!(read[0].name, "hidden log.csv");
        assert_eq!(read[0].media_type, "text/csv");
        assert_eq!(read[0].sha256, sha256(b"a,b\n1,2\n"));

        let big = dir.path().join("big.bin");
        fs::write(&big, vec![1u8; MAX_ATTACHMENT_BYTES + 1]).expect("write");
        let error = read_files(&[big], 0).expect_err("too big").to_string();
        assert!(error.contains(&MAX_ATTACHMENT_BYTES.to_string()), "{error}");

        let many = vec![small.clone(); MAX_ATTACHMENTS];
        let error = read_files(&many, 1).expect_err("too many").to_string();
        assert!(error.contains("at most 8"), "{error}");

        let part = dir.path().join("part.bin");
        fs::write(&part, vec![2u8; MAX_ATTACHMENT_BYTES]).expect("write");
        let error = read_files(&[part.clone(), part.clone(), part.clone(), part], 0)
            .expect_err("total")
            .to_string();
        assert!(
            error.contains(&MAX_ATTACHMENTS_TOTAL_BYTES.to_string()),
            "{error}"
        );

        let error = read_files(&[dir.path().to_path_buf()], 0)
            .expect_err("dir")
            .to_string();
        assert!(error.contains("not a regular file"), "{error}");
    }
}
