//! The Decide state: the next step as one small, constrained choice (a
//! tool, or answering), then the chosen tool's arguments.
//!
//! Small models fail at the stock Reasoning's task (write a JSON action,
//! deciding, naming a tool and writing its arguments in one go): a 135M
//! model calls a tool for nearly every question. Split in two questions it
//! can answer, each constrained by a schema the model cannot leave (an enum
//! of options; the tool's own argument schema) and shown a few examples,
//! it routes well, and the answer is written as free text by
//! [`Answer::with_model`](crate::Answer::with_model), not inside a JSON
//! string.

use futures::StreamExt;
use serde_json::{json, Value};
use statewise::fit::Fitter;
use statewise::model::{ChatRequest, Params, SharedModel};
use statewise::tool::{ToolSpec, Toolbox};
use statewise::{Action, Emit, EmitStream, Env, Message, Next, Role, State, ToolCall};

use crate::{ANSWER, TOOLS};

/// The option meaning "no tool: answer".
const ANSWER_OPTION: &str = "answer";

const DEFAULT_INSTRUCTIONS: &str = "Choose how to handle the user's request. \
     Use a tool only when the request needs what the tool does; \
     for anything you can answer from your own knowledge, choose answer.";

/// A worked example shown to the model before the user's request: a
/// request, and the tool (with arguments) it needs, or none.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    request: String,
    tool: Option<(String, Value)>,
}

impl Example {
    /// `request` needs tool `tool`, called with `arguments`.
    pub fn tool(request: impl Into<String>, tool: impl Into<String>, arguments: Value) -> Self {
        Example {
            request: request.into(),
            tool: Some((tool.into(), arguments)),
        }
    }

    /// `request` is answered without a tool.
    pub fn answer(request: impl Into<String>) -> Self {
        Example {
            request: request.into(),
            tool: None,
        }
    }

    /// A few requests answered from knowledge, of several kinds, for the
    /// model to see that not everything needs a tool.
    pub fn knowledge() -> Vec<Example> {
        [
            "Who painted the Mona Lisa?",
            "What is the tallest mountain in the world?",
            "How do you say thank you in French?",
            "What do bees make?",
        ]
        .into_iter()
        .map(Example::answer)
        .collect()
    }
}

/// Decides the next step with two small, constrained model calls: first
/// which tool to use, or `answer` (the reply is held to that list by the
/// request's schema), then, for a tool that takes arguments, the arguments
/// (held to the tool's schema). Each call is shown the [`Example`]s first.
///
/// Routing: a tool call goes to `tools` (run it with
/// [`RunTools`](crate::RunTools), then on to the answer), `answer` goes to
/// `answer`, which should be [`Answer::with_model`](crate::Answer::with_model):
/// Decide writes no answer itself.
///
/// A tool call whose arguments hold numbers, none of them in the request,
/// or none at all for a tool its examples always call with numbers, is
/// dropped and the request answered instead: a small model reaches for a
/// tool with made-up arguments.
///
/// It makes one tool call per request: it suits small models on everyday
/// requests; a capable model doing multi-step work wants
/// [`Reasoning`](crate::Reasoning). The model should honour
/// `response_schema` (`Capabilities::json_schema`, as the local provider
/// does with a grammar); otherwise an option it names that does not exist
/// is read as `answer`.
#[derive(Clone)]
pub struct Decide {
    name: String,
    model: SharedModel,
    tools: Toolbox,
    instructions: String,
    examples: Vec<Example>,
    /// What the choice calls a tool, where not by its name.
    labels: std::collections::BTreeMap<String, String>,
    params: Params,
    tier: Option<String>,
    fitter: Fitter,
    on_tool_calls: String,
    on_answer: String,
}

impl std::fmt::Debug for Decide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decide")
            .field("name", &self.name)
            .field("model", &self.model.name())
            .field("tools", &self.tools.names())
            .finish_non_exhaustive()
    }
}

impl Decide {
    /// Decide with `model` among the tools of `tools` and answering, shown
    /// the [`Example::knowledge`] examples.
    pub fn new(model: SharedModel, tools: Toolbox) -> Self {
        Decide {
            name: crate::REASONING.to_owned(),
            model,
            tools,
            instructions: DEFAULT_INSTRUCTIONS.to_owned(),
            examples: Example::knowledge(),
            labels: Default::default(),
            params: Params {
                temperature: Some(0.0),
                max_tokens: Some(128),
                ..Params::default()
            },
            tier: None,
            fitter: Fitter::default(),
            on_tool_calls: TOOLS.to_owned(),
            on_answer: ANSWER.to_owned(),
        }
    }

    /// Renames the state (default `reasoning`, where the stock states
    /// route).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Replaces the opening of the decision's system prompt; the options
    /// are always listed after it.
    pub fn instructions(mut self, instructions: impl Into<String>) -> Self {
        self.instructions = instructions.into();
        self
    }

    /// Adds examples (such as a tool's own, like
    /// [`Calculator::examples`](crate::tools::Calculator::examples)).
    pub fn examples(mut self, examples: impl IntoIterator<Item = Example>) -> Self {
        self.examples.extend(examples);
        self
    }

    /// Shows tool `tool` to the model as the option `label` in the choice.
    /// The word matters to a small model: SmolLM2-135M never picks
    /// `calculator` for arithmetic, and nearly always picks `math`.
    pub fn label(mut self, tool: impl Into<String>, label: impl Into<String>) -> Self {
        self.labels.insert(tool.into(), label.into());
        self
    }

    /// The option the choice shows for `tool`.
    fn label_of<'t>(&'t self, tool: &'t str) -> &'t str {
        self.labels.get(tool).map_or(tool, String::as_str)
    }

    /// Sets the sampling parameters (default: greedy, at most 128 tokens).
    pub fn params(mut self, params: Params) -> Self {
        self.params = params;
        self
    }

    /// The tier its requests ask a [`Router`](statewise::layer::Router)
    /// for ([`ChatRequest::tier`]): `"large"` for the state that needs
    /// the strong model.
    pub fn tier(mut self, tier: impl Into<String>) -> Self {
        self.tier = Some(tier.into());
        self
    }

    /// The state to go to with a tool call (default `tools`).
    pub fn on_tool_calls(mut self, state: impl Into<String>) -> Self {
        self.on_tool_calls = state.into();
        self
    }

    /// The state to go to when no tool is needed (default `answer`).
    pub fn on_answer(mut self, state: impl Into<String>) -> Self {
        self.on_answer = state.into();
        self
    }

    /// The options the model chooses from: the tools (by their labels),
    /// then `answer`.
    fn options(&self) -> Vec<String> {
        let mut options: Vec<String> = self
            .tools
            .names()
            .iter()
            .map(|n| self.label_of(n).to_owned())
            .collect();
        options.push(ANSWER_OPTION.to_owned());
        options
    }

    /// The request that asks which option to take for `env`'s last user
    /// request.
    pub fn choice_request(&self, env: &Env) -> ChatRequest {
        let specs = self.tools.specs_for(env.principal.as_ref());
        let mut system = format!("{}\n\nOptions:\n", self.instructions);
        for spec in specs.iter() {
            system.push_str(&format!(
                "- {}: {}\n",
                self.label_of(&spec.name),
                spec.description
            ));
        }
        system.push_str(&format!(
            "- {ANSWER_OPTION}: no tool; answer from your own knowledge\n\n\
             Reply with JSON: {{\"next\": \"<option>\"}}"
        ));
        let mut messages = vec![Message::system(system)];
        for (example, next) in self.interleaved(&specs) {
            messages.push(Message::user(example.request.clone()));
            messages.push(Message::assistant(json!({ "next": next }).to_string()));
        }
        messages.push(Message::user(last_request(env)));
        ChatRequest {
            messages,
            tools: Vec::new(),
            params: self.params.clone(),
            tier: self.tier.clone(),
            response_schema: Some(json!({
                "type": "object",
                "properties": {"next": {"enum": self.options()}},
                "required": ["next"],
                "additionalProperties": false
            })),
        }
    }

    /// The examples of offered options with the option each shows, taken
    /// in turn from each option (the tools in the order they first appear,
    /// then `answer`): a small model leans to the option it saw last, and
    /// a run of one option's examples would pull it there.
    fn interleaved(&self, specs: &[ToolSpec]) -> Vec<(&Example, &str)> {
        let mut groups: Vec<(&str, Vec<&Example>)> = Vec::new();
        let mut answers = Vec::new();
        for example in &self.examples {
            match &example.tool {
                None => answers.push(example),
                Some((tool, _)) if specs.iter().any(|s| &s.name == tool) => {
                    let label = self.label_of(tool);
                    match groups.iter_mut().find(|(l, _)| *l == label) {
                        Some((_, group)) => group.push(example),
                        None => groups.push((label, vec![example])),
                    }
                }
                Some(_) => {}
            }
        }
        groups.push((ANSWER_OPTION, answers));
        let longest = groups.iter().map(|(_, g)| g.len()).max().unwrap_or(0);
        (0..longest)
            .flat_map(|i| {
                groups
                    .iter()
                    .filter_map(move |(label, group)| group.get(i).map(|e| (*e, *label)))
            })
            .collect()
    }

    /// Whether every example of `tool` calls it with a number: then a call
    /// without one (`{"expression": "night"}`) is not what it is for.
    fn called_with_numbers(&self, tool: &str) -> bool {
        let mut calls = self
            .examples
            .iter()
            .filter_map(|e| e.tool.as_ref())
            .filter(|(name, _)| name == tool)
            .peekable();
        calls.peek().is_some()
            && calls.all(|(_, arguments)| {
                let mut found = Vec::new();
                collect_numbers(arguments, &mut found);
                !found.is_empty()
            })
    }

    /// The request that asks for `spec`'s arguments for `env`'s last user
    /// request.
    ///
    /// For a tool called with numbers, each request (the examples' and the
    /// user's) is followed by the numbers it gives, in order
    /// (`Numbers: 15%, 200`): a small model copies the first number twice
    /// (`15 * 0.15` for "What is 15 percent of 200?") or drops one unless it
    /// sees them listed.
    pub fn arguments_request(&self, spec: &ToolSpec, env: &Env) -> ChatRequest {
        let system = format!(
            "Write the arguments for the tool `{}` ({}) to handle the user's request. \
             Reply with the arguments as JSON, following this schema: {}",
            spec.name, spec.description, spec.parameters
        );
        let numbers = self.called_with_numbers(&spec.name);
        let shown = |request: &str| match numbers {
            true => with_numbers(request),
            false => request.to_owned(),
        };
        let mut messages = vec![Message::system(system)];
        for example in &self.examples {
            if let Some((tool, arguments)) = &example.tool {
                if *tool == spec.name {
                    messages.push(Message::user(shown(&example.request)));
                    messages.push(Message::assistant(arguments.to_string()));
                }
            }
        }
        messages.push(Message::user(shown(&last_request(env))));
        ChatRequest {
            messages,
            tools: Vec::new(),
            params: self.params.clone(),
            tier: self.tier.clone(),
            response_schema: Some(spec.parameters.clone()),
        }
    }
}

impl State for Decide {
    fn name(&self) -> &str {
        &self.name
    }

    fn run<'a>(&'a self, env: &'a mut Env) -> EmitStream<'a> {
        Box::pin(statewise::try_stream! {
            env.action = None;
            let options = self.options();
            // First the choice, then (for a tool that takes them) the
            // arguments: the same streamed call with another request.
            let mut tool: Option<ToolSpec> = None;
            let arguments = loop {
                let request = match &tool {
                    None => self.choice_request(env),
                    Some(spec) => self.arguments_request(spec, env),
                };
                let settings = env.settings.clone();
                let mut call = self.fitter.call(&*self.model, 1, &settings, || request.clone());
                while let Some(streamed) = call.next().await {
                    yield Emit::from(streamed?);
                }
                let reply = call.finish();
                reply.charge(env);
                if tool.is_some() {
                    let request = last_request(env);
                    let arguments = with_percents(arguments_of(&reply.text), &request);
                    let numeric = tool.as_ref().is_some_and(|t| self.called_with_numbers(&t.name));
                    if !grounded(&arguments, &request, numeric) {
                        // Numbers the request does not hold: the model
                        // made the call up (a small model sends "How many
                        // legs does a spider have?" to the calculator).
                        return;
                    }
                    break arguments;
                }
                let next = chosen(&reply.text, &options).unwrap_or(ANSWER_OPTION);
                let Some(spec) = self.tools.specs_for(env.principal.as_ref()).iter().find(|s| self.label_of(&s.name) == next).cloned() else {
                    // No tool: the answer state writes the answer.
                    return;
                };
                let done = !takes_arguments(&spec);
                tool = Some(spec);
                if done {
                    break json!({});
                }
            };
            let Some(spec) = tool else { return };
            let call = ToolCall::new(format!("{}0", crate::reasoning::call_id_prefix(env)), spec.name.clone(), arguments);
            // Written as the call alone: the conversation shows it as the
            // action it stands for.
            let mut message = Message::assistant("");
            message.tool_calls = vec![call.clone()];
            env.messages.push(message);
            let action = Action::ToolCalls(vec![call]);
            env.action = Some(action.clone());
            yield Emit::custom(&statewise::state::ActionParsed(action));
        })
    }

    /// The tool state and the answer state.
    fn targets(&self) -> Option<Vec<Next>> {
        Some(vec![
            Next::to(self.on_tool_calls.clone()),
            Next::to(self.on_answer.clone()),
        ])
    }

    fn transition(&self, env: &Env) -> Next {
        match &env.action {
            Some(Action::ToolCalls(_)) => Next::to(self.on_tool_calls.clone()),
            _ => Next::to(self.on_answer.clone()),
        }
    }
}

/// The text of the last user message: what is being decided about.
fn last_request(env: &Env) -> String {
    env.messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(|m| m.content.clone())
        .unwrap_or_default()
}

/// Whether `spec` has arguments to write.
fn takes_arguments(spec: &ToolSpec) -> bool {
    spec.parameters["properties"]
        .as_object()
        .is_some_and(|p| !p.is_empty())
}

/// The option a reply names, if it is one of `options`.
fn chosen<'o>(reply: &str, options: &'o [String]) -> Option<&'o str> {
    let value = statewise::action::repair(reply).ok()?;
    let next = value.get("next")?.as_str()?.trim();
    options.iter().find(|o| *o == next).map(String::as_str)
}

/// Whether `arguments` are taken from `request`: when they hold numbers,
/// at least one of them is in the request (`20% of 150` for "What is 20
/// percent of 150?"; not `8` for "How many legs does a spider have?").
/// A tool its examples always call with numbers (`numeric`) needs some.
fn grounded(arguments: &Value, request: &str, numeric: bool) -> bool {
    let given = numbers(request);
    let mut used = Vec::new();
    collect_numbers(arguments, &mut used);
    match used.is_empty() {
        true => !numeric,
        false => used.iter().any(|n| given.contains(n)),
    }
}

/// `arguments` with the percent sign put back after each number the
/// request gives as a percentage (`40%`, `40 %`, `40 percent`) and the
/// arguments' text holds bare: a small model writes `40 * 85` for "40% of
/// 85".
fn with_percents(arguments: Value, request: &str) -> Value {
    let percents = percents(request);
    if percents.is_empty() {
        return arguments;
    }
    with_percents_of(arguments, &percents)
}

fn with_percents_of(value: Value, percents: &[String]) -> Value {
    match value {
        Value::String(s) => Value::String(mark_percents(&s, percents)),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| with_percents_of(v, percents))
                .collect(),
        ),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k, with_percents_of(v, percents)))
                .collect(),
        ),
        other => other,
    }
}

/// `request` followed by the numbers it gives, in order, a percentage
/// with its sign: `Numbers: 15%, 200`.
fn with_numbers(request: &str) -> String {
    let percents = percents(request);
    let numbers: Vec<String> = number_spans(request)
        .into_iter()
        .map(|(start, end)| {
            let n = &request[start..end];
            match percents.iter().any(|p| p == n) {
                true => format!("{n}%"),
                false => n.to_owned(),
            }
        })
        .collect();
    match numbers.is_empty() {
        true => request.to_owned(),
        false => format!("{request}\nNumbers: {}", numbers.join(", ")),
    }
}

/// The numbers `text` gives as percentages.
fn percents(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    number_spans(&lower)
        .into_iter()
        .filter(|&(_, end)| {
            let rest = lower[end..].trim_start();
            rest.starts_with('%') || rest.starts_with("percent")
        })
        .map(|(start, end)| lower[start..end].to_owned())
        .collect()
}

/// `text` with `%` after each whole number of `percents` that lacks one.
fn mark_percents(text: &str, percents: &[String]) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    let mut copied = 0;
    for (start, end) in number_spans(text) {
        out.push_str(&text[copied..end]);
        copied = end;
        let marked = text[end..].trim_start().starts_with('%');
        if !marked && percents.iter().any(|p| *p == text[start..end]) {
            out.push('%');
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// Where the decimal numbers of `text` stand, as byte ranges (`3.5` is
/// one number; the `.` of `5.` ends a sentence).
fn number_spans(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len()
            && (bytes[i].is_ascii_digit()
                || (bytes[i] == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)))
        {
            i += 1;
        }
        spans.push((start, i));
    }
    spans
}

fn collect_numbers(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.extend(numbers(s)),
        Value::Number(n) => out.push(n.to_string()),
        Value::Array(items) => items.iter().for_each(|v| collect_numbers(v, out)),
        Value::Object(fields) => fields.values().for_each(|v| collect_numbers(v, out)),
        _ => {}
    }
}

/// The runs of digits in `text` (`3.5` gives `3` and `5`).
fn numbers(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter(|run| !run.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The arguments a reply holds: an object, else none.
fn arguments_of(reply: &str) -> Value {
    statewise::action::repair(reply)
        .ok()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn arguments_must_hold_a_number_of_the_request() {
        let calc = |e: &str| json!({ "expression": e });
        let grounded = |a: &serde_json::Value, r: &str| super::grounded(a, r, true);
        assert!(grounded(&calc("20% of 150"), "What is 20 percent of 150?"));
        assert!(grounded(&calc("235 * 2"), "Double 235."));
        assert!(!grounded(&calc("8"), "How many legs does a spider have?"));
        assert!(!grounded(&calc("night"), "What is the opposite of night?"));
        assert!(super::grounded(&json!({}), "What time is it?", false));
    }

    #[test]
    fn a_percentage_of_the_request_keeps_its_sign() {
        let fix = |e: &str, r: &str| {
            super::with_percents(json!({ "expression": e }), r)["expression"].clone()
        };
        assert_eq!(fix("40 * 85", "What is 40% of 85?"), "40% * 85");
        assert_eq!(
            fix("60 of 150", "Work out 60 percent of 150."),
            "60% of 150"
        );
        assert_eq!(fix("8% of 400", "How much is 8 % of 400?"), "8% of 400");
        assert_eq!(fix("140 * 2", "What is 40% of 140?"), "140 * 2");
        assert_eq!(fix("7 * 8", "What is 7 * 8?"), "7 * 8");
    }

    #[test]
    fn a_numeric_request_is_shown_with_its_numbers() {
        assert_eq!(
            super::with_numbers("What is 15 percent of 200?"),
            "What is 15 percent of 200?\nNumbers: 15%, 200"
        );
        assert_eq!(
            super::with_numbers("Divide 3.5 by 7."),
            "Divide 3.5 by 7.\nNumbers: 3.5, 7"
        );
        assert_eq!(super::with_numbers("What time is it?"), "What time is it?");
    }
}
