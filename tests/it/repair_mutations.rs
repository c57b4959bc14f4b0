//! Actions as a small model mangles them: each of a few valid actions goes
//! through each of the mistakes models make in JSON (a lost closer, single
//! or curly quotes, a quote left unescaped, a fence or tags around it, ...),
//! and must still be read as the action it was. Set
//! `REPAIR_MUTATIONS_VERBOSE=1` to list every case that is not.

use serde_json::{json, Value};
use statewise::action::{parse_action, ActionReader};
use statewise::Action;

/// The share of mangled actions that must read as the original.
const TARGET: f64 = 0.97;

fn actions() -> Vec<Value> {
    vec![
        json!({"tool_calls": [{"name": "calculator", "arguments": {"expression": "17 * 23"}}]}),
        json!({"final_answer": "Paris is the capital of France."}),
        json!({"tool_calls": [{"name": "search", "arguments": {"query": "weather in Oslo", "limit": 3}},
                              {"name": "clock", "arguments": {}}]}),
        json!({"final_answer": "The result is 42, as computed: 6 times 7."}),
        json!({"name": "get_weather", "arguments": {"city": "New York", "metric": true}}),
        json!({"final_answer": "Type \"ls\" to list the files."}),
        json!({"tool_calls": [{"name": "write_file", "arguments": {"path": "notes.txt", "text": "line one\nline two"}}]}),
        json!({"final_answer": "Yes: {\"a\": 1} is valid JSON."}),
        json!({"action": "calculator", "action_input": {"expression": "2 ** 10"}}),
        json!({"final_answer": "Café au lait costs €3 — in Zürich it's more."}),
        json!({"tool_calls": [{"name": "add_items", "arguments": {"items": ["milk", "eggs"], "count": 2}}]}),
    ]
}

/// One mistake: its name, and the text with it made (or `None` when it
/// does not apply to this action).
type Mutation = (&'static str, fn(&str) -> Option<String>);

fn mutations() -> Vec<Mutation> {
    vec![
        ("as written", |t| Some(t.to_owned())),
        ("pretty", |t| {
            let v: Value = serde_json::from_str(t).ok()?;
            serde_json::to_string_pretty(&v).ok()
        }),
        ("last closer lost", |t| Some(t[..t.len() - 1].to_owned())),
        ("all closers lost", |t| {
            Some(t.trim_end_matches(['}', ']']).to_owned())
        }),
        ("closing quote and closers lost", |t| {
            let cut = t.trim_end_matches(['}', ']']);
            cut.strip_suffix('"').map(str::to_owned)
        }),
        ("one closer too many", |t| Some(format!("{t}}}"))),
        ("trailing comma", |t| {
            let at = t.rfind('}')?;
            let inner = t[..at]
                .rfind(|c: char| matches!(c, '"' | '}' | ']' | 'e') || c.is_ascii_digit())?;
            Some(format!("{},{}", &t[..=inner], &t[inner + 1..]))
        }),
        ("single quotes", |t| {
            (!t.contains('\'') && !t.contains("\\\"")).then(|| t.replace('"', "'"))
        }),
        ("curly quotes", |t| {
            if t.contains("\\\"") {
                return None;
            }
            let mut open = true;
            Some(
                t.chars()
                    .map(|c| match c {
                        '"' => {
                            open = !open;
                            if open {
                                '\u{201d}'
                            } else {
                                '\u{201c}'
                            }
                        }
                        c => c,
                    })
                    .collect(),
            )
        }),
        ("unquoted keys", |t| {
            let v: Value = serde_json::from_str(t).ok()?;
            Some(unquoted_keys(&v))
        }),
        ("inner quotes unescaped", |t| {
            t.contains("\\\"").then(|| t.replace("\\\"", "\""))
        }),
        ("raw newline in a string", |t| {
            t.contains("\\n").then(|| t.replace("\\n", "\n"))
        }),
        ("fenced with prose", |t| {
            Some(format!(
                "Sure! Here is the action:\n```json\n{t}\n```\nLet me know if you need more."
            ))
        }),
        ("fence without a language", |t| {
            Some(format!("```\n{t}\n```"))
        }),
        ("prose after", |t| {
            Some(format!(
                "{t}\nThis calls the tool (see {{docs}}) and then answers."
            ))
        }),
        ("opening brace lost", |t| {
            t.strip_prefix('{').map(str::to_owned)
        }),
        ("labelled", |t| Some(format!("Action: {t}"))),
        ("full stop after", |t| Some(format!("{t}."))),
        ("tool_call tags", |t| {
            Some(format!("<tool_call>\n{t}\n</tool_call>"))
        }),
        ("python literals", |t| {
            t.contains("true").then(|| t.replace("true", "True"))
        }),
        ("line comment", |t| {
            let v: Value = serde_json::from_str(t).ok()?;
            let pretty = serde_json::to_string_pretty(&v).ok()?;
            let (first, rest) = pretty.split_once('\n')?;
            Some(format!("{first} // the action\n{rest}"))
        }),
        ("doubled braces", |t| {
            (t.starts_with('{') && t.ends_with('}')).then(|| format!("{{{t}}}"))
        }),
        ("missing comma between fields", |t| {
            let at = t.find("\", \"")?;
            Some(format!("{}\" \"{}", &t[..at], &t[at + 4..]))
        }),
        ("arguments as a string", |t| {
            let mut v: Value = serde_json::from_str(t).ok()?;
            let call = match v.get_mut("tool_calls") {
                Some(calls) => calls.get_mut(0)?,
                None => &mut v,
            };
            let args = call.get("arguments")?.to_string();
            call["arguments"] = Value::String(args);
            Some(v.to_string())
        }),
        ("equals for colon", |t| {
            t.starts_with("{\"final_answer\": ")
                .then(|| t.replacen("\": ", "\"= ", 1))
        }),
        ("escaped as a string", |t| serde_json::to_string(t).ok()),
    ]
}

/// `value` as JSON with its keys unquoted, as JavaScript writes them.
fn unquoted_keys(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let fields: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k}: {}", unquoted_keys(v)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(unquoted_keys).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// Reads `text` token by token as the Reasoning state does; the action,
/// and whether the answer that streamed is the answer parsed.
fn read(text: &str) -> (Option<Action>, bool) {
    let mut reader = ActionReader::new("call_");
    let mut streamed = String::new();
    let chars: Vec<char> = text.chars().collect();
    for piece in chars.chunks(3) {
        streamed.push_str(&reader.push(&piece.iter().collect::<String>()).answer);
    }
    let action = reader.finish().ok().map(|p| p.action);
    let consistent = match &action {
        Some(Action::FinalAnswer(answer)) => answer.starts_with(&streamed),
        _ => streamed.is_empty(),
    };
    (action, consistent)
}

#[test]
fn mangled_actions_read_as_they_were_meant() {
    let verbose = std::env::var_os("REPAIR_MUTATIONS_VERBOSE").is_some();
    let (mut total, mut passed) = (0usize, 0usize);
    let mut failures = Vec::new();
    for action in actions() {
        let original = action.to_string();
        let expected = parse_action(&original).expect("the originals are actions");
        for (name, mutate) in mutations() {
            let Some(text) = mutate(&original) else {
                continue;
            };
            total += 1;
            let (got, consistent) = read(&text);
            // Parsing at once and reading in pieces agree.
            assert_eq!(got, parse_action(&text).ok(), "{name}: {text}");
            // Streamed answer text is never taken back: it begins the
            // parsed answer.
            if got.as_ref() == Some(&expected) && consistent {
                passed += 1;
            } else {
                failures.push(format!(
                    "  {name}: {text:?}\n      got {got:?} (streamed consistently: {consistent})"
                ));
            }
        }
    }
    let share = passed as f64 / total as f64;
    println!(
        "mangled actions: {passed}/{total} read as meant ({:.1}%)",
        share * 100.0
    );
    if verbose || share < TARGET {
        println!("{}", failures.join("\n"));
    }
    assert!(total >= 150, "only {total} cases");
    assert!(share >= TARGET, "{passed}/{total} below {TARGET}");
}
