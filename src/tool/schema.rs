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

#[cfg(feature = "jsonschema")]
use jsonschema::error::ValidationErrorKind;
use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::{json, Value};

use super::ToolError;

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
    let settings = SchemaSettings::draft2020_12().with(|s| {
        s.inline_subschemas = true;
        s.meta_schema = None;
    });
    let schema = settings.into_generator().into_root_schema_for::<T>();
    match schema.to_value() {
        Value::Object(mut map) => {
            map.remove("title");
            if map.is_empty() {
                return json!({"type": "object"});
            }
            Value::Object(map)
        }
        // `true`: anything goes.
        _ => json!({"type": "object"}),
    }
}

/// A tool's parameter schema, compiled once, checking arguments before the
/// call.
pub(crate) struct ArgumentCheck {
    #[cfg(feature = "jsonschema")]
    validator: Option<jsonschema::Validator>,
}

impl std::fmt::Debug for ArgumentCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        #[cfg(feature = "jsonschema")]
        let checks = self.validator.is_some();
        #[cfg(not(feature = "jsonschema"))]
        let checks = false;
        f.debug_struct("ArgumentCheck")
            .field("checks", &checks)
            .finish()
    }
}

impl ArgumentCheck {
    /// Compiles `tool`'s schema. A schema that does not compile checks
    /// nothing (the tool still rejects what it cannot read), with a warning.
    #[cfg(feature = "jsonschema")]
    pub(crate) fn new(tool: &str, schema: &Value) -> Self {
        let validator = match jsonschema::validator_for(schema) {
            Ok(v) => Some(v),
            Err(error) => {
                tracing::warn!(tool, %error, "tool schema does not compile; arguments go unchecked");
                None
            }
        };
        ArgumentCheck { validator }
    }

    /// Without the `jsonschema` feature, nothing to compile.
    #[cfg(not(feature = "jsonschema"))]
    pub(crate) fn new(_tool: &str, _schema: &Value) -> Self {
        ArgumentCheck {}
    }

    /// Without the `jsonschema` feature, every argument passes here (the
    /// tool still rejects what it cannot read).
    #[cfg(not(feature = "jsonschema"))]
    pub(crate) fn check(&self, _tool: &str, _arguments: &Value) -> Result<(), ToolError> {
        Ok(())
    }

    /// The first way `arguments` break the schema, as the error the model
    /// is shown.
    #[cfg(feature = "jsonschema")]
    pub(crate) fn check(&self, tool: &str, arguments: &Value) -> Result<(), ToolError> {
        let Some(validator) = &self.validator else {
            return Ok(());
        };
        let Some(error) = validator.iter_errors(arguments).next() else {
            return Ok(());
        };
        let mut field: Vec<String> = error
            .instance_path()
            .as_str()
            .split('/')
            .skip(1)
            .map(|s| s.replace("~1", "/").replace("~0", "~"))
            .collect();
        if let ValidationErrorKind::Required { property } = error.kind() {
            field.push(
                property
                    .as_str()
                    .map_or_else(|| property.to_string(), str::to_owned),
            );
        }
        Err(ToolError::InvalidArguments {
            tool: tool.to_owned(),
            field: (!field.is_empty()).then(|| field.join(".")),
            message: error.to_string(),
        })
    }
}
