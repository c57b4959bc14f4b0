//! Printing a run to a terminal as it happens.

use std::io::Write;

use futures::{Stream, StreamExt};

use crate::action::PartialAction;
use crate::machine::event::{Event, EventKind, RunFailure, RunOutput};
use crate::machine::MachineError;
use crate::state::{ActionParsed, ActionRepaired, Emit};

/// Renders a run's events as text: the answer as it streams
/// ([`Emit::AnswerToken`], from whichever state writes it) and, when
/// verbose, the other tokens (dimmed on a terminal), tool calls and their
/// results.
///
/// ```
/// use statewise::console::Console;
/// # use statewise::{Env, Machine, state::FnState, Next};
/// # futures::executor::block_on(async {
/// # let machine = Machine::new("answer").with_state(FnState::new("answer", |e: &mut Env| { e.answer = Some("hi".into()); Ok(()) }, |_: &Env| Next::End));
/// let mut out = Vec::new();
/// let result = Console::new().usage(false).print(machine.stream(Env::new()), &mut out).await;
/// assert!(result.is_ok());
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct Console {
    verbose: bool,
    usage: bool,
    ansi: bool,
}

impl Default for Console {
    fn default() -> Self {
        Self::new()
    }
}

impl Console {
    /// Prints the answer and the usage at the end.
    pub fn new() -> Self {
        Console {
            verbose: false,
            usage: true,
            ansi: false,
        }
    }

    /// Also prints other states' tokens, reasoning, tool calls and results.
    pub fn verbose(mut self, on: bool) -> Self {
        self.verbose = on;
        self
    }

    /// Prints the token counts and cost at the end (default on).
    pub fn usage(mut self, on: bool) -> Self {
        self.usage = on;
        self
    }

    /// Dims what is not the answer with ANSI codes (for terminals).
    pub fn ansi(mut self, on: bool) -> Self {
        self.ansi = on;
        self
    }

    /// Prints `events` to `out` as they arrive and returns the run's result.
    /// A failed write does not stop the run.
    pub async fn print(
        &self,
        events: impl Stream<Item = Event>,
        mut out: impl Write,
    ) -> Result<RunOutput, RunFailure> {
        let mut events = std::pin::pin!(events);
        let (dim, reset) = if self.ansi {
            ("\x1b[2m", "\x1b[0m")
        } else {
            ("", "")
        };
        let mut at_line_start = true;
        while let Some(event) = events.next().await {
            let mut line = |out: &mut dyn Write, text: String| {
                let lead = if at_line_start { "" } else { "\n" };
                at_line_start = true;
                let _ = writeln!(out, "{lead}{dim}{text}{reset}");
            };
            let at = event.path();
            match event.kind {
                // The answer as it is written, from whatever state writes
                // it; a branch's or sub-machine's answer is not the run's.
                EventKind::Emitted(Emit::AnswerToken(t)) if event.branch.is_none() => {
                    let _ = write!(out, "{t}");
                    at_line_start = t.ends_with('\n');
                }
                EventKind::Emitted(Emit::Token(t) | Emit::Reasoning(t)) if self.verbose => {
                    let _ = write!(out, "{dim}{t}{reset}");
                    at_line_start = t.ends_with('\n');
                }
                EventKind::Emitted(Emit::ToolCallStarted(call)) if self.verbose => {
                    line(&mut out, format!("→ {}({})", call.name, call.arguments));
                }
                EventKind::Emitted(Emit::Observation(o)) if self.verbose => {
                    let mark = if o.is_error { "✗" } else { "←" };
                    line(&mut out, format!("{mark} {}: {}", o.tool, o.render()));
                }
                // Those three repeat what the tokens above show.
                EventKind::Emitted(Emit::Custom(custom))
                    if self.verbose
                        && !custom.is::<ActionParsed>()
                        && !custom.is::<ActionRepaired>()
                        && !custom.is::<PartialAction>() =>
                {
                    line(&mut out, format!("• {}: {}", custom.name, custom.value));
                }
                EventKind::Emitted(Emit::ContextFitted(f)) if self.verbose => {
                    line(
                        &mut out,
                        format!(
                            "✂ context: {} → {} of {} tokens ({} messages left out, {} cut)",
                            f.tokens_before, f.tokens_after, f.window, f.dropped, f.truncated
                        ),
                    );
                }
                EventKind::Emitted(Emit::Routed(step)) if self.verbose => {
                    line(&mut out, format!("⇄ route: {step}"));
                }
                EventKind::StateRetried { attempt, reason } => {
                    line(
                        &mut out,
                        format!("↺ {at} restarts (attempt {}): {reason}", attempt + 1),
                    );
                }
                EventKind::StateEntered if self.verbose => {
                    line(&mut out, format!("── {at} (step {})", event.step));
                }
                EventKind::Finished(run) => {
                    if !at_line_start {
                        let _ = writeln!(out);
                    }
                    if self.usage {
                        let u = run.usage();
                        let cost = if u.cost > 0.0 {
                            format!(", ${:.6}", u.cost)
                        } else {
                            String::new()
                        };
                        let replays = match u.cached_responses {
                            0 => String::new(),
                            1 => ", 1 reply from the response cache".to_owned(),
                            n => format!(", {n} replies from the response cache"),
                        };
                        let _ = writeln!(
                            out,
                            "{dim}[{} prompt ({} cached) + {} completion tokens{cost}{replays}; {}]{reset}",
                            u.prompt_tokens,
                            u.cached_tokens,
                            u.completion_tokens,
                            run.path.join(" → ")
                        );
                    }
                    let _ = out.flush();
                    return Ok(*run);
                }
                EventKind::Failed(failure) => {
                    if !at_line_start {
                        let _ = writeln!(out);
                    }
                    let _ = out.flush();
                    return Err(*failure);
                }
                EventKind::Interrupted(run) => {
                    if !at_line_start {
                        let _ = writeln!(out);
                    }
                    if let Some(ask) = run.interrupt() {
                        let _ = writeln!(out, "⏸ {} (run {})", ask.prompt, run.run_id);
                    }
                    let _ = out.flush();
                    return Ok(*run);
                }
                _ => {}
            }
            let _ = out.flush();
        }
        Err(RunFailure {
            run_id: String::new(),
            error: MachineError::Cut,
            path: Vec::new(),
            env: Default::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::Env;
    use crate::machine::Machine;
    use crate::state::{EmitStream, Next, State};

    /// Streams `tokens` as `emit` makes them, then goes to `next`.
    struct Tokens {
        name: &'static str,
        tokens: &'static [&'static str],
        emit: fn(String) -> Emit,
        next: Option<&'static str>,
    }

    impl State for Tokens {
        fn name(&self) -> &str {
            self.name
        }
        fn run<'a>(&'a self, _env: &'a mut Env) -> EmitStream<'a> {
            let emit = self.emit;
            Box::pin(futures::stream::iter(
                self.tokens.iter().map(move |t| Ok(emit(t.to_string()))),
            ))
        }
        fn transition(&self, _env: &Env) -> Next {
            self.next.map_or(Next::End, Next::to)
        }
    }

    /// A custom state, named as no stock state is, writes the answer: it
    /// streams like the stock ones'; another state's tokens show only
    /// when verbose.
    #[tokio::test]
    async fn prints_the_answer_from_any_state_and_the_rest_when_verbose() {
        let machine = Machine::new("think")
            .with_state(Tokens {
                name: "think",
                tokens: &["hmm"],
                emit: Emit::Token,
                next: Some("writer"),
            })
            .with_state(Tokens {
                name: "writer",
                tokens: &["Hello", " world"],
                emit: Emit::AnswerToken,
                next: None,
            });
        let mut quiet = Vec::new();
        Console::new()
            .usage(false)
            .print(machine.stream(Env::new()), &mut quiet)
            .await
            .unwrap();
        assert_eq!(String::from_utf8(quiet).unwrap(), "Hello world\n");

        let mut loud = Vec::new();
        Console::new()
            .verbose(true)
            .print(machine.stream(Env::new()), &mut loud)
            .await
            .unwrap();
        let loud = String::from_utf8(loud).unwrap();
        assert!(
            loud.starts_with("── think (step 1)\nhmm\n── writer (step 2)\nHello world\n"),
            "{loud}"
        );
        assert!(
            loud.contains("0 prompt (0 cached) + 0 completion tokens; think → writer"),
            "{loud}"
        );
    }
}
