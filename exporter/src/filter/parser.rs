//! Tokens to a checked expression: fields resolved, literals type-checked against their field,
//! regexes compiled. Recursive descent, depth-bounded.
//!
//! ```text
//! filter  := or | ""
//! or      := and (("or" | "||") and)*
//! and     := unary (("and" | "&&") unary)*
//! unary   := ("not" | "!") unary | "(" or ")" | test
//! test    := field [operator literal]
//! ```

use regex::{Regex, RegexBuilder};

use super::error::FilterError;
use super::fields::{FIELDS, Field, FieldType, lookup, suggestions};
use super::lexer::{Spanned, Token};

/// Parentheses and `not`s nested deeper than this are refused (the parser recurses on them).
pub const MAX_DEPTH: usize = 32;
/// Regexes per filter, and the compiled size of each: together they bound a filter's memory.
pub const MAX_REGEXES: usize = 16;
pub const REGEX_SIZE_LIMIT: usize = 256 * 1024;

#[derive(Clone, Debug)]
pub enum Expr {
    All(Vec<Expr>),
    Any(Vec<Expr>),
    Not(Box<Expr>),
    Test(Field, Comparison),
}

#[derive(Clone, Debug)]
pub enum Comparison {
    /// A bare field: a true bool, a non-empty string, a number that is present.
    Truthy,
    Text(TextOp, String),
    /// `=~` (`true`) or `!~` (`false`), anchored at both ends.
    Regex(Regex, bool),
    Number(NumberOp, f64),
    /// `field == value` (a `!=` is folded into the value).
    Bool(bool),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextOp {
    Equal,
    NotEqual,
    Contains,
    StartsWith,
    EndsWith,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumberOp {
    Equal,
    NotEqual,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operator {
    Number(NumberOp),
    Regex(bool),
    Contains,
    StartsWith,
    EndsWith,
}

const OPERATORS: &str = "==, !=, <, <=, >, >=, =~, !~, contains, startsWith, endsWith";

fn operator(token: &Token) -> Option<(Operator, &'static str)> {
    let found = match token {
        Token::Symbol("==") => (Operator::Number(NumberOp::Equal), "=="),
        Token::Symbol("!=") => (Operator::Number(NumberOp::NotEqual), "!="),
        Token::Symbol("<") => (Operator::Number(NumberOp::Less), "<"),
        Token::Symbol("<=") => (Operator::Number(NumberOp::LessOrEqual), "<="),
        Token::Symbol(">") => (Operator::Number(NumberOp::Greater), ">"),
        Token::Symbol(">=") => (Operator::Number(NumberOp::GreaterOrEqual), ">="),
        Token::Symbol("=~") => (Operator::Regex(true), "=~"),
        Token::Symbol("!~") => (Operator::Regex(false), "!~"),
        Token::Word(word) => match word.to_ascii_lowercase().as_str() {
            "contains" => (Operator::Contains, "contains"),
            "startswith" | "starts_with" => (Operator::StartsWith, "startsWith"),
            "endswith" | "ends_with" => (Operator::EndsWith, "endsWith"),
            _ => return None,
        },
        _ => return None,
    };
    Some(found)
}

fn is_keyword(token: &Token, keyword: &str) -> bool {
    matches!(token, Token::Word(word) if word.eq_ignore_ascii_case(keyword))
}

pub struct Parser {
    tokens: Vec<Spanned>,
    position: usize,
    /// Column just past the text, for errors at its end.
    end_column: usize,
    depth: usize,
    regexes: usize,
}

impl Parser {
    pub fn new(tokens: Vec<Spanned>, end_column: usize) -> Parser {
        Parser {
            tokens,
            position: 0,
            end_column,
            depth: 0,
            regexes: 0,
        }
    }

    /// The whole token list as one expression.
    pub fn parse(mut self) -> Result<Expr, FilterError> {
        let expr = self.or()?;
        match self.peek() {
            None => Ok(expr),
            Some(Token::Close) => Err(self.error_here("`)` without a matching `(`")),
            Some(token) => {
                let found = token.describe();
                Err(self.error_here(format!("expected `and`, `or` or the end, found {found}")))
            }
        }
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position).map(|spanned| &spanned.token)
    }

    fn column(&self) -> usize {
        self.tokens
            .get(self.position)
            .map_or(self.end_column, |spanned| spanned.column)
    }

    fn error_here(&self, message: impl Into<String>) -> FilterError {
        FilterError::at(self.column(), message)
    }

    fn found(&self) -> String {
        self.peek().map_or("the end".to_owned(), Token::describe)
    }

    fn or(&mut self) -> Result<Expr, FilterError> {
        let mut terms = vec![self.and()?];
        while self
            .peek()
            .is_some_and(|t| is_keyword(t, "or") || *t == Token::Symbol("||"))
        {
            self.position += 1;
            terms.push(self.and()?);
        }
        Ok(if terms.len() == 1 {
            terms.swap_remove(0)
        } else {
            Expr::Any(terms)
        })
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut terms = vec![self.unary()?];
        while self
            .peek()
            .is_some_and(|t| is_keyword(t, "and") || *t == Token::Symbol("&&"))
        {
            self.position += 1;
            terms.push(self.unary()?);
        }
        Ok(if terms.len() == 1 {
            terms.swap_remove(0)
        } else {
            Expr::All(terms)
        })
    }

    fn unary(&mut self) -> Result<Expr, FilterError> {
        let Some(token) = self.peek() else {
            return Err(self.error_here("expected a field, `not` or `(`, found the end"));
        };
        if is_keyword(token, "not") || *token == Token::Symbol("!") {
            self.enter()?;
            self.position += 1;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        if *token == Token::Open {
            self.enter()?;
            let open_column = self.column();
            self.position += 1;
            let inner = self.or()?;
            if self.peek() != Some(&Token::Close) {
                let found = self.found();
                return Err(self.error_here(format!(
                    "expected `)` to close the `(` at column {open_column}, found {found}"
                )));
            }
            self.position += 1;
            self.depth -= 1;
            return Ok(inner);
        }
        self.test()
    }

    fn enter(&mut self) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error_here(format!(
                "nested too deep: at most {MAX_DEPTH} levels of parentheses and `not`"
            )));
        }
        Ok(())
    }

    fn test(&mut self) -> Result<Expr, FilterError> {
        let field_column = self.column();
        let name = match self.peek() {
            Some(Token::Word(word))
                if !["and", "or", "not"]
                    .iter()
                    .any(|k| word.eq_ignore_ascii_case(k)) =>
            {
                word.clone()
            }
            _ => {
                let found = self.found();
                return Err(self.error_here(format!("expected a field name, found {found}")));
            }
        };
        let Some((field, field_type)) = lookup(&name) else {
            return Err(FilterError::at(field_column, unknown_field(&name)));
        };
        self.position += 1;
        let Some((op, op_text)) = self.peek().and_then(operator) else {
            return match self.peek() {
                Some(Token::Str(_) | Token::Number(_) | Token::Duration(_)) => {
                    let found = self.found();
                    Err(self.error_here(format!(
                        "expected an operator after `{name}` ({OPERATORS}), found {found}"
                    )))
                }
                _ => Ok(Expr::Test(field, Comparison::Truthy)),
            };
        };
        self.position += 1;
        let literal_column = self.column();
        let Some(literal) = self.tokens.get(self.position).map(|s| s.token.clone()) else {
            return Err(
                self.error_here(format!("expected a value after `{op_text}`, found the end"))
            );
        };
        let comparison = self
            .comparison(&name, field_type, op, op_text, literal)
            .map_err(|message| FilterError::at(literal_column, message))?;
        self.position += 1;
        Ok(Expr::Test(field, comparison))
    }

    /// Checks the literal against the field's type and the operator; the error is the message.
    fn comparison(
        &mut self,
        name: &str,
        field_type: FieldType,
        op: Operator,
        op_text: &str,
        literal: Token,
    ) -> Result<Comparison, String> {
        let kind = field_type.describe();
        match field_type {
            FieldType::String | FieldType::Enumerated(_) => {
                let text = match literal {
                    Token::Str(text) => text,
                    Token::Number(n) => {
                        return Err(format!(
                            "{name} is a string: quote the value, e.g. {name} {op_text} \"{n}\""
                        ));
                    }
                    Token::Word(word) => {
                        return Err(format!("strings are quoted: {name} {op_text} \"{word}\""));
                    }
                    other => {
                        return Err(format!(
                            "{name} is a string: expected a quoted string after `{op_text}`, found {}",
                            other.describe()
                        ));
                    }
                };
                let text_op = match op {
                    Operator::Number(NumberOp::Equal) => TextOp::Equal,
                    Operator::Number(NumberOp::NotEqual) => TextOp::NotEqual,
                    Operator::Number(_) => {
                        return Err(format!(
                            "`{op_text}` compares numbers and durations; {name} is a string \
                             (use ==, !=, =~, !~, contains, startsWith, endsWith)"
                        ));
                    }
                    Operator::Regex(matches) => return self.regex(&text, matches),
                    Operator::Contains => TextOp::Contains,
                    Operator::StartsWith => TextOp::StartsWith,
                    Operator::EndsWith => TextOp::EndsWith,
                };
                if let FieldType::Enumerated(values) = field_type {
                    if matches!(text_op, TextOp::Equal | TextOp::NotEqual)
                        && !values.contains(&text.as_str())
                    {
                        return Err(format!(
                            "{name} is one of {}, not {text:?}",
                            values.join(", ")
                        ));
                    }
                }
                Ok(Comparison::Text(text_op, text))
            }
            FieldType::Number | FieldType::Duration => {
                let Operator::Number(number_op) = op else {
                    return Err(format!(
                        "`{op_text}` works on strings; {name} is {kind} (use ==, !=, <, <=, >, >=)"
                    ));
                };
                let value = match (literal, field_type) {
                    (Token::Number(n), _) => n,
                    (Token::Duration(seconds), FieldType::Duration) => seconds,
                    (Token::Duration(_), _) => {
                        return Err(format!(
                            "{name} is a number, not a duration: write a plain number"
                        ));
                    }
                    (other, _) => {
                        let example = if field_type == FieldType::Duration {
                            "latency > 250ms"
                        } else {
                            "code >= 500"
                        };
                        return Err(format!(
                            "{name} is {kind}: expected a {} after `{op_text}` (e.g. {example}), found {}",
                            if field_type == FieldType::Duration {
                                "duration"
                            } else {
                                "number (no quotes)"
                            },
                            other.describe()
                        ));
                    }
                };
                Ok(Comparison::Number(number_op, value))
            }
            FieldType::Bool => {
                let equal = match op {
                    Operator::Number(NumberOp::Equal) => true,
                    Operator::Number(NumberOp::NotEqual) => false,
                    _ => return Err(format!("{name} is a bool: use == or != with true or false")),
                };
                let value = match literal {
                    Token::Word(word) if word.eq_ignore_ascii_case("true") => true,
                    Token::Word(word) if word.eq_ignore_ascii_case("false") => false,
                    other => {
                        return Err(format!(
                            "{name} is a bool: expected true or false, found {}",
                            other.describe()
                        ));
                    }
                };
                Ok(Comparison::Bool(value == equal))
            }
        }
    }

    fn regex(&mut self, pattern: &str, matches: bool) -> Result<Comparison, String> {
        self.regexes += 1;
        if self.regexes > MAX_REGEXES {
            return Err(format!("at most {MAX_REGEXES} regexes in one filter"));
        }
        // Anchored, as PromQL's =~: `namespace =~ "kube-.*"` does not match "my-kube-x".
        let regex = RegexBuilder::new(&format!("^(?:{pattern})$"))
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| match e {
                regex::Error::CompiledTooBig(limit) => {
                    format!("regex too large once compiled (limit {limit} bytes)")
                }
                other => {
                    let text = other.to_string();
                    let reason = text
                        .lines()
                        .find_map(|line| line.strip_prefix("error: "))
                        .unwrap_or(&text)
                        .to_owned();
                    format!("bad regex {pattern:?}: {reason}")
                }
            })?;
        Ok(Comparison::Regex(regex, matches))
    }
}

fn unknown_field(name: &str) -> String {
    let close = suggestions(name);
    let known: Vec<&str> = FIELDS.iter().map(|(known, ..)| *known).collect();
    let hint = match close.as_slice() {
        [] => String::new(),
        [one] => format!("did you mean {one}? "),
        many => format!("did you mean one of {}? ", many.join(", ")),
    };
    format!(
        "unknown field `{name}`: {hint}known fields: {}",
        known.join(", ")
    )
}
