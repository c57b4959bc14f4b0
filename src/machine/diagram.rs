//! [`Machine::mermaid`]: the declared graph as a Mermaid flowchart; and
//! the machine's `Debug`, which names its parts without their contents.
//!
//! Drawn from what states declare ([`State::targets`](crate::State::targets)),
//! not from runs: a fork a state declares (its branches' targets and its
//! join) is drawn with labelled edges, and a fixed sub-machine as a nested
//! subgraph. Node ids are positional, since names may hold anything.

use std::fmt::Write;

use super::Machine;
use crate::state::Next;

impl Machine {
    /// The machine's declared graph as a Mermaid flowchart: the entry, each
    /// state and the edges it declares ([`State::targets`](crate::State::targets)),
    /// forks (`fork` edges to each branch, a `join` edge), pauses for a
    /// person (`ask` edges), sub-machines as subgraphs, the end, and a
    /// dotted mark on states that declare nothing.
    ///
    /// ```
    /// use statewise::{state::FnState, Env, Machine, Next};
    ///
    /// let machine = Machine::new("a")
    ///     .with_state(FnState::new("a", |_: &mut Env| Ok(()), |_: &Env| Next::to("b"))
    ///         .with_targets([Next::to("b")]))
    ///     .with_state(FnState::new("b", |_: &mut Env| Ok(()), |_: &Env| Next::End)
    ///         .with_targets([Next::End]));
    /// let chart = machine.mermaid();
    /// assert!(chart.contains("s0 --> s1"));
    /// assert!(chart.contains("s1 --> stop"));
    /// ```
    pub fn mermaid(&self) -> String {
        let mut out = String::from("flowchart TD\n    start((start))\n    stop((end))\n");
        self.draw(&mut out, "", "start", "stop", 1);
        out
    }

    /// Draws this machine's nodes with ids prefixed `prefix`, entered from
    /// the node `start`, ending at `stop`.
    fn draw(&self, out: &mut String, prefix: &str, start: &str, stop: &str, depth: usize) {
        let pad = "    ".repeat(depth);
        let names = super::decide::known_names(&self.states, &self.subs);
        let id = |name: &str| {
            names
                .iter()
                .position(|n| n == name)
                .map(|i| format!("{prefix}s{i}"))
        };
        for (i, name) in names.iter().enumerate() {
            match self
                .subs
                .get(name)
                .filter(|_| !self.states.contains_key(name))
            {
                Some(sub) => {
                    let _ = writeln!(out, "{pad}subgraph {prefix}s{i}[\"{}\"]", label(name));
                    match sub.fixed() {
                        Some(inner) => {
                            let inner_prefix = format!("{prefix}s{i}_");
                            let _ = writeln!(out, "{pad}    {inner_prefix}in(( ))");
                            let _ = writeln!(out, "{pad}    {inner_prefix}out(( ))");
                            inner.draw(
                                out,
                                &inner_prefix,
                                &format!("{inner_prefix}in"),
                                &format!("{inner_prefix}out"),
                                depth + 1,
                            );
                        }
                        None => {
                            let _ =
                                writeln!(out, "{pad}    {prefix}s{i}_built[\"built at run time\"]");
                        }
                    }
                    let _ = writeln!(out, "{pad}end");
                }
                None => {
                    let _ = writeln!(out, "{pad}{prefix}s{i}[\"{}\"]", label(name));
                }
            }
        }
        match id(&self.entry) {
            Some(entry) => {
                let _ = writeln!(out, "{pad}{start} --> {entry}");
            }
            None => {
                let _ = writeln!(
                    out,
                    "{pad}{prefix}missing_entry[\"{} (not registered)\"]",
                    label(&self.entry)
                );
                let _ = writeln!(out, "{pad}{start} --> {prefix}missing_entry");
            }
        }
        for (i, name) in names.iter().enumerate() {
            let declared = match self.states.get(name) {
                Some(state) => state.targets(),
                None => self
                    .subs
                    .get(name)
                    .and_then(|sub| sub.targets().map(<[Next]>::to_vec)),
            };
            let Some(targets) = declared else {
                let _ = writeln!(out, "{pad}{prefix}s{i} -.-> {prefix}undeclared{i}((?))");
                continue;
            };
            let node = |to: &str, k: usize, out: &mut String| {
                id(to).unwrap_or_else(|| {
                    let missing = format!("{prefix}missing{i}_{k}");
                    let _ = writeln!(out, "{pad}{missing}[\"{} (not registered)\"]", label(to));
                    missing
                })
            };
            for (k, target) in targets.iter().enumerate() {
                let (target, ask) = match target {
                    Next::Interrupt { then, .. } => (&**then, "-- ask -->"),
                    other => (other, "-->"),
                };
                match target {
                    Next::End => {
                        let _ = writeln!(out, "{pad}{prefix}s{i} {ask} {stop}");
                    }
                    Next::To(to) => {
                        let to = node(to, k, out);
                        let _ = writeln!(out, "{pad}{prefix}s{i} {ask} {to}");
                    }
                    Next::Fork(fork) => {
                        let join = node(&fork.join, k, out);
                        for branch in &fork.branches {
                            let to = node(&branch.target, k, out);
                            let _ = writeln!(out, "{pad}{prefix}s{i} -- fork --> {to}");
                            let _ = writeln!(out, "{pad}{to} -. join .-> {join}");
                        }
                    }
                    Next::Interrupt { .. } => {}
                }
            }
        }
    }
}

/// A name as a Mermaid label: quotes and angle brackets escaped.
fn label(name: &str) -> String {
    name.replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
}

impl std::fmt::Debug for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine")
            .field("states", &self.states.keys().collect::<Vec<_>>())
            .field("machines", &self.subs.keys().collect::<Vec<_>>())
            .field("name", &self.name)
            .field("entry", &self.entry)
            .field("limits", &self.limits)
            .field("store", &self.store.is_some())
            .field("journal", &self.journal.is_some())
            .field("tracer", &self.tracer)
            .field("guardrails", &self.guardrails)
            .finish()
    }
}
