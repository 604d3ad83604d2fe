//! The tokenizer of the script language: every token carries the line it starts on.
//!
//! Whitespace and newlines only separate tokens (as in packetdrill, an event may span
//! lines); comments are `// ...` to the end of the line and `/* ... */`. Numbers are
//! kept as text so that the parser decides whether `0.100` is a time and `1000` a
//! length, and can report an out-of-range value with its line.

use super::parse::ParseError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Tok {
    /// `[A-Za-z_][A-Za-z0-9_]*`.
    Word(String),
    /// Decimal digits.
    Int(String),
    /// `[0-9]*\.[0-9]+` (a time in seconds).
    Float(String),
    /// `0x[0-9a-fA-F]+`.
    Hex(String),
    /// `"..."`.
    Str(String),
    /// `` `...` ``: a shell command.
    Backquoted(String),
    /// `%{ ... }%`: packetdrill's Python blocks (parsed to report them as unsupported).
    Code,
    /// `--name` of a script option.
    OptionName(String),
    /// `...`.
    Ellipsis,
    /// One of `< > ( ) [ ] { } , : = + * ~ | . - ;`.
    Punct(char),
}

impl Tok {
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("`{w}`"),
            Tok::Int(s) | Tok::Float(s) | Tok::Hex(s) => format!("`{s}`"),
            Tok::Str(s) => format!("string \"{s}\""),
            Tok::Backquoted(_) => "a `command`".into(),
            Tok::Code => "a %{ code }% block".into(),
            Tok::OptionName(o) => format!("option `--{o}`"),
            Tok::Ellipsis => "`...`".into(),
            Tok::Punct(c) => format!("`{c}`"),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    pub(crate) line: u32,
    /// Whether whitespace (or a comment) came right before it: `--name` options end at
    /// whitespace, and `1:1001` must not be confused with a word.
    pub(crate) spaced: bool,
}

/// Longest token text accepted (keeps error messages and memory bounded).
const MAX_TOKEN: usize = 4096;

pub(crate) fn tokenize(src: &str) -> Result<Vec<Token>, ParseError> {
    let b = src.as_bytes();
    let mut i = 0usize;
    let mut line = 1u32;
    let mut out = Vec::new();
    let mut spaced = true;
    let err = |line: u32, msg: String| Err(ParseError { line, message: msg });
    while i < b.len() {
        let c = b[i];
        match c {
            b'\n' => {
                line = line.saturating_add(1);
                i += 1;
                spaced = true;
                continue;
            }
            b' ' | b'\t' | b'\r' => {
                i += 1;
                spaced = true;
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                spaced = true;
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let start = line;
                i += 2;
                loop {
                    if i + 1 >= b.len() {
                        return err(start, "unterminated /* comment".into());
                    }
                    if b[i] == b'*' && b[i + 1] == b'/' {
                        i += 2;
                        break;
                    }
                    if b[i] == b'\n' {
                        line = line.saturating_add(1);
                    }
                    i += 1;
                }
                spaced = true;
                continue;
            }
            _ => {}
        }
        let start_line = line;
        let start = i;
        let tok = if c == b'%' && b.get(i + 1) == Some(&b'{') {
            i += 2;
            loop {
                if i + 1 >= b.len() {
                    return err(start_line, "unterminated %{ code }% block".into());
                }
                if b[i] == b'}' && b[i + 1] == b'%' {
                    i += 2;
                    break;
                }
                if b[i] == b'\n' {
                    line = line.saturating_add(1);
                }
                i += 1;
            }
            Tok::Code
        } else if c == b'`' {
            i += 1;
            let s = i;
            while i < b.len() && b[i] != b'`' {
                if b[i] == b'\n' {
                    line = line.saturating_add(1);
                }
                i += 1;
            }
            if i >= b.len() {
                return err(start_line, "unterminated `command`".into());
            }
            let text = text(src, s, i, start_line)?;
            i += 1;
            Tok::Backquoted(text)
        } else if c == b'"' {
            i += 1;
            let s = i;
            while i < b.len() && b[i] != b'"' && b[i] != b'\n' {
                i += 1;
            }
            if i >= b.len() || b[i] != b'"' {
                return err(start_line, "unterminated string".into());
            }
            let text = text(src, s, i, start_line)?;
            i += 1;
            Tok::Str(text)
        } else if c == b'-' && b.get(i + 1) == Some(&b'-') && b.get(i + 2).is_some_and(|c| c.is_ascii_alphabetic()) {
            i += 2;
            let s = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'-') {
                i += 1;
            }
            Tok::OptionName(text(src, s, i, start_line)?)
        } else if c == b'.' && b.get(i + 1) == Some(&b'.') && b.get(i + 2) == Some(&b'.') {
            i += 3;
            Tok::Ellipsis
        } else if c == b'0' && matches!(b.get(i + 1), Some(b'x') | Some(b'X')) {
            i += 2;
            let s = i;
            while i < b.len() && b[i].is_ascii_hexdigit() {
                i += 1;
            }
            if s == i {
                return err(start_line, "`0x` without hexadecimal digits".into());
            }
            Tok::Hex(text(src, s, i, start_line)?)
        } else if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            // A fraction makes it a time; `1...2` (a blocking call's end) is not one.
            if i < b.len() && b[i] == b'.' && b.get(i + 1).is_some_and(|d| d.is_ascii_digit()) {
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                Tok::Float(text(src, start, i, start_line)?)
            } else {
                Tok::Int(text(src, start, i, start_line)?)
            }
        } else if c.is_ascii_alphabetic() || c == b'_' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            Tok::Word(text(src, start, i, start_line)?)
        } else if b"<>()[]{},:=+*~|.-;!/".contains(&c) {
            i += 1;
            Tok::Punct(c as char)
        } else {
            let ch = src[i..].chars().next().unwrap_or('?');
            return err(start_line, format!("unexpected character {ch:?}"));
        };
        out.push(Token { tok, line: start_line, spaced });
        spaced = false;
        if out.len() > 1_000_000 {
            return err(line, "script too long".into());
        }
    }
    Ok(out)
}

fn text(src: &str, s: usize, e: usize, line: u32) -> Result<String, ParseError> {
    if e - s > MAX_TOKEN {
        return Err(ParseError { line, message: format!("token longer than {MAX_TOKEN} bytes") });
    }
    // Token boundaries are ASCII bytes, so these are char boundaries.
    Ok(src.get(s..e).unwrap_or_default().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        tokenize(s).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn numbers_flags_and_times() {
        use Tok::*;
        assert_eq!(
            toks("+.1 < S. 0:0(0) ack 1"),
            vec![
                Punct('+'),
                Float(".1".into()),
                Punct('<'),
                Word("S".into()),
                Punct('.'),
                Int("0".into()),
                Punct(':'),
                Int("0".into()),
                Punct('('),
                Int("0".into()),
                Punct(')'),
                Word("ack".into()),
                Int("1".into())
            ]
        );
        assert_eq!(
            toks("+.1...0.200 read"),
            vec![Punct('+'), Float(".1".into()), Ellipsis, Float("0.200".into()), Word("read".into())]
        );
        assert_eq!(toks("0...1 x"), vec![Int("0".into()), Ellipsis, Int("1".into()), Word("x".into())]);
        assert_eq!(toks("0x802 `sysctl a=1`"), vec![Hex("802".into()), Backquoted("sysctl a=1".into())]);
        assert_eq!(
            toks("--tolerance_usecs=10000"),
            vec![OptionName("tolerance_usecs".into()), Punct('='), Int("10000".into())]
        );
    }

    #[test]
    fn comments_and_lines() {
        let t = tokenize("// c\n/* a\nb */ x // y\n\n z").unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].line, 3);
        assert_eq!(t[1].line, 5);
        assert!(tokenize("/* open").is_err());
        assert!(tokenize("\"open").is_err());
        assert!(tokenize("`open").is_err());
        assert_eq!(tokenize("a\n\n  $").unwrap_err().line, 3);
    }
}
