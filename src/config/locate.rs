//! Finds where a JSON pointer's value sits in the config file text, so an
//! error can name the line and column. When the exact key is missing the
//! nearest enclosing table or object that exists is named instead.

use super::load::is_json;
use std::path::Path;

/// 1-based `(line, column)` of the key (or array item) at `pointer`.
pub fn position(path: &Path, text: &str, pointer: &str) -> Option<(usize, usize)> {
    let segments: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect();
    let offset = if is_json(path) {
        json_offset(text, &segments)
    } else {
        toml_offset(text, &segments)
    }?;
    Some(line_column(text, offset))
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

fn toml_offset(text: &str, segments: &[String]) -> Option<usize> {
    let doc = toml_edit::Document::parse(text).ok()?;
    let mut item = doc.as_item();
    // Set while inside one table of an array of tables ([[name]]).
    let mut in_table: Option<&toml_edit::Table> = None;
    let mut best = None;
    for segment in segments {
        let table = match in_table.take() {
            Some(table) => Some(table as &dyn toml_edit::TableLike),
            None => item.as_table_like(),
        };
        if let Some(table) = table {
            let Some((key, child)) = table.get_key_value(segment) else {
                return best;
            };
            best = key.span().map(|s| s.start).or(best);
            item = child;
        } else if let (Some(array), Ok(index)) = (item.as_array(), segment.parse::<usize>()) {
            return array
                .get(index)
                .and_then(|value| value.span())
                .map(|s| s.start)
                .or(best);
        } else if let (Some(tables), Ok(index)) =
            (item.as_array_of_tables(), segment.parse::<usize>())
        {
            let table = tables.get(index)?;
            best = table.span().map(|s| s.start).or(best);
            in_table = Some(table);
        } else {
            return best;
        }
    }
    best
}

/// Byte offset of the member key (or array item) at `segments` in JSON
/// text, found by a small scanner that skips over values it does not need.
fn json_offset(text: &str, segments: &[String]) -> Option<usize> {
    let mut scanner = Scanner {
        bytes: text.as_bytes(),
        at: 0,
    };
    let mut best = None;
    for segment in segments {
        scanner.skip_space();
        match scanner.peek()? {
            b'{' => match scanner.find_member(segment) {
                Some(key_at) => best = Some(key_at),
                None => return best,
            },
            b'[' => {
                let index = segment.parse::<usize>().ok()?;
                match scanner.find_item(index) {
                    Some(item_at) => best = Some(item_at),
                    None => return best,
                }
            }
            _ => return best,
        }
    }
    best
}

struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    /// At `{`: moves to the value of member `name`; returns the key's offset.
    fn find_member(&mut self, name: &str) -> Option<usize> {
        self.at += 1;
        loop {
            self.skip_space();
            if self.peek()? == b'}' {
                return None;
            }
            let key_at = self.at;
            let key = self.string()?;
            self.skip_space();
            (self.peek()? == b':').then_some(())?;
            self.at += 1;
            self.skip_space();
            if key == name {
                return Some(key_at);
            }
            self.skip_value()?;
            self.skip_space();
            if self.peek()? == b',' {
                self.at += 1;
            }
        }
    }

    /// At `[`: moves to item `index`; returns its offset.
    fn find_item(&mut self, index: usize) -> Option<usize> {
        self.at += 1;
        for i in 0.. {
            self.skip_space();
            if self.peek()? == b']' {
                return None;
            }
            if i == index {
                return Some(self.at);
            }
            self.skip_value()?;
            self.skip_space();
            if self.peek()? == b',' {
                self.at += 1;
            }
        }
        None
    }

    fn string(&mut self) -> Option<String> {
        let start = self.at;
        (self.peek()? == b'"').then_some(())?;
        self.at += 1;
        while self.peek()? != b'"' {
            self.at += if self.peek()? == b'\\' { 2 } else { 1 };
        }
        self.at += 1;
        serde_json::from_slice(&self.bytes[start..self.at]).ok()
    }

    fn skip_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            open @ (b'{' | b'[') => {
                let close = if open == b'{' { b'}' } else { b']' };
                self.at += 1;
                loop {
                    self.skip_space();
                    match self.peek()? {
                        b if b == close => {
                            self.at += 1;
                            return Some(());
                        }
                        b',' | b':' => self.at += 1,
                        _ => self.skip_value()?,
                    }
                }
            }
            _ => {
                while self
                    .peek()
                    .is_some_and(|b| !matches!(b, b',' | b'}' | b']') && !b.is_ascii_whitespace())
                {
                    self.at += 1;
                }
                Some(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_toml_keys_and_falls_back_to_the_table() {
        let text = "# c\n[gateway]\nport = 1\n\n[gateway.auth]\nmode = \"x\"\n";
        let p = Path::new("c.toml");
        assert_eq!(position(p, text, "/gateway/port"), Some((3, 1)));
        assert_eq!(position(p, text, "/gateway/auth/mode"), Some((6, 1)));
        assert_eq!(
            position(p, text, "/gateway/auth/nope").map(|p| p.0),
            Some(5)
        );
    }

    #[test]
    fn finds_json_members_and_items() {
        let text =
            "{\n  \"gateway\": {\n    \"port\": 1,\n    \"allowedOrigins\": [\"a\", 2]\n  }\n}\n";
        let p = Path::new("c.json");
        assert_eq!(position(p, text, "/gateway/port"), Some((3, 5)));
        assert_eq!(
            position(p, text, "/gateway/allowedOrigins/1"),
            Some((4, 29))
        );
    }
}
