//! The calling convention of a function's handler: Lambda's (the default), or OpenFaaS's
//! `python3-http` template (`handle(event, context)` with `event.body`, `event.headers`,
//! `event.method`, `event.query`, `event.path`), chosen explicitly because the two
//! signatures cannot be told apart.

use serde::{Deserialize, Serialize};

use super::{Fields, SpecError};
use crate::Runtime;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HandlerStyle {
    #[default]
    Lambda,
    /// OpenFaaS's `python3-http` template (Python only).
    Openfaas,
}

impl HandlerStyle {
    pub fn as_str(self) -> &'static str {
        match self {
            HandlerStyle::Lambda => "lambda",
            HandlerStyle::Openfaas => "openfaas",
        }
    }

    pub(super) fn is_default(&self) -> bool {
        *self == HandlerStyle::Lambda
    }
}

/// `handler_style`: `lambda` (the default) or `openfaas` (Python only).
pub(super) fn parse_handler_style(fields: &Fields<'_>, runtime: Runtime) -> Result<HandlerStyle, SpecError> {
    let style = match fields.string("handler_style")? {
        None | Some("lambda") => HandlerStyle::Lambda,
        Some("openfaas") => HandlerStyle::Openfaas,
        Some(other) => {
            return Err(SpecError::invalid(
                "handler_style",
                format!("handler_style {other:?} is not one of lambda, openfaas"),
            ))
        }
    };
    if style == HandlerStyle::Openfaas && runtime != Runtime::Python {
        return Err(SpecError::invalid(
            "handler_style",
            "handler_style openfaas is OpenFaaS's python3-http template: Python only".to_owned(),
        ));
    }
    Ok(style)
}
