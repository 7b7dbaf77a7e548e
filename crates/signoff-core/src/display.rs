//! Showing text that someone else supplied (a requester's resource,
//! justification or context; a reviewer's reason) so that it cannot pass
//! for something else: control characters become visible escapes, so no
//! ESC sequence can hide or recolour what follows, no CR can overwrite a
//! line and no newline can fake another field. Every display (CLI today;
//! web, Slack and Teams next) goes through here.

/// `c` as a visible escape, if it must not reach a display raw: C0/C1
/// controls, DEL, and the invisible formatting characters that reorder or
/// hide text (bidirectional overrides and isolates, zero-width characters,
/// line and paragraph separators, the byte-order mark).
fn escape_char(c: char) -> Option<String> {
    let named = match c {
        '\n' => Some("\\n"),
        '\r' => Some("\\r"),
        '\t' => Some("\\t"),
        '\u{1b}' => Some("\\e"),
        _ => None,
    };
    if let Some(n) = named {
        return Some(n.to_owned());
    }
    let invisible = matches!(c,
        '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}');
    (c.is_control() || invisible).then(|| format!("\\u{{{:x}}}", u32::from(c)))
}

/// `s` on one line: every control or invisible formatting character,
/// newlines included, shown as an escape (`\n`, `\r`, `\t`, `\e`,
/// `\u{…}`).
pub fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match escape_char(c) {
            Some(e) => out.push_str(&e),
            None => out.push(c),
        }
    }
    out
}

/// `s` as lines for a multi-line field: split at newlines, each line
/// escaped like [`one_line`] (tabs kept as `\t` so columns stay honest).
/// An empty `s` is one empty line.
pub fn text_lines(s: &str) -> Vec<String> {
    s.split('\n').map(one_line).collect()
}

/// [`one_line`], shortened to at most `max` characters (the last one an
/// ellipsis) for table cells.
pub fn cell(s: &str, max: usize) -> String {
    let escaped = one_line(s);
    if escaped.chars().count() <= max || max == 0 {
        return escaped;
    }
    let mut out: String = escaped.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_could_forge_a_display() {
        assert_eq!(
            one_line("ok\n\u{1b}[8mverdict allow\r\tx"),
            "ok\\n\\e[8mverdict allow\\r\\tx"
        );
        assert_eq!(one_line("a\u{7f}b\u{9b}c"), "a\\u{7f}b\\u{9b}c");
        assert_eq!(one_line("rtl\u{202e}txt.exe"), "rtl\\u{202e}txt.exe");
        assert_eq!(one_line("zero\u{200b}width"), "zero\\u{200b}width");
        assert_eq!(one_line("Großes Ü — fine"), "Großes Ü — fine");
    }

    #[test]
    fn text_keeps_lines_but_escapes_within() {
        assert_eq!(
            text_lines("one\ntwo \u{1b}[2J"),
            vec!["one".to_owned(), "two \\e[2J".to_owned()]
        );
        assert_eq!(text_lines(""), vec![String::new()]);
    }

    #[test]
    fn cells_are_short() {
        assert_eq!(cell("abcdef", 4), "abc…");
        assert_eq!(cell("a\nb", 10), "a\\nb");
    }
}
