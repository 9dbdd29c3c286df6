//! Text that comes from callers, made safe to echo: bounded in length, and with control
//! characters escaped so that no value can start a line of its own in a log.

/// Longest caller-supplied value echoed in an error or stored in an audit record, in characters.
pub const ECHO_MAX: usize = 128;

/// `value` cut to `max` characters, with `…` when it was longer.
pub fn bounded(value: &str, max: usize) -> String {
    let mut chars = value.chars();
    let head: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}

/// `value` with every control character (newlines, carriage returns, escape sequences, NUL…)
/// and backslash written as a `\u{..}`-style escape, so one value is always one line.
pub fn escape_control(value: &str) -> String {
    if !value.chars().any(|c| c.is_control() || c == '\\') {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// A caller-supplied value as it may appear in an error or a record: bounded and escaped.
pub fn echo(value: &str) -> String {
    escape_control(&bounded(value, ECHO_MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_and_controls_escaped() {
        assert_eq!(bounded("abcdef", 3), "abc…");
        assert_eq!(bounded("abc", 3), "abc");
        assert_eq!(
            escape_control("a\nINFO audit: forged\r\x1b[2J\\"),
            "a\\nINFO audit: forged\\r\\u{001b}[2J\\\\"
        );
        assert!(!echo(&"x\n".repeat(500)).contains('\n'));
        assert!(echo(&"y".repeat(500)).chars().count() <= ECHO_MAX + 1);
    }
}
