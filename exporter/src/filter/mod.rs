//! Filter stage: one request filter language over [`ApiRequest`] fields, in the spirit of
//! Kubeshark's KFL (`verb == "watch" and resource == "pods"`, `code >= 500`, `latency > 1s`,
//! `namespace =~ "kube-.*"`), used by `capture --filter`, `replay --filter` and the live view.
//! The language is documented in docs/filter.md.
//!
//! - `error`: `FilterError`, a column and a message.
//! - `lexer`: text to tokens with their columns.
//! - `parser`: tokens to a checked expression (fields resolved, literals type-checked, regexes
//!   compiled once, bounded in length, depth and regex size).
//! - `fields`: the field names and how each reads an `ApiRequest`, without allocating.
//! - `metrics`: the requests the filter kept out of the per-request outputs.

mod error;
mod fields;
mod lexer;
pub mod metrics;
mod parser;
#[cfg(test)]
mod tests;

pub use error::FilterError;
pub use fields::FIELDS;
pub use metrics::FilterMetrics;

use crate::k8s::ApiRequest;
use fields::FieldValue;
use parser::{Comparison, Expr, NumberOp, Parser, TextOp};

/// Longest filter text accepted, in bytes.
pub const MAX_FILTER_BYTES: usize = 4096;

/// A parsed, checked filter: cheap to evaluate, cheap to clone (compiled regexes are shared).
#[derive(Clone, Debug)]
pub struct Filter {
    source: String,
    /// `None`: the empty filter, which matches every request.
    expr: Option<Expr>,
}

impl Filter {
    /// Parses and checks `text`; empty or whitespace-only text matches every request.
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        if text.len() > MAX_FILTER_BYTES {
            let column = text
                .char_indices()
                .take_while(|(at, _)| *at < MAX_FILTER_BYTES)
                .count()
                + 1;
            return Err(FilterError::at(
                column,
                format!(
                    "filter is {} bytes, longer than the limit of {MAX_FILTER_BYTES}",
                    text.len()
                ),
            ));
        }
        let tokens = lexer::tokenize(text)?;
        let expr = if tokens.is_empty() {
            None
        } else {
            Some(Parser::new(tokens, text.chars().count() + 1).parse()?)
        };
        Ok(Filter {
            source: text.to_owned(),
            expr,
        })
    }

    pub fn matches(&self, request: &ApiRequest) -> bool {
        self.expr.as_ref().is_none_or(|expr| expr.matches(request))
    }

    /// The text the filter was parsed from, as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether this is the empty filter (every request matches).
    pub fn matches_all(&self) -> bool {
        self.expr.is_none()
    }
}

impl Expr {
    fn matches(&self, request: &ApiRequest) -> bool {
        match self {
            Expr::All(terms) => terms.iter().all(|term| term.matches(request)),
            Expr::Any(terms) => terms.iter().any(|term| term.matches(request)),
            Expr::Not(inner) => !inner.matches(request),
            Expr::Test(field, comparison) => comparison.holds(field.read(request)),
        }
    }
}

impl Comparison {
    fn holds(&self, value: FieldValue) -> bool {
        match (self, value) {
            (Comparison::Truthy, FieldValue::Str(text)) => !text.is_empty(),
            (Comparison::Truthy, FieldValue::Number(number)) => number.is_some(),
            (Comparison::Truthy, FieldValue::Bool(flag)) => flag,
            (Comparison::Text(op, wanted), FieldValue::Str(text)) => match op {
                TextOp::Equal => text == wanted,
                TextOp::NotEqual => text != wanted,
                TextOp::Contains => text.contains(wanted.as_str()),
                TextOp::StartsWith => text.starts_with(wanted.as_str()),
                TextOp::EndsWith => text.ends_with(wanted.as_str()),
            },
            (Comparison::Regex(regex, wanted), FieldValue::Str(text)) => {
                regex.is_match(text) == *wanted
            }
            // An absent number (no response code...) equals nothing, so only `!=` holds.
            (Comparison::Number(op, _), FieldValue::Number(None)) => *op == NumberOp::NotEqual,
            (Comparison::Number(op, wanted), FieldValue::Number(Some(number))) => match op {
                NumberOp::Equal => number == *wanted,
                NumberOp::NotEqual => number != *wanted,
                NumberOp::Less => number < *wanted,
                NumberOp::LessOrEqual => number <= *wanted,
                NumberOp::Greater => number > *wanted,
                NumberOp::GreaterOrEqual => number >= *wanted,
            },
            (Comparison::Bool(wanted), FieldValue::Bool(flag)) => flag == *wanted,
            // The parser type-checks every comparison against its field; nothing else occurs.
            _ => false,
        }
    }
}
