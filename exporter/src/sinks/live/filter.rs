//! PLACEHOLDER for `crate::filter` (the filter language, built on its own branch): the same API,
//! understanding only `<field> == "<text>"` on verb, resource, namespace and component. Deleted
//! when the real module is merged.

use crate::k8s::ApiRequest;

#[derive(Clone, Debug, Default)]
pub struct Filter {
    equals: Option<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterError {
    pub column: usize,
    pub message: String,
}

impl Filter {
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        if text.trim().is_empty() {
            return Ok(Filter::default());
        }
        let Some((field, value)) = text.split_once("==") else {
            return Err(FilterError {
                column: text.chars().count() + 1,
                message: "expected ==".into(),
            });
        };
        let field = field.trim();
        if !matches!(field, "verb" | "resource" | "namespace" | "component") {
            return Err(FilterError {
                column: 1 + text.chars().take_while(|c| c.is_whitespace()).count(),
                message: format!("unknown field {field:?}"),
            });
        }
        let value = value.trim();
        let Some(value) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
            return Err(FilterError {
                column: text.find("==").map_or(1, |i| text[..i].chars().count() + 3),
                message: "expected a quoted string".into(),
            });
        };
        Ok(Filter {
            equals: Some((field.to_string(), value.to_string())),
        })
    }

    pub fn matches(&self, request: &ApiRequest) -> bool {
        let Some((field, value)) = &self.equals else {
            return true;
        };
        let actual = match field.as_str() {
            "verb" => &request.verb,
            "resource" => &request.resource,
            "namespace" => &request.namespace,
            _ => &request.component,
        };
        actual == value
    }
}
