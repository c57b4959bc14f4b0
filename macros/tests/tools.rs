//! Tools made by `#[statewise::tool]`, called as the toolbox calls them:
//! JSON in, JSON out, with the schema and description the model is shown.

use serde_json::json;
use statewise::tool::{DynTool, ToolContext, ToolRegistry};

/// Adds two numbers.
///
/// Not for the model: only the first paragraph is the description.
#[statewise::tool]
async fn add(
    /// The first number.
    a: f64,
    /// The second number.
    b: f64,
) -> f64 {
    a + b
}

#[derive(Debug, thiserror::Error)]
#[error("no city called {0}")]
pub struct NoCity(String);

/// Looks up a city's population.
#[statewise::tool(name = "population")]
pub async fn city_population(city: String, ctx: ToolContext) -> Result<u64, NoCity> {
    let _run = ctx.run_id;
    match city.as_str() {
        "Lyon" => Ok(522_250),
        _ => Err(NoCity(city)),
    }
}

/// Forgets everything.
#[statewise::tool]
async fn forget() {}

#[tokio::test]
async fn a_function_becomes_a_tool_with_its_docs_as_descriptions() {
    let spec = Add.spec();
    assert_eq!(spec.name, "add");
    assert_eq!(spec.description, "Adds two numbers.");
    assert_eq!(
        spec.parameters,
        json!({
            "type": "object",
            "properties": {
                "a": {"type": "number", "format": "double", "description": "The first number."},
                "b": {"type": "number", "format": "double", "description": "The second number."}
            },
            "required": ["a", "b"]
        })
    );
    let out = Add
        .call_json(json!({"a": 2, "b": 3.5}), ToolContext::default())
        .await
        .unwrap();
    assert_eq!(out, json!(5.5));
    // The function is still a function.
    assert_eq!(add(1.0, 2.0).await, 3.0);
}

#[tokio::test]
async fn results_context_names_and_units() {
    let tools = ToolRegistry::new().with(CityPopulation).with(Forget);
    let population = tools.get("population").expect("named by the option");
    let lyon = population
        .call_json(json!({"city": "Lyon"}), ToolContext::default())
        .await
        .unwrap();
    assert_eq!(lyon, json!(522_250));
    let err = population
        .call_json(json!({"city": "Atlantis"}), ToolContext::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no city called Atlantis"), "{err}");
    let spec = population.spec();
    assert_eq!(
        spec.parameters["required"],
        json!(["city"]),
        "the context is not an argument"
    );
    let forgot = Forget
        .call_json(json!({}), ToolContext::default())
        .await
        .unwrap();
    assert_eq!(forgot, serde_json::Value::Null, "a unit result");
    assert_eq!(
        Forget.spec().parameters,
        json!({"type": "object", "properties": {}})
    );
}

/// Returns the weather in a city.
#[statewise::tool]
async fn weather(
    /// The city, e.g. Lyon.
    city: String,
) -> Result<String, std::io::Error> {
    Ok(format!("Sunny in {city}"))
}

#[tokio::test]
async fn the_readme_tool_is_ten_lines_and_works() {
    let tools = ToolRegistry::new().with(Weather);
    let out = tools
        .get("weather")
        .unwrap()
        .call_json(json!({"city": "Lyon"}), ToolContext::default())
        .await
        .unwrap();
    assert_eq!(out, json!("Sunny in Lyon"));
    assert_eq!(
        Weather.spec().parameters["properties"]["city"]["description"],
        "The city, e.g. Lyon."
    );
}
