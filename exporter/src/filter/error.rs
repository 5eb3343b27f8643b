//! Why a filter does not parse: a column and a message.

/// Why a filter text does not parse, and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct FilterError {
    /// 1-based, in chars (not bytes) of the filter text.
    pub column: usize,
    pub message: String,
}

impl FilterError {
    pub(super) fn at(column: usize, message: impl Into<String>) -> FilterError {
        FilterError {
            column,
            message: message.into(),
        }
    }

    /// The error under the filter text with a caret at the column, for a terminal:
    /// ```text
    /// column 6: unknown field `cod`: ...
    ///   code = 5
    ///        ^
    /// ```
    pub fn render(&self, source: &str) -> String {
        let line: String = source
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let caret = " ".repeat(self.column.saturating_sub(1)) + "^";
        format!("{self}\n  {line}\n  {caret}")
    }
}
