//! Turning byte offsets and miette labels into the 1-based `file:line:column`
//! locations that [`crate::Diagnostic`] reports.

use crate::Diagnostic;

/// 1-based line and column (in characters) of `offset` in `text`. Offsets past
/// the end or inside a multi-byte character are clamped rather than trusted,
/// because they come from another crate's error values.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// A diagnostic at byte `offset` of `text`.
pub(crate) fn at(file: &str, text: &str, offset: usize, message: impl Into<String>) -> Diagnostic {
    let (line, column) = line_col(text, offset);
    Diagnostic {
        file: file.to_owned(),
        line,
        column,
        message: message.into(),
    }
}

/// A diagnostic that concerns a whole file or directory, not a position in it.
pub(crate) fn unlocated(file: &str, message: impl Into<String>) -> Diagnostic {
    Diagnostic {
        file: file.to_owned(),
        line: 0,
        column: 0,
        message: message.into(),
    }
}

/// The first label's offset of a miette diagnostic, if it has one.
pub(crate) fn first_offset(err: &dyn miette::Diagnostic) -> Option<usize> {
    err.labels()
        .and_then(|mut labels| labels.next())
        .map(|l| l.offset())
}

/// The message of a miette diagnostic with its help text, which for Cedar
/// errors often carries the actual fix ("did you mean …").
pub(crate) fn message(err: &dyn miette::Diagnostic) -> String {
    let mut msg = err.to_string();
    if let Some(help) = err.help() {
        msg.push_str(&format!(" (help: {help})"));
    }
    msg
}

/// A located diagnostic from a miette error whose labels point into `text`.
pub(crate) fn from_miette(file: &str, text: &str, err: &dyn miette::Diagnostic) -> Diagnostic {
    match first_offset(err) {
        Some(offset) => at(file, text, offset, message(err)),
        None => unlocated(file, message(err)),
    }
}

/// `file:line:column: message`, dropping the parts that are unknown.
pub(crate) fn render(d: &Diagnostic) -> String {
    match (d.file.is_empty(), d.line) {
        (true, _) => d.message.clone(),
        (false, 0) => format!("{}: {}", d.file, d.message),
        (false, line) => format!("{}:{}:{}: {}", d.file, line, d.column, d.message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_is_one_based_and_counts_chars() {
        let text = "ab\ncdé\nf";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 2), (1, 3));
        assert_eq!(line_col(text, 3), (2, 1));
        // 'é' is two bytes; the offset after it is column 4 of line 2.
        assert_eq!(line_col(text, 7), (2, 4));
        assert_eq!(line_col(text, 8), (3, 1));
        assert_eq!(line_col(text, 9), (3, 2));
        assert_eq!(line_col(text, 999), (3, 2));
        // inside 'é'
        assert_eq!(line_col(text, 6), (2, 3));
    }
}
