//! A JSON5 reader (the format of OpenClaw's openclaw.json): JSON plus
//! comments, trailing commas, unquoted keys, single-quoted strings, hex
//! numbers, leading or trailing decimal points and a leading `+`.
//! Values JSON cannot hold (NaN, Infinity) are refused.

use serde_json::{Map, Number, Value};

/// Nesting deeper than this is refused rather than risking the stack.
const MAX_DEPTH: usize = 128;

/// Where reading stopped, and why.
#[derive(Debug, PartialEq)]
pub struct Error {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

pub fn parse(text: &str) -> Result<Value, Error> {
    let mut reader = Reader {
        chars: text.char_indices().collect(),
        at: 0,
        text,
    };
    reader.skip_blank()?;
    let value = reader.value(0)?;
    reader.skip_blank()?;
    if reader.peek().is_some() {
        return Err(reader.error("more after the end of the document"));
    }
    Ok(value)
}

struct Reader<'a> {
    chars: Vec<(usize, char)>,
    at: usize,
    text: &'a str,
}

impl Reader<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).map(|(_, c)| *c)
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        self.at += 1;
        c
    }

    fn error(&self, message: impl Into<String>) -> Error {
        let offset = self.chars.get(self.at).map_or(self.text.len(), |(i, _)| *i);
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Error {
            line,
            column,
            message: message.into(),
        }
    }

    fn expect(&mut self, wanted: char) -> Result<(), Error> {
        match self.peek() {
            Some(c) if c == wanted => {
                self.at += 1;
                Ok(())
            }
            Some(c) => Err(self.error(format!("expected {wanted:?}, found {c:?}"))),
            None => Err(self.error(format!("expected {wanted:?}, found the end"))),
        }
    }

    /// Whitespace and comments.
    fn skip_blank(&mut self) -> Result<(), Error> {
        loop {
            match self.peek() {
                Some(c) if c.is_whitespace() || c == '\u{feff}' => self.at += 1,
                Some('/') => match self.chars.get(self.at + 1).map(|(_, c)| *c) {
                    Some('/') => {
                        while self.peek().is_some_and(|c| c != '\n') {
                            self.at += 1;
                        }
                    }
                    Some('*') => {
                        self.at += 2;
                        loop {
                            match self.next() {
                                Some('*') if self.peek() == Some('/') => {
                                    self.at += 1;
                                    break;
                                }
                                Some(_) => {}
                                None => return Err(self.error("a comment that never ends")),
                            }
                        }
                    }
                    _ => return Err(self.error("a lone '/'")),
                },
                _ => return Ok(()),
            }
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, Error> {
        if depth > MAX_DEPTH {
            return Err(self.error(format!("nested deeper than {MAX_DEPTH}")));
        }
        match self.peek() {
            Some('{') => self.object(depth),
            Some('[') => self.array(depth),
            Some(q @ ('"' | '\'')) => {
                self.at += 1;
                self.string(q).map(Value::String)
            }
            Some(c) if c.is_ascii_digit() || matches!(c, '-' | '+' | '.') => self.number(),
            Some(c) if is_identifier_start(c) => {
                let word = self.identifier();
                match word.as_str() {
                    "true" => Ok(Value::Bool(true)),
                    "false" => Ok(Value::Bool(false)),
                    "null" => Ok(Value::Null),
                    "Infinity" | "NaN" => {
                        Err(self.error(format!("{word} cannot be stored in JSON")))
                    }
                    _ => Err(self.error(format!("unexpected word {word:?}"))),
                }
            }
            Some(c) => Err(self.error(format!("unexpected {c:?}"))),
            None => Err(self.error("a value is missing at the end")),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, Error> {
        self.expect('{')?;
        let mut map = Map::new();
        loop {
            self.skip_blank()?;
            if self.peek() == Some('}') {
                self.at += 1;
                return Ok(Value::Object(map));
            }
            let key = match self.peek() {
                Some(q @ ('"' | '\'')) => {
                    self.at += 1;
                    self.string(q)?
                }
                Some(c) if is_identifier_start(c) => self.identifier(),
                Some(c) => return Err(self.error(format!("expected a key, found {c:?}"))),
                None => return Err(self.error("an object that never ends")),
            };
            self.skip_blank()?;
            self.expect(':')?;
            self.skip_blank()?;
            let value = self.value(depth + 1)?;
            map.insert(key, value);
            self.skip_blank()?;
            match self.next() {
                Some(',') => {}
                Some('}') => return Ok(Value::Object(map)),
                _ => {
                    self.at -= 1;
                    return Err(self.error("expected ',' or '}'"));
                }
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, Error> {
        self.expect('[')?;
        let mut items = Vec::new();
        loop {
            self.skip_blank()?;
            if self.peek() == Some(']') {
                self.at += 1;
                return Ok(Value::Array(items));
            }
            items.push(self.value(depth + 1)?);
            self.skip_blank()?;
            match self.next() {
                Some(',') => {}
                Some(']') => return Ok(Value::Array(items)),
                _ => {
                    self.at -= 1;
                    return Err(self.error("expected ',' or ']'"));
                }
            }
        }
    }

    fn identifier(&mut self) -> String {
        let mut word = String::new();
        while let Some(c) = self.peek().filter(|c| is_identifier_part(*c)) {
            word.push(c);
            self.at += 1;
        }
        word
    }

    /// The rest of a string opened by `quote`.
    fn string(&mut self, quote: char) -> Result<String, Error> {
        let mut out = String::new();
        loop {
            match self.next() {
                None => return Err(self.error("a string that never ends")),
                Some(c) if c == quote => return Ok(out),
                Some('\n') => {
                    return Err(self.error("a line break inside a string (escape it with \\)"))
                }
                Some('\\') => match self.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('r') => out.push('\r'),
                    Some('b') => out.push('\u{8}'),
                    Some('f') => out.push('\u{c}'),
                    Some('v') => out.push('\u{b}'),
                    Some('0') => out.push('\0'),
                    Some('\n') => {}
                    Some('\r') => {
                        if self.peek() == Some('\n') {
                            self.at += 1;
                        }
                    }
                    Some('x') => out.push(self.hex_char(2)?),
                    Some('u') => {
                        let c = self.hex_unit()?;
                        if (0xD800..0xDC00).contains(&c) {
                            // A surrogate pair spelled as two escapes.
                            if self.next() != Some('\\') || self.next() != Some('u') {
                                return Err(self.error("a lone surrogate in a \\u escape"));
                            }
                            let low = self.hex_unit()?;
                            if !(0xDC00..0xE000).contains(&low) {
                                return Err(
                                    self.error("a high surrogate not followed by a low one")
                                );
                            }
                            let joined =
                                0x10000 + ((c - 0xD800) << 10) + (low.wrapping_sub(0xDC00) & 0x3FF);
                            out.push(
                                char::from_u32(joined)
                                    .ok_or_else(|| self.error("a bad surrogate pair"))?,
                            );
                        } else {
                            out.push(
                                char::from_u32(c).ok_or_else(|| {
                                    self.error("a lone surrogate in a \\u escape")
                                })?,
                            );
                        }
                    }
                    Some(c) => out.push(c),
                    None => return Err(self.error("a string that never ends")),
                },
                Some(c) => out.push(c),
            }
        }
    }

    fn hex_unit(&mut self) -> Result<u32, Error> {
        let mut n = 0;
        for _ in 0..4 {
            let digit = self.next().and_then(|c| c.to_digit(16));
            n = n * 16 + digit.ok_or_else(|| self.error("expected four hex digits after \\u"))?;
        }
        Ok(n)
    }

    fn hex_char(&mut self, digits: usize) -> Result<char, Error> {
        let mut n = 0;
        for _ in 0..digits {
            let digit = self.next().and_then(|c| c.to_digit(16));
            n = n * 16 + digit.ok_or_else(|| self.error("expected hex digits after \\x"))?;
        }
        char::from_u32(n).ok_or_else(|| self.error("a bad \\x escape"))
    }

    fn number(&mut self) -> Result<Value, Error> {
        let start = self.at;
        let negative = match self.peek() {
            Some('-') => {
                self.at += 1;
                true
            }
            Some('+') => {
                self.at += 1;
                false
            }
            _ => false,
        };
        if matches!(self.peek(), Some('I' | 'N')) {
            let word = self.identifier();
            return Err(self.error(format!("{word} cannot be stored in JSON")));
        }
        let hex = self.peek() == Some('0')
            && matches!(
                self.chars.get(self.at + 1).map(|(_, c)| *c),
                Some('x' | 'X')
            );
        if hex {
            self.at += 2;
            let mut n: u64 = 0;
            let mut any = false;
            while let Some(d) = self.peek().and_then(|c| c.to_digit(16)) {
                n = n
                    .checked_mul(16)
                    .and_then(|n| n.checked_add(d as u64))
                    .ok_or_else(|| self.error("a hex number too large"))?;
                any = true;
                self.at += 1;
            }
            if !any {
                return Err(self.error("expected hex digits after 0x"));
            }
            return Ok(if negative {
                let n = i64::try_from(n).map_err(|_| self.error("a hex number too large"))?;
                Value::from(-n)
            } else {
                Value::from(n)
            });
        }
        let mut literal = String::new();
        if negative {
            literal.push('-');
        }
        while let Some(c) = self
            .peek()
            .filter(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        {
            // A sign belongs to the number only right after an exponent.
            if matches!(c, '+' | '-') && !literal.ends_with(['e', 'E']) {
                break;
            }
            literal.push(c);
            self.at += 1;
        }
        let mantissa = literal.split(['e', 'E']).next().unwrap_or_default();
        if !mantissa.chars().any(|c| c.is_ascii_digit()) {
            self.at = start;
            return Err(self.error(format!("{literal:?} is not a number")));
        }
        let normal = normalize(&literal);
        if let Ok(n) = normal.parse::<i64>() {
            return Ok(Value::from(n));
        }
        if let Ok(n) = normal.parse::<u64>() {
            return Ok(Value::from(n));
        }
        match normal.parse::<f64>().ok().and_then(Number::from_f64) {
            Some(n) if !literal.trim_start_matches('-').is_empty() => Ok(Value::Number(n)),
            _ => {
                self.at = start;
                Err(self.error(format!("{literal:?} is not a number")))
            }
        }
    }
}

/// `.5` → `0.5`, `5.` → `5.0`, for Rust's parser.
fn normalize(literal: &str) -> String {
    let (sign, digits) = match literal.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", literal),
    };
    let mut digits = digits.to_string();
    if digits.starts_with('.') {
        digits.insert(0, '0');
    }
    if let Some(at) = digits.find('.') {
        if !digits[at + 1..].starts_with(|c: char| c.is_ascii_digit()) {
            digits.insert(at + 1, '0');
        }
    }
    format!("{sign}{digits}")
}

fn is_identifier_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || c == '$'
}

fn is_identifier_part(c: char) -> bool {
    is_identifier_start(c) || c.is_ascii_digit() || c == '\u{200c}' || c == '\u{200d}'
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_what_json5_adds_to_json() {
        let text = r#"
            // a comment
            {
              gateway: { port: 18789, bind: 'loopback', },  /* block */
              "quoted": "a \"b\" \u00e9 \x41",
              list: [1, -2, +3, .5, 5., 0x1F, 1e3, -1.5E-2,],
              nothing: null, yes: true, no: false,
              $dollar_1: 'it\'s',
              multi: "one \
two",
            }
        "#;
        let value = parse(text).unwrap();
        assert_eq!(value["gateway"], json!({"port": 18789, "bind": "loopback"}));
        assert_eq!(value["quoted"], "a \"b\" é A");
        assert_eq!(
            value["list"],
            json!([1, -2, 3, 0.5, 5.0, 31, 1000.0, -0.015])
        );
        assert_eq!(value["$dollar_1"], "it's");
        assert_eq!(value["multi"], "one two");
        assert_eq!(value["nothing"], Value::Null);
        let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
        assert_eq!(keys[0], "gateway", "the file's order is kept");
    }

    #[test]
    fn mistakes_are_located() {
        let e = parse("{\n  a: 1,\n  b: ,\n}").unwrap_err();
        assert_eq!((e.line, e.column), (3, 6), "{e}");
        assert!(parse("{a: NaN}").unwrap_err().message.contains("NaN"));
        assert!(parse("{a: 1} x").is_err());
        assert!(parse("/* open").is_err());
        assert!(parse("'open").is_err());
        assert!(parse(&"[".repeat(200))
            .unwrap_err()
            .message
            .contains("deeper"));
        assert_eq!(parse("\"\\ud83e\\udd9e\"").unwrap(), json!("🦞"));
        assert!(parse("\"\\ud83d\\u0041\"").is_err());
        for not_a_number in [".", "-", "+.", "-.e5", "[.]"] {
            assert!(parse(not_a_number).is_err(), "{not_a_number} was read");
        }
    }
}
