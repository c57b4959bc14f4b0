//! Tool argument schemas: derived from the argument type ([`parameters_of`],
//! with `schemars`), and checked before each call ([`ArgumentCheck`]).
//!
//! Checking against the schema the model was shown, rather than relying on
//! deserialization alone, gives the model one error that names the field
//! (`expression: 5 is not of type "string"`) and covers tools whose
//! arguments never become a Rust type, such as an MCP server's.
//!
//! The check uses the `jsonschema` crate, behind the default-on feature
//! `jsonschema`; without it, arguments are checked only by the tool's own
//! deserialization.

use schemars::JsonSchema;
use serde_json::{json, Value};

use super::ToolError;
use crate::schema::{schema_of, SchemaCheck};

/// The JSON Schema of `T` as a tool's `parameters`: subschemas inlined,
/// without the `$schema` and `title` keys (they only lengthen prompts),
/// and an object schema for a type that accepts any JSON
/// (`serde_json::Value`), since providers expect one.
///
/// ```
/// use schemars::JsonSchema;
/// use serde::Deserialize;
///
/// #[derive(Deserialize, JsonSchema)]
/// struct Args {
///     /// The city to look up.
///     city: String,
///     days: Option<u8>,
/// }
///
/// let schema = statewise::tool::parameters_of::<Args>();
/// assert_eq!(schema["type"], "object");
/// assert_eq!(schema["required"], serde_json::json!(["city"]));
/// assert_eq!(schema["properties"]["city"]["description"], "The city to look up.");
/// ```
pub fn parameters_of<T: JsonSchema + ?Sized>() -> Value {
    match schema_of::<T>() {
        schema @ Value::Object(_) => schema,
        // `true`: anything goes.
        _ => json!({"type": "object"}),
    }
}

/// A tool's parameter schema, compiled once, checking arguments before the
/// call.
pub(crate) struct ArgumentCheck {
    check: Option<SchemaCheck>,
}

impl std::fmt::Debug for ArgumentCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArgumentCheck")
            .field("checks", &self.check.is_some())
            .finish()
    }
}

impl ArgumentCheck {
    /// Compiles `tool`'s schema. A schema that does not compile checks
    /// nothing (the tool still rejects what it cannot read), with a warning.
    pub(crate) fn new(tool: &str, schema: &Value) -> Self {
        let check = match SchemaCheck::new(schema) {
            Ok(check) => Some(check),
            Err(error) => {
                tracing::warn!(tool, %error, "tool schema does not compile; arguments go unchecked");
                None
            }
        };
        ArgumentCheck { check }
    }

    /// The first way `arguments` break the schema, as the error the model
    /// is shown (without the `jsonschema` feature, none: the tool still
    /// rejects what it cannot read).
    pub(crate) fn check(&self, tool: &str, arguments: &Value) -> Result<(), ToolError> {
        let Some(check) = &self.check else {
            return Ok(());
        };
        match check.problems(arguments).into_iter().next() {
            None => Ok(()),
            Some(problem) => Err(ToolError::InvalidArguments {
                tool: tool.to_owned(),
                field: problem.field,
                message: problem.message,
            }),
        }
    }
}
