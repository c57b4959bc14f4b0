//! JSON Schemas of Rust types ([`schema_of`]) and checks of values against
//! them ([`SchemaCheck`]), shared by tool arguments and typed outputs.
//!
//! A problem names the field it is about (`email`, `items.2.price`), since
//! it is shown to a model that must fix exactly that field. The check uses
//! the `jsonschema` crate, behind the default-on feature `jsonschema`;
//! without it, [`SchemaCheck`] finds no problems and callers rely on
//! deserialization alone. A leaf: it imports nothing from the crate.

use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::Value;

/// The JSON Schema of `T`: subschemas inlined, without the `$schema` and
/// `title` keys (they only lengthen prompts). A type that accepts any JSON
/// gives `true`.
///
/// ```
/// #[derive(schemars::JsonSchema)]
/// struct Point { x: i32, y: Option<i32> }
///
/// let schema = statewise::schema::schema_of::<Point>();
/// assert_eq!(schema["required"], serde_json::json!(["x"]));
/// ```
pub fn schema_of<T: JsonSchema + ?Sized>() -> Value {
    let settings = SchemaSettings::draft2020_12().with(|s| {
        s.inline_subschemas = true;
        s.meta_schema = None;
    });
    let schema = settings.into_generator().into_root_schema_for::<T>();
    match schema.to_value() {
        Value::Object(mut map) => {
            map.remove("title");
            match map.is_empty() {
                true => Value::Bool(true),
                false => Value::Object(map),
            }
        }
        other => other,
    }
}

/// One way a value breaks a schema.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    /// The field, dotted (`items.2.price`); `None` for the value as a whole.
    pub field: Option<String>,
    /// What is wrong, as the validator says it.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{field}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// A schema compiled once, checking values against it.
pub struct SchemaCheck {
    #[cfg(feature = "jsonschema")]
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for SchemaCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaCheck").finish_non_exhaustive()
    }
}

impl SchemaCheck {
    /// Compiles `schema`; the error says why it does not compile.
    #[cfg(feature = "jsonschema")]
    pub fn new(schema: &Value) -> Result<Self, String> {
        let validator = jsonschema::validator_for(schema).map_err(|e| e.to_string())?;
        Ok(SchemaCheck { validator })
    }

    /// Without the `jsonschema` feature there is nothing to compile.
    #[cfg(not(feature = "jsonschema"))]
    pub fn new(_schema: &Value) -> Result<Self, String> {
        Ok(SchemaCheck {})
    }

    /// Every way `value` breaks the schema, in the validator's order;
    /// empty when it fits (always, without the `jsonschema` feature).
    #[cfg(feature = "jsonschema")]
    pub fn problems(&self, value: &Value) -> Vec<Problem> {
        use jsonschema::error::ValidationErrorKind;
        self.validator
            .iter_errors(value)
            .map(|error| {
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
                Problem {
                    field: (!field.is_empty()).then(|| field.join(".")),
                    message: error.to_string(),
                }
            })
            .collect()
    }

    /// Without the `jsonschema` feature, every value fits.
    #[cfg(not(feature = "jsonschema"))]
    pub fn problems(&self, _value: &Value) -> Vec<Problem> {
        Vec::new()
    }
}

#[cfg(all(test, feature = "jsonschema"))]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn problems_name_their_fields() {
        let check = SchemaCheck::new(&json!({
            "type": "object",
            "properties": {"name": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}},
            "required": ["name"]
        }))
        .unwrap();
        assert!(check.problems(&json!({"name": "Ada"})).is_empty());
        let problems = check.problems(&json!({"tags": ["a", 2]}));
        let fields: Vec<_> = problems.iter().map(|p| p.field.as_deref()).collect();
        assert!(fields.contains(&Some("name")), "{problems:?}");
        assert!(fields.contains(&Some("tags.1")), "{problems:?}");
    }

    #[test]
    fn a_broken_schema_says_why() {
        assert!(SchemaCheck::new(&json!({"type": 12})).is_err());
    }
}
