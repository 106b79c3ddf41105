//! Positioned messages: a [`Diagnostic`] at a 1-based line and column of a file.

use std::fmt;
use std::ops::Range;

use neo_protocol::pb;
use serde::{Deserialize, Serialize};

/// A place in a project file: 1-based line and column (the column counts characters).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    /// The file's path in the project, e.g. `neo.toml`.
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in characters.
    pub column: u32,
}

impl Position {
    /// The first character of `file`.
    pub fn start_of(file: &str) -> Position {
        Position {
            file: file.to_owned(),
            line: 1,
            column: 1,
        }
    }

    /// A diagnostic at this position.
    pub fn diagnostic(&self, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: self.file.clone(),
            line: self.line,
            column: self.column,
            message: message.into(),
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// One message about a project, positioned in one of its files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    /// The file's path in the project, e.g. `neo.toml`.
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in characters.
    pub column: u32,
    /// What is wrong, in one line.
    pub message: String,
}

impl Diagnostic {
    /// Where the diagnostic points.
    pub fn position(&self) -> Position {
        Position {
            file: self.file.clone(),
            line: self.line,
            column: self.column,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

impl From<Diagnostic> for pb::Diagnostic {
    fn from(d: Diagnostic) -> Self {
        pb::Diagnostic {
            file: d.file,
            line: d.line,
            column: d.column,
            message: d.message,
        }
    }
}

/// Turns byte offsets of one file's text into [`Position`]s.
pub(crate) struct SourceMap<'a> {
    file: &'a str,
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> SourceMap<'a> {
    /// Indexes the lines of `text`, the contents of `file`.
    pub(crate) fn new(file: &'a str, text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        SourceMap {
            file,
            text,
            line_starts,
        }
    }

    /// The position of byte `offset` (clamped to the text, rounded down to a character).
    pub(crate) fn position(&self, offset: usize) -> Position {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self.line_starts[line.saturating_sub(1)];
        let column = self.text[start..offset].chars().count() + 1;
        Position {
            file: self.file.to_owned(),
            line: u32::try_from(line).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
        }
    }

    /// A diagnostic at the start of `span`.
    pub(crate) fn diagnostic(&self, span: &Range<usize>, message: impl Into<String>) -> Diagnostic {
        self.position(span.start).diagnostic(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let map = SourceMap::new("neo.toml", "a = 1\né = \"x\"\n");
        assert_eq!(map.position(0).to_string(), "neo.toml:1:1");
        assert_eq!(map.position(4).to_string(), "neo.toml:1:5");
        assert_eq!(map.position(6).to_string(), "neo.toml:2:1");
        // `é` is two bytes, one character.
        assert_eq!(map.position(9).to_string(), "neo.toml:2:3");
        assert_eq!(map.position(7).to_string(), "neo.toml:2:1");
        assert_eq!(map.position(999).to_string(), "neo.toml:3:1");
    }

    #[test]
    fn diagnostic_displays_and_converts() {
        let d = Position::start_of("neo.toml").diagnostic("boom");
        assert_eq!(d.to_string(), "neo.toml:1:1: boom");
        let pb: pb::Diagnostic = d.into();
        assert_eq!((pb.line, pb.column, pb.message.as_str()), (1, 1, "boom"));
    }
}
