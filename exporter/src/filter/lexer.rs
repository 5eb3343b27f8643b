//! Filter text to tokens, each with the 1-based char column it starts at.

use super::error::FilterError;

#[derive(Clone, Debug, PartialEq)]
pub enum Token {
    /// A field name or a word: `and`, `or`, `not`, `true`, `contains`, ...
    Word(String),
    Str(String),
    Number(f64),
    /// A number with a unit, in seconds.
    Duration(f64),
    /// `==`, `!=`, `<`, `<=`, `>`, `>=`, `=~`, `!~`, `&&`, `||`, `!`.
    Symbol(&'static str),
    Open,
    Close,
}

impl Token {
    /// How an error message names the token.
    pub fn describe(&self) -> String {
        match self {
            Token::Word(word) => format!("`{word}`"),
            Token::Str(text) => format!("the string {text:?}"),
            Token::Number(n) => format!("the number {n}"),
            Token::Duration(seconds) => format!("the duration {seconds}s"),
            Token::Symbol(symbol) => format!("`{symbol}`"),
            Token::Open => "`(`".to_owned(),
            Token::Close => "`)`".to_owned(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Spanned {
    pub token: Token,
    pub column: usize,
}

const SYMBOLS: &[&str] = &[
    "==", "!=", "<=", ">=", "=~", "!~", "&&", "||", "<", ">", "!",
];

/// Duration units, longest first so `ms` wins over `m`.
const UNITS: &[(&str, f64)] = &[
    ("ms", 1e-3),
    ("us", 1e-6),
    ("µs", 1e-6),
    ("s", 1.0),
    ("m", 60.0),
    ("h", 3600.0),
];

pub fn tokenize(text: &str) -> Result<Vec<Spanned>, FilterError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let token = if c == '(' {
            i += 1;
            Token::Open
        } else if c == ')' {
            i += 1;
            Token::Close
        } else if c == '"' || c == '\'' {
            let (value, next) = string(&chars, i)?;
            i = next;
            Token::Str(value)
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let (token, next) = number(&chars, i)?;
            i = next;
            token
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            Token::Word(chars[start..i].iter().collect())
        } else if let Some(symbol) = SYMBOLS.iter().find(|s| starts_with(&chars[i..], s)) {
            i += symbol.chars().count();
            Token::Symbol(symbol)
        } else if c == '=' {
            return Err(FilterError::at(
                column,
                "`=` is not an operator: write `==` to compare, `=~` to match a regex",
            ));
        } else {
            return Err(FilterError::at(
                column,
                format!("unexpected character {c:?}"),
            ));
        };
        tokens.push(Spanned { token, column });
    }
    Ok(tokens)
}

fn starts_with(chars: &[char], prefix: &str) -> bool {
    let mut rest = chars.iter();
    prefix.chars().all(|p| rest.next() == Some(&p))
}

/// A quoted string from `chars[start]` (the quote) on; escapes: `\\`, `\"`, `\'`, `\n`, `\t`.
fn string(chars: &[char], start: usize) -> Result<(String, usize), FilterError> {
    let quote = chars[start];
    let mut value = String::new();
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            c if c == quote => return Ok((value, i + 1)),
            '\\' => {
                let escaped = match chars.get(i + 1) {
                    Some('\\') => '\\',
                    Some('"') => '"',
                    Some('\'') => '\'',
                    Some('n') => '\n',
                    Some('t') => '\t',
                    Some(other) => {
                        return Err(FilterError::at(
                            i + 1,
                            format!(
                                "unknown escape `\\{other}` (\\\\, \\\", \\', \\n, \\t); a regex's backslashes are written twice: \"\\\\d+\""
                            ),
                        ));
                    }
                    None => break,
                };
                value.push(escaped);
                i += 2;
            }
            c => {
                value.push(c);
                i += 1;
            }
        }
    }
    Err(FilterError::at(
        start + 1,
        format!("unterminated string: no closing {quote}"),
    ))
}

/// A number, or a duration when a unit follows: `500`, `0.25`, `250ms`, `1.5s`, `2m`.
fn number(chars: &[char], start: usize) -> Result<(Token, usize), FilterError> {
    let mut i = start;
    while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
        i += 1;
    }
    let digits: String = chars[start..i].iter().collect();
    let value: f64 = digits
        .parse()
        .map_err(|_| FilterError::at(start + 1, format!("not a number: {digits:?}")))?;
    let suffix_end = chars[i..]
        .iter()
        .position(|c| !c.is_alphanumeric() && *c != '_')
        .map_or(chars.len(), |n| i + n);
    if suffix_end == i {
        return Ok((Token::Number(value), i));
    }
    let suffix: String = chars[i..suffix_end].iter().collect();
    match UNITS.iter().find(|(unit, _)| *unit == suffix) {
        Some((_, scale)) => Ok((Token::Duration(value * scale), suffix_end)),
        None => Err(FilterError::at(
            i + 1,
            format!("unknown unit `{suffix}` after {digits} (durations: 250ms, 1s, 2m, 1h)"),
        )),
    }
}
