//! [`Machine::mermaid`]: the declared graph as a Mermaid flowchart.

use std::fmt::Write;

use super::Machine;
use crate::state::Next;

impl Machine {
    /// The machine's declared graph as a Mermaid flowchart: the entry, each
    /// state and the edges it declares ([`State::targets`](crate::State::targets)),
    /// the end, and a dotted mark on states that declare nothing.
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
        let names: Vec<&str> = self.states.keys().map(String::as_str).collect();
        // Node ids by position: state names may hold anything.
        let id = |name: &str| {
            names
                .iter()
                .position(|n| *n == name)
                .map(|i| format!("s{i}"))
        };
        let mut out = String::from("flowchart TD\n    start((start))\n    stop((end))\n");
        for (i, name) in names.iter().enumerate() {
            let _ = writeln!(out, "    s{i}[\"{}\"]", label(name));
        }
        match id(&self.entry) {
            Some(entry) => {
                let _ = writeln!(out, "    start --> {entry}");
            }
            None => {
                let _ = writeln!(
                    out,
                    "    missing_entry[\"{} (not registered)\"]",
                    label(&self.entry)
                );
                out.push_str("    start --> missing_entry\n");
            }
        }
        for (i, state) in self.states.values().enumerate() {
            let Some(targets) = state.targets() else {
                let _ = writeln!(out, "    s{i} -.-> undeclared{i}((?))");
                continue;
            };
            for (k, target) in targets.iter().enumerate() {
                let to = match target {
                    Next::End => "stop".to_owned(),
                    Next::To(to) => id(to).unwrap_or_else(|| {
                        let missing = format!("missing{i}_{k}");
                        let _ = writeln!(out, "    {missing}[\"{} (not registered)\"]", label(to));
                        missing
                    }),
                };
                let _ = writeln!(out, "    s{i} --> {to}");
            }
        }
        out
    }
}

/// A name as a Mermaid label: quotes and angle brackets escaped.
fn label(name: &str) -> String {
    name.replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
}
