//! A small multi-line text editor for the compose form: enough to fill in a TOML template over
//! SSH (insert, delete, move by character, line and page, paste), nothing more.
//!
//! The cursor column counts characters, not bytes, so multi-byte text (names in any script) never
//! splits a character.

/// Lines of text and a cursor.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Editor {
    lines: Vec<String>,
    row: usize,
    col: usize,
    /// First line shown; kept so the cursor stays in view.
    top: usize,
}

/// Longest text the editor accepts, in bytes (a form is a few KiB; a paste of a whole disk image
/// must not freeze the console).
pub const MAX_EDITOR_BYTES: usize = 256 * 1024;

impl Editor {
    /// An editor holding `text`, cursor at the start.
    pub fn new(text: &str) -> Editor {
        let mut editor = Editor {
            lines: vec![String::new()],
            ..Editor::default()
        };
        editor.insert_str(text);
        editor.row = 0;
        editor.col = 0;
        editor.top = 0;
        editor
    }

    /// The whole text, lines joined with `\n`.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// The lines.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// Cursor line (0-based).
    pub fn row(&self) -> usize {
        self.row
    }

    /// Cursor column in characters (0-based).
    pub fn col(&self) -> usize {
        self.col
    }

    /// First visible line.
    pub fn top(&self) -> usize {
        self.top
    }

    fn len_bytes(&self) -> usize {
        self.lines.iter().map(|line| line.len() + 1).sum()
    }

    fn line_chars(&self, row: usize) -> usize {
        self.lines.get(row).map_or(0, |line| line.chars().count())
    }

    fn byte_at(line: &str, col: usize) -> usize {
        line.char_indices()
            .nth(col)
            .map_or(line.len(), |(index, _)| index)
    }

    /// Inserts one character at the cursor (`\n` splits the line). Control characters other than
    /// newline and tab are dropped: they have no place in a form.
    pub fn insert(&mut self, ch: char) {
        if self.len_bytes() + ch.len_utf8() > MAX_EDITOR_BYTES {
            return;
        }
        match ch {
            '\n' => {
                let line = &mut self.lines[self.row];
                let at = Self::byte_at(line, self.col);
                let rest = line.split_off(at);
                self.lines.insert(self.row + 1, rest);
                self.row += 1;
                self.col = 0;
            }
            '\t' => {
                self.insert(' ');
                self.insert(' ');
            }
            '\r' => {}
            ch if ch.is_control() => {}
            ch => {
                let line = &mut self.lines[self.row];
                let at = Self::byte_at(line, self.col);
                line.insert(at, ch);
                self.col += 1;
            }
        }
    }

    /// Inserts text at the cursor (a paste); `\r\n` and `\r` count as line breaks. Linear in the
    /// size of the text; whatever would pass [`MAX_EDITOR_BYTES`] is dropped.
    pub fn insert_str(&mut self, text: &str) {
        let mut room = MAX_EDITOR_BYTES.saturating_sub(self.len_bytes());
        let text = text.replace("\r\n", "\n").replace('\r', "\n");
        let line = &mut self.lines[self.row];
        let at = Self::byte_at(line, self.col);
        let after = line.split_off(at);
        let mut pieces: Vec<String> = vec![std::mem::take(line)];
        let mut col = self.col;
        for ch in text.chars() {
            let ch = if ch == '\t' { ' ' } else { ch };
            if ch.len_utf8() > room {
                break;
            }
            if ch == '\n' {
                pieces.push(String::new());
                col = 0;
                room -= 1;
            } else if !ch.is_control() {
                if let Some(last) = pieces.last_mut() {
                    last.push(ch);
                }
                col += 1;
                room -= ch.len_utf8();
            }
        }
        let added = pieces.len() - 1;
        if let Some(last) = pieces.last_mut() {
            last.push_str(&after);
        }
        self.lines.splice(self.row..=self.row, pieces);
        self.row += added;
        self.col = col;
    }

    /// Deletes the character before the cursor, joining lines at the start of one.
    pub fn backspace(&mut self) {
        if self.col > 0 {
            let line = &mut self.lines[self.row];
            let at = Self::byte_at(line, self.col - 1);
            line.remove(at);
            self.col -= 1;
        } else if self.row > 0 {
            let line = self.lines.remove(self.row);
            self.row -= 1;
            self.col = self.line_chars(self.row);
            self.lines[self.row].push_str(&line);
        }
    }

    /// Deletes the character under the cursor, joining the next line at the end of one.
    pub fn delete(&mut self) {
        let chars = self.line_chars(self.row);
        if self.col < chars {
            let line = &mut self.lines[self.row];
            let at = Self::byte_at(line, self.col);
            line.remove(at);
        } else if self.row + 1 < self.lines.len() {
            let next = self.lines.remove(self.row + 1);
            self.lines[self.row].push_str(&next);
        }
    }

    /// Moves left, wrapping to the end of the previous line.
    pub fn left(&mut self) {
        if self.col > 0 {
            self.col -= 1;
        } else if self.row > 0 {
            self.row -= 1;
            self.col = self.line_chars(self.row);
        }
    }

    /// Moves right, wrapping to the start of the next line.
    pub fn right(&mut self) {
        if self.col < self.line_chars(self.row) {
            self.col += 1;
        } else if self.row + 1 < self.lines.len() {
            self.row += 1;
            self.col = 0;
        }
    }

    /// Moves `count` lines up (negative) or down, keeping the column where the line allows.
    pub fn vertical(&mut self, count: isize) {
        let last = self.lines.len().saturating_sub(1);
        self.row = self.row.saturating_add_signed(count).min(last);
        self.col = self.col.min(self.line_chars(self.row));
    }

    /// Start of the line.
    pub fn home(&mut self) {
        self.col = 0;
    }

    /// End of the line.
    pub fn end(&mut self) {
        self.col = self.line_chars(self.row);
    }

    /// Puts the cursor on `row` (0-based), column 0.
    pub fn goto_line(&mut self, row: usize) {
        self.row = row.min(self.lines.len().saturating_sub(1));
        self.col = 0;
    }

    /// Scrolls so the cursor is inside a window of `height` lines.
    pub fn keep_visible(&mut self, height: usize) {
        let height = height.max(1);
        if self.row < self.top {
            self.top = self.row;
        } else if self.row >= self.top + height {
            self.top = self.row + 1 - height;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typing_moving_and_deleting() {
        let mut editor = Editor::new("ab\ncd");
        editor.right();
        editor.insert('X');
        assert_eq!(editor.text(), "aXb\ncd");
        editor.end();
        editor.right(); // wraps to line 2
        assert_eq!((editor.row(), editor.col()), (1, 0));
        editor.backspace(); // joins
        assert_eq!(editor.text(), "aXbcd");
        editor.insert('\n');
        assert_eq!(editor.text(), "aXb\ncd");
        editor.vertical(-5);
        editor.end();
        editor.delete(); // joins the next line
        assert_eq!(editor.text(), "aXbcd");
    }

    #[test]
    fn multibyte_text_is_edited_by_character() {
        let mut editor = Editor::new("Ιωάννης");
        editor.end();
        editor.backspace();
        editor.insert('ς');
        editor.home();
        editor.delete();
        assert_eq!(editor.text(), "ωάννης");
    }

    #[test]
    fn control_characters_are_dropped_and_size_is_capped() {
        let mut editor = Editor::new("");
        editor.insert_str("a\u{1b}[2Jb\r\nc\u{7}");
        assert_eq!(editor.text(), "a[2Jb\nc");
        let mut editor = Editor::new("");
        editor.insert_str(&"x".repeat(MAX_EDITOR_BYTES * 2));
        assert!(editor.text().len() <= MAX_EDITOR_BYTES);
    }

    #[test]
    fn the_window_follows_the_cursor() {
        let mut editor = Editor::new(&"line\n".repeat(50));
        editor.vertical(30);
        editor.keep_visible(10);
        assert_eq!(editor.top(), 21);
        editor.vertical(-25);
        editor.keep_visible(10);
        assert_eq!(editor.top(), 5);
    }
}
