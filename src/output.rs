//! Typed outputs: the shape a run's answer must take ([`Output`]), checked
//! against a JSON Schema and your validators, and what to tell the model
//! when it misses.
//!
//! The machine hands the run's [`Output`] to every state in
//! [`RunSettings::output`](crate::env::RunSettings::output); the state that
//! writes the answer asks its model for the schema (through the provider's
//! own constraint where there is one, [`Output::request_schema`]), repairs
//! the reply, [`check`](Output::check)s it and, on problems, asks again
//! with [`Output::correction`], at most [`Output::retries`] times. The
//! checks here are plain functions, so a custom state does the same with
//! them, and they are tested without a model. Imports only
//! [`schema`](crate::schema).

use std::borrow::Cow;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::schema::{schema_of, Problem, SchemaCheck};

type Validator = dyn Fn(&Value) -> Result<(), Problem> + Send + Sync;

/// How often a typed output is asked for again after a reply that does not
/// fit, unless [`Output::retries`] says otherwise.
pub const DEFAULT_RETRIES: u32 = 2;

/// The shape a run's answer must take: a JSON Schema, validators and how
/// often to ask again.
///
/// ```
/// use statewise::output::Output;
///
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Contact { name: String, email: Option<String> }
///
/// let output = Output::of::<Contact>()
///     .validate(|c: &Contact| match c.name.trim().is_empty() {
///         true => Err("name is empty: write the person's name".into()),
///         false => Ok(()),
///     });
/// assert!(output.check(&serde_json::json!({"name": "Ada", "email": null})).is_ok());
/// let problems = output.check(&serde_json::json!({"email": 3})).unwrap_err();
/// assert!(problems.iter().any(|p| p.field.as_deref() == Some("name")));
/// ```
#[derive(Clone)]
pub struct Output {
    name: Cow<'static, str>,
    schema: Value,
    check: Option<Arc<SchemaCheck>>,
    validators: Vec<Arc<Validator>>,
    retries: u32,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output")
            .field("name", &self.name)
            .field("schema", &self.schema)
            .field("validators", &self.validators.len())
            .field("retries", &self.retries)
            .finish()
    }
}

impl Output {
    /// The output `T`: its schema (from `schemars`), and a reply must also
    /// deserialize into `T`.
    pub fn of<T: DeserializeOwned + JsonSchema + 'static>() -> Self {
        let schema = schema_of::<T>();
        let name = short_type_name(std::any::type_name::<T>());
        // A derived schema always compiles; should it not, deserializing
        // into `T` still checks every reply.
        let check = SchemaCheck::new(&schema).ok().map(Arc::new);
        Output {
            name: name.into(),
            schema,
            check,
            validators: vec![Arc::new(|value: &Value| {
                serde_json::from_value::<T>(value.clone())
                    .map(drop)
                    .map_err(|e| Problem {
                        field: None,
                        message: e.to_string(),
                    })
            })],
            retries: DEFAULT_RETRIES,
        }
    }

    /// An output given by a JSON Schema alone (say, read from a file), named
    /// `name` in prompts.
    pub fn from_schema(name: impl Into<String>, schema: Value) -> Result<Self, OutputError> {
        let check = SchemaCheck::new(&schema).map_err(OutputError::Schema)?;
        Ok(Output {
            name: Cow::Owned(name.into()),
            schema,
            check: Some(Arc::new(check)),
            validators: Vec::new(),
            retries: DEFAULT_RETRIES,
        })
    }

    /// Adds a check the schema cannot say (a date in the future, an email
    /// with an `@`): `Err` says what is wrong, in words the model can act
    /// on. A reply that does not deserialize into `T` fails with that
    /// error instead.
    pub fn validate<T: DeserializeOwned + 'static>(
        mut self,
        validator: impl Fn(&T) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.validators.push(Arc::new(move |value: &Value| {
            let typed = serde_json::from_value::<T>(value.clone()).map_err(|e| Problem {
                field: None,
                message: e.to_string(),
            })?;
            validator(&typed).map_err(|message| Problem {
                field: None,
                message,
            })
        }));
        self
    }

    /// How often to ask again after a reply that does not fit (default
    /// [`DEFAULT_RETRIES`]).
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// How often a state asks again after a reply that does not fit.
    pub fn max_retries(&self) -> u32 {
        self.retries
    }

    /// The output's name in prompts (the type's name for [`Output::of`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The schema replies are checked against.
    pub fn schema(&self) -> &Value {
        &self.schema
    }

    /// The schema to send as [`ChatRequest::response_schema`](crate::model::ChatRequest):
    /// [`strict`] where the schema allows it (what OpenAI's strict mode
    /// takes), else as it is. Replies are still checked against
    /// [`Output::schema`].
    pub fn request_schema(&self) -> Value {
        strict(&self.schema).unwrap_or_else(|| self.schema.clone())
    }

    /// What to tell the model about the reply's form, for the system
    /// prompt: a JSON object of this schema and nothing else. When the
    /// provider holds the reply to the schema itself (`constrained`), the
    /// object's field names are enough, and small models copy less of the
    /// schema's text into the fields.
    pub fn instructions(&self, constrained: bool) -> String {
        let fields = self.schema["properties"].as_object().map(|p| {
            let names: Vec<&str> = p.keys().map(String::as_str).collect();
            names.join(", ")
        });
        match (constrained, fields) {
            (true, Some(fields)) => format!(
                "Reply with only one JSON object (a {}) with the fields {fields}.",
                self.name
            ),
            _ => format!(
                "Reply with only one JSON object (a {}) that fits this JSON Schema, and no other text:\n{}",
                self.name, self.schema
            ),
        }
    }

    /// Every way `value` misses: the schema's problems first, then the
    /// first failing validator's (validators run only on a value that fits
    /// the schema).
    pub fn check(&self, value: &Value) -> Result<(), Vec<Problem>> {
        let problems = match &self.check {
            Some(check) => check.problems(value),
            None => Vec::new(),
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        match self.validators.iter().find_map(|v| v(value).err()) {
            Some(problem) => Err(vec![problem]),
            None => Ok(()),
        }
    }

    /// What to tell the model after a reply with `problems`, as the next
    /// user message: each problem, then the request to write the object
    /// again.
    pub fn correction(&self, problems: &[Problem]) -> String {
        let list: Vec<String> = problems.iter().map(|p| format!("- {p}")).collect();
        format!(
            "Your reply does not fit the schema:\n{}\nWrite the whole {} again as one JSON object, fixing exactly these problems.",
            list.join("\n"),
            self.name
        )
    }
}

/// `schema` as OpenAI's strict structured outputs take it: every object's
/// properties all required (those that were optional may be `null`) and no
/// others allowed; `None` when an object leaves its keys open (a map), which
/// strict mode cannot say.
pub fn strict(schema: &Value) -> Option<Value> {
    let mut out = schema.clone();
    strict_in_place(&mut out).then_some(out)
}

fn strict_in_place(schema: &mut Value) -> bool {
    let Value::Object(map) = schema else {
        return true;
    };
    for key in ["items", "not", "if", "then", "else"] {
        if let Some(sub) = map.get_mut(key) {
            if !strict_in_place(sub) {
                return false;
            }
        }
    }
    for key in ["anyOf", "oneOf", "allOf", "prefixItems"] {
        if let Some(Value::Array(subs)) = map.get_mut(key) {
            if !subs.iter_mut().all(strict_in_place) {
                return false;
            }
        }
    }
    for key in ["$defs", "definitions"] {
        if let Some(Value::Object(defs)) = map.get_mut(key) {
            if !defs.values_mut().all(strict_in_place) {
                return false;
            }
        }
    }
    let is_object = map.get("type") == Some(&Value::String("object".into()));
    let Some(Value::Object(properties)) = map.get_mut("properties") else {
        // An object without properties is a map: its keys stay open.
        return !is_object;
    };
    if !properties.values_mut().all(strict_in_place) {
        return false;
    }
    let required: Vec<String> = match map.get("required") {
        Some(Value::Array(names)) => names
            .iter()
            .filter_map(|n| n.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    let Some(Value::Object(properties)) = map.get_mut("properties") else {
        return true;
    };
    for (name, property) in properties.iter_mut() {
        if !required.contains(name) {
            *property = nullable(std::mem::take(property));
        }
    }
    let all: Vec<Value> = properties.keys().cloned().map(Value::String).collect();
    if matches!(map.get("additionalProperties"), Some(v) if v != &Value::Bool(false)) {
        return false;
    }
    map.insert("required".into(), Value::Array(all));
    map.insert("additionalProperties".into(), Value::Bool(false));
    true
}

/// `schema` also admitting `null`.
fn nullable(schema: Value) -> Value {
    let mut map = match schema {
        Value::Object(map) => map,
        other => return other, // `true` admits null already
    };
    match map.get_mut("type") {
        Some(Value::String(t)) if t == "null" => {}
        Some(Value::String(t)) => {
            let t = std::mem::take(t);
            map.insert("type".into(), Value::Array(vec![t.into(), "null".into()]));
        }
        Some(Value::Array(types)) => {
            if !types.iter().any(|t| t == "null") {
                types.push("null".into());
            }
        }
        _ => {
            let mut null = Map::new();
            null.insert("type".into(), "null".into());
            return Value::Object(Map::from_iter([(
                "anyOf".to_owned(),
                Value::Array(vec![Value::Object(map), Value::Object(null)]),
            )]));
        }
    }
    Value::Object(map)
}

/// `my_crate::module::Contact<T>` as `Contact<T>`.
fn short_type_name(full: &str) -> String {
    let head = full.split('<').next().unwrap_or(full);
    let short = head.rsplit("::").next().unwrap_or(head);
    format!("{short}{}", &full[head.len()..])
}

/// Why a typed output could not be had.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum OutputError {
    /// The schema given does not compile.
    #[error("the output schema does not compile: {0}; pass a JSON Schema object")]
    Schema(String),
    /// The run ended without an answer.
    #[error("the run gave no answer to read as {name}; check that a state writes `env.answer`")]
    NoAnswer {
        /// The output's name.
        name: String,
    },
    /// No reply fit, after every retry. Nothing is lost: the last reply is
    /// here as the model wrote it.
    #[error("no reply fit {name} after {attempts} attempts: {}", list(problems))]
    Invalid {
        /// The output's name.
        name: String,
        /// How many replies were read.
        attempts: u32,
        /// What was wrong with the last one.
        problems: Vec<Problem>,
        /// The last reply, as the model wrote it.
        raw: String,
    },
}

fn list(problems: &[Problem]) -> String {
    let shown: Vec<String> = problems.iter().map(Problem::to_string).collect();
    shown.join("; ")
}

impl OutputError {
    /// The kind of error, typed.
    pub fn kind(&self) -> OutputErrorKind {
        match self {
            OutputError::Schema(_) => OutputErrorKind::Schema,
            OutputError::NoAnswer { .. } => OutputErrorKind::NoAnswer,
            OutputError::Invalid { .. } => OutputErrorKind::Invalid,
        }
    }
}

/// The kinds of [`OutputError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OutputErrorKind {
    /// [`OutputError::Schema`].
    Schema,
    /// [`OutputError::NoAnswer`].
    NoAnswer,
    /// [`OutputError::Invalid`].
    Invalid,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize, JsonSchema, PartialEq)]
    struct Contact {
        name: String,
        email: Option<String>,
        tags: Vec<String>,
    }

    #[test]
    fn strict_makes_every_property_required_and_optional_ones_nullable() {
        let schema = Output::of::<Contact>().request_schema();
        assert_eq!(schema["required"], json!(["name", "email", "tags"]));
        assert_eq!(schema["additionalProperties"], json!(false));
        assert_eq!(
            schema["properties"]["email"]["type"],
            json!(["string", "null"])
        );
        assert_eq!(schema["properties"]["name"]["type"], json!("string"));
    }

    #[test]
    fn strict_is_none_for_open_maps() {
        let map = json!({"type": "object", "additionalProperties": {"type": "string"}});
        assert_eq!(strict(&map), None);
        let nested = json!({"type": "object", "properties": {"m": map}});
        assert_eq!(strict(&nested), None);
    }

    #[test]
    #[cfg(feature = "jsonschema")]
    fn check_lists_schema_problems_then_validators() {
        let output = Output::of::<Contact>().validate(|c: &Contact| match c.tags.is_empty() {
            true => Err("tags is empty: add at least one tag".into()),
            false => Ok(()),
        });
        let problems = output.check(&json!({"name": 5, "tags": []})).unwrap_err();
        assert_eq!(problems[0].field.as_deref(), Some("name"), "{problems:?}");
        let problems = output
            .check(&json!({"name": "Ada", "tags": []}))
            .unwrap_err();
        assert_eq!(problems[0].message, "tags is empty: add at least one tag");
        assert!(output.check(&json!({"name": "Ada", "tags": ["x"]})).is_ok());
    }

    #[test]
    fn a_value_that_does_not_deserialize_is_a_problem_without_jsonschema_too() {
        let problems = Output::of::<Contact>()
            .check(&json!({"email": "a@b"}))
            .unwrap_err();
        assert!(!problems.is_empty());
    }

    #[test]
    fn correction_lists_each_problem() {
        let output = Output::of::<Contact>();
        let text = output.correction(&[
            Problem {
                field: Some("name".into()),
                message: "5 is not of type \"string\"".into(),
            },
            Problem {
                field: None,
                message: "missing field `tags`".into(),
            },
        ]);
        assert!(
            text.contains("- name: 5 is not of type \"string\""),
            "{text}"
        );
        assert!(text.contains("- missing field `tags`"), "{text}");
        assert!(text.contains("Contact"), "{text}");
    }

    #[test]
    fn from_schema_rejects_a_broken_schema_only_with_jsonschema() {
        let broken = Output::from_schema("x", json!({"type": 12}));
        assert_eq!(broken.is_err(), cfg!(feature = "jsonschema"));
    }

    #[test]
    fn short_names_drop_the_path() {
        assert_eq!(short_type_name("a::b::Contact"), "Contact");
        assert_eq!(short_type_name("a::Wrap<b::C>"), "Wrap<b::C>");
    }
}
