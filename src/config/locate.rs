//! Finds where a JSON pointer's value sits in the config file text, so an
//! error can name the line and column. When the exact key is missing the
//! nearest enclosing table or object that exists is named instead.

use super::load::is_json;
use std::ops::Range;
use std::path::Path;

/// Where the value at a JSON pointer sits in the file: byte ranges of its
/// key and of its value. When the pointer names something the file does
/// not hold, the nearest enclosing key that exists, with `exact` false.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Spans {
    pub key: Option<Range<usize>>,
    pub value: Option<Range<usize>>,
    pub exact: bool,
}

/// 1-based `(line, column)` of the key (or array item) at `pointer`.
pub fn position(path: &Path, text: &str, pointer: &str) -> Option<(usize, usize)> {
    let spans = spans(path, text, pointer)?;
    let start = spans.key.or(spans.value)?.start;
    Some(line_column(text, start))
}

/// The spans of the key and value at `pointer`.
pub fn spans(path: &Path, text: &str, pointer: &str) -> Option<Spans> {
    let segments: Vec<String> = crate::pointer::segments(pointer).collect();
    let spans = if is_json(path) {
        json_spans(text, &segments)
    } else {
        toml_spans(text, &segments)
    };
    (spans.key.is_some() || spans.value.is_some()).then_some(spans)
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The byte offset of a 1-based line and column (in characters), clamped
/// to the text.
pub fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let line_start = if line <= 1 {
        0
    } else {
        text.match_indices('\n')
            .nth(line - 2)
            .map_or(text.len(), |(i, _)| i + 1)
    };
    let rest = &text[line_start..];
    let in_line = rest
        .char_indices()
        .take_while(|(_, c)| *c != '\n')
        .nth(column.saturating_sub(1))
        .map_or_else(|| rest.find('\n').unwrap_or(rest.len()), |(i, _)| i);
    line_start + in_line
}

fn toml_spans(text: &str, segments: &[String]) -> Spans {
    let Ok(doc) = toml_edit::Document::parse(text) else {
        return Spans::default();
    };
    let mut item = doc.as_item();
    // Set while inside one table of an array of tables ([[name]]).
    let mut in_table: Option<&toml_edit::Table> = None;
    let mut best = Spans::default();
    for segment in segments {
        let table = match in_table.take() {
            Some(table) => Some(table as &dyn toml_edit::TableLike),
            None => item.as_table_like(),
        };
        if let Some(table) = table {
            let Some((key, child)) = table.get_key_value(segment) else {
                return best;
            };
            best = Spans {
                key: key.span().or(best.key),
                value: child.span(),
                exact: false,
            };
            item = child;
        } else if let (Some(array), Ok(index)) = (item.as_array(), segment.parse::<usize>()) {
            return match array.get(index).and_then(|value| value.span()) {
                Some(span) => Spans {
                    key: None,
                    value: Some(span),
                    exact: true,
                },
                None => best,
            };
        } else if let (Some(tables), Ok(index)) =
            (item.as_array_of_tables(), segment.parse::<usize>())
        {
            let Some(table) = tables.get(index) else {
                return best;
            };
            best = Spans {
                key: table.span().or(best.key),
                value: None,
                exact: false,
            };
            in_table = Some(table);
        } else {
            return best;
        }
    }
    best.exact = true;
    best
}

/// The spans of the member key (or array item) at `segments` in JSON
/// text, found by a small scanner that skips over values it does not need.
fn json_spans(text: &str, segments: &[String]) -> Spans {
    let mut scanner = Scanner {
        bytes: text.as_bytes(),
        at: 0,
    };
    let mut best = Spans::default();
    for segment in segments {
        scanner.skip_space();
        let key = match scanner.peek() {
            Some(b'{') => match scanner.find_member(segment) {
                Some(key) => Some(key),
                None => return best,
            },
            Some(b'[') => {
                let Some(index) = segment.parse::<usize>().ok() else {
                    return best;
                };
                if scanner.find_item(index).is_none() {
                    return best;
                }
                None
            }
            _ => return best,
        };
        let value_start = scanner.at;
        let mut end = Scanner {
            bytes: scanner.bytes,
            at: value_start,
        };
        let value = end.skip_value().map(|()| value_start..end.at);
        best = Spans {
            key,
            value,
            exact: false,
        };
    }
    best.exact = true;
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

    /// At `{`: moves to the value of member `name`; returns the key's span.
    fn find_member(&mut self, name: &str) -> Option<Range<usize>> {
        self.at += 1;
        loop {
            self.skip_space();
            if self.peek()? == b'}' {
                return None;
            }
            let key_at = self.at;
            let key = self.string()?;
            let key_end = self.at;
            self.skip_space();
            (self.peek()? == b':').then_some(())?;
            self.at += 1;
            self.skip_space();
            if key == name {
                return Some(key_at..key_end);
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
    fn spans_cover_the_value() {
        let text = "[gateway]\nport = \"x\"\n";
        let s = spans(Path::new("c.toml"), text, "/gateway/port").unwrap();
        assert_eq!(&text[s.value.unwrap()], "\"x\"");
        assert_eq!(&text[s.key.unwrap()], "port");
        let json = r#"{"gateway": {"port": [1, 2]}}"#;
        let s = spans(Path::new("c.json"), json, "/gateway/port").unwrap();
        assert_eq!(&json[s.value.unwrap()], "[1, 2]");
        let s = spans(Path::new("c.json"), json, "/gateway/port/1").unwrap();
        assert_eq!(&json[s.value.unwrap()], "2");
        assert!(s.exact);
        let s = spans(Path::new("c.json"), json, "/gateway/nope").unwrap();
        assert!(!s.exact);
        assert_eq!(offset_of(json, 1, 3), 2);
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
