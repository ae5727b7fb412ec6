//! Config problems rendered as a compiler renders errors: the file and
//! line, the source line with a caret span under the offending value, what
//! was expected and found, the fix, and where a value set outside the
//! file came from. Secret values in the quoted source are masked.

use super::locate;
use super::meta;
use crate::protocol::types::ConfigProblem;
use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};
use std::ops::Range;
use std::path::Path;

/// Shown in place of every secret value in quoted source lines.
const MASK: &str = "********";

/// The config file the problems were found in.
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub path: String,
    pub text: String,
    /// Byte ranges masked like secrets when quoted.
    pub hidden: Vec<Range<usize>>,
}

/// Every problem, one report each, then a count, as rustc ends its output.
pub fn render(problems: &[ConfigProblem], file: Option<&SourceFile>, color: bool) -> String {
    let renderer = if color {
        Renderer::styled()
    } else {
        Renderer::plain()
    };
    let masked = file.map(Masked::new);
    let mut out = String::new();
    for problem in problems {
        out.push_str(&render_one(&renderer, problem, file, masked.as_ref()));
        out.push_str("\n\n");
    }
    let whose = file.map(|f| format!(" in {}", f.path)).unwrap_or_default();
    let count = match problems.len() {
        1 => "1 problem".to_string(),
        n => format!("{n} problems"),
    };
    let summary = Level::ERROR.primary_title(format!("invalid configuration: {count}{whose}"));
    out.push_str(&renderer.render(&[Group::with_title(summary)]));
    out
}

fn render_one(
    renderer: &Renderer,
    problem: &ConfigProblem,
    file: Option<&SourceFile>,
    masked: Option<&Masked>,
) -> String {
    let title = match (&problem.expected, problem.path.is_empty()) {
        (Some(_), false) => format!("invalid value for `{}`", problem.path),
        (_, true) => problem.message.clone(),
        (None, false) => format!("{}: {}", problem.path, problem.message),
    };
    let mut group = Group::with_title(Level::ERROR.primary_title(title));
    let in_file = file.filter(|f| problem.source.as_deref() == Some(f.path.as_str()));
    match (in_file, masked, span_of(problem, file)) {
        (Some(file), Some(masked), Some(span)) => {
            let label = match (&problem.expected, &problem.found) {
                (Some(expected), Some(found)) => format!("expected {expected}, found {found}"),
                (Some(expected), None) => format!("expected {expected}"),
                _ => String::new(),
            };
            let span = masked.map(span);
            let annotation = AnnotationKind::Primary.span(span);
            let annotation = if label.is_empty() {
                annotation
            } else {
                annotation.label(label)
            };
            group = group.element(
                Snippet::source(masked.text.as_str())
                    .path(file.path.as_str())
                    .fold(true)
                    .annotation(annotation),
            );
        }
        _ => {
            if let (Some(expected), Some(found)) = (&problem.expected, &problem.found) {
                group = group
                    .element(Level::NOTE.message(format!("expected {expected}, found {found}")));
            }
            if let Some(source) = &problem.source {
                let set_outside_files =
                    source.starts_with("environment variable ") || source.starts_with("flag ");
                let note = match (problem.line, problem.column) {
                    (Some(line), Some(column)) => format!("in {source}:{line}:{column}"),
                    _ if set_outside_files => format!("set by {source}"),
                    _ => format!("in {source}"),
                };
                group = group.element(Level::NOTE.message(note));
            }
        }
    }
    if let Some(help) = &problem.help {
        group = group.element(Level::HELP.message(help.as_str()));
    }
    renderer.render(&[group])
}

/// The byte range a problem points at in the file text.
fn span_of(problem: &ConfigProblem, file: Option<&SourceFile>) -> Option<Range<usize>> {
    let text = &file?.text;
    let line = problem.line?.get() as usize;
    let column = problem.column?.get() as usize;
    let start = locate::offset_of(text, line, column);
    let end = match (problem.end_line, problem.end_column) {
        (Some(l), Some(c)) => locate::offset_of(text, l.get() as usize, c.get() as usize),
        _ => start,
    };
    // An empty span would draw nothing: mark one character at least.
    let end = if end > start {
        end
    } else {
        text[start..]
            .chars()
            .next()
            .filter(|c| *c != '\n')
            .map_or(start, |c| start + c.len_utf8())
    };
    Some(start..end)
}

/// The file text with every secret value replaced by [`MASK`], and a map
/// from offsets in the original to offsets in the masked text.
struct Masked {
    text: String,
    /// `(original range, masked range)` of each replacement, in order.
    replaced: Vec<(Range<usize>, Range<usize>)>,
}

impl Masked {
    fn new(file: &SourceFile) -> Masked {
        let mut secrets = secret_spans(Path::new(&file.path), &file.text);
        secrets.extend(file.hidden.iter().cloned());
        secrets.sort_by_key(|r| r.start);
        let mut text = String::new();
        let mut replaced = Vec::new();
        let mut at = 0;
        for range in secrets {
            if range.start < at {
                continue;
            }
            text.push_str(&file.text[at..range.start]);
            let masked_start = text.len();
            text.push_str(MASK);
            replaced.push((range.clone(), masked_start..text.len()));
            at = range.end;
        }
        text.push_str(&file.text[at..]);
        Masked { text, replaced }
    }

    fn map(&self, span: Range<usize>) -> Range<usize> {
        self.map_offset(span.start)..self.map_offset(span.end).max(self.map_offset(span.start))
    }

    fn map_offset(&self, offset: usize) -> usize {
        let mut shift: isize = 0;
        for (original, masked) in &self.replaced {
            if offset >= original.end {
                shift = masked.end as isize - original.end as isize;
            } else if offset >= original.start {
                return masked.start + (offset - original.start).min(masked.len());
            } else {
                break;
            }
        }
        (offset as isize + shift) as usize
    }
}

/// Byte ranges of the secret values in the text: exactly, when the text
/// parses; otherwise, on any line that assigns a key named like a secret
/// (`token = ...`, `"apiKey": ...`), the rest of the line.
fn secret_spans(path: &Path, text: &str) -> Vec<Range<usize>> {
    if let Ok(value) = super::parse_text(path, text) {
        return meta::secret_pointers(&value)
            .iter()
            .filter_map(|pointer| locate::spans(path, text, pointer)?.value)
            .collect();
    }
    let names: Vec<&str> = meta::SECRET_PATHS
        .iter()
        .filter_map(|rule| rule.rsplit('/').next())
        .collect();
    let mut spans = Vec::new();
    let mut line_start = 0;
    for line in text.split_inclusive('\n') {
        if let Some(from) = secret_assignment(line, &names) {
            let end = line.trim_end_matches(['\n', '\r']).len();
            if from < end {
                spans.push(line_start + from..line_start + end);
            }
        }
        line_start += line.len();
    }
    spans
}

/// Where the value starts on a line that assigns a secret-named key.
fn secret_assignment(line: &str, names: &[&str]) -> Option<usize> {
    names.iter().find_map(|name| {
        line.match_indices(name).find_map(|(at, _)| {
            let rest = line[at + name.len()..]
                .trim_start_matches(['"', '\''])
                .trim_start();
            let value = rest.strip_prefix('=').or_else(|| rest.strip_prefix(':'))?;
            Some(line.len() - value.trim_start().len())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(line: u64, column: u64, end_column: u64) -> ConfigProblem {
        ConfigProblem {
            path: "gateway.port".into(),
            message: "expected an integer, found a string".into(),
            source: Some("c.toml".into()),
            line: std::num::NonZeroU64::new(line),
            column: std::num::NonZeroU64::new(column),
            end_line: std::num::NonZeroU64::new(line),
            end_column: std::num::NonZeroU64::new(end_column),
            expected: Some("an integer".into()),
            found: Some("the string \"x\"".into()),
            help: None,
        }
    }

    #[test]
    fn a_caret_under_the_value_and_no_secret_in_the_quoted_source() {
        let file = SourceFile {
            path: "c.toml".into(),
            text: "[gateway]\nauth = { token = \"hunter2\" }\nport = \"x\"\n".into(),
            hidden: Vec::new(),
        };
        let out = render(&[problem(3, 8, 11)], Some(&file), false);
        assert!(out.contains("c.toml:3:8"), "{out}");
        assert!(out.contains("port = \"x\""), "{out}");
        assert!(out.contains("^^^"), "{out}");
        assert!(!out.contains("hunter2"), "{out}");
    }

    #[test]
    fn a_line_that_does_not_parse_is_masked_after_a_secret_key() {
        let text = "[gateway.auth]\ntoken = \"hunter2\n";
        let spans = secret_spans(Path::new("c.toml"), text);
        assert_eq!(spans.len(), 1);
        assert_eq!(&text[spans[0].clone()], "\"hunter2");
    }
}
