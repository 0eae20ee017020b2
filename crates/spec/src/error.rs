//! The one error type a spec reports: where, which field, what, what to do.

use std::fmt;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode};

/// A problem in a spec file, located at file:line:col and naming the field.
///
/// `Display` gives the one-line form (`web.yaml:12:5: pools.v1.endpoints[0]:
/// …`); rendered through miette it also shows the offending line. Boxed so
/// that `Result<_, SpecError>` stays small on the happy path.
#[derive(Debug)]
pub struct SpecError(Box<Detail>);

#[derive(Debug)]
pub struct Detail {
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// Path of the field at fault, e.g. `pools.v1.endpoints[0]`; empty when
    /// the problem is the document's syntax rather than a field.
    pub field: String,
    pub message: String,
    pub hint: Option<String>,
    source_code: NamedSource<String>,
    offset: usize,
}

impl std::ops::Deref for SpecError {
    type Target = Detail;
    fn deref(&self) -> &Detail {
        &self.0
    }
}

impl SpecError {
    pub(crate) fn new(
        file: &str,
        text: &str,
        (line, column): (usize, usize),
        field: String,
        message: String,
        hint: Option<String>,
    ) -> Self {
        SpecError(Box::new(Detail {
            file: file.to_string(),
            line,
            column,
            field,
            message,
            hint,
            source_code: NamedSource::new(file, text.to_string()),
            offset: byte_offset(text, line, column),
        }))
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecError {}

impl Diagnostic for SpecError {
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.hint
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(&self.0.source_code)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let label = if self.field.is_empty() {
            "here".to_string()
        } else {
            self.field.clone()
        };
        Some(Box::new(std::iter::once(LabeledSpan::at_offset(
            self.offset,
            label,
        ))))
    }
}

/// Byte offset of a 1-based line and character column, clamped to the text.
fn byte_offset(text: &str, line: usize, column: usize) -> usize {
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            let within = l
                .char_indices()
                .nth(column.saturating_sub(1))
                .map_or(l.len(), |(b, _)| b);
            return offset + within;
        }
        offset += l.len();
    }
    text.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets() {
        let t = "ab\ncdé\nf";
        assert_eq!(byte_offset(t, 1, 1), 0);
        assert_eq!(byte_offset(t, 2, 1), 3);
        assert_eq!(byte_offset(t, 2, 3), 5);
        assert_eq!(byte_offset(t, 3, 1), 8);
        assert_eq!(byte_offset(t, 9, 9), t.len());
    }
}
