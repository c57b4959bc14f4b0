//! The dataset and the results file: items read one line at a time, and
//! where a rerun resumes (the complete result lines already written,
//! checked against the input's ids; a line cut by a crash is dropped).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::summary::Summary;
use super::{io, DatasetError, Item, ItemResult};
use crate::env::{Env, Role};

/// Reads items one line at a time (a YAML dataset, written by hand and
/// small, is read whole), each `repeat` times in a row.
pub(super) struct ItemReader {
    path: PathBuf,
    source: Source,
    line: u64,
    repeat: u32,
    pending: Option<(Item, u32)>,
}

enum Source {
    Lines(std::io::Lines<BufReader<File>>),
    Values(std::vec::IntoIter<Value>),
}

impl ItemReader {
    pub(super) fn open(path: &Path) -> Result<Self, DatasetError> {
        let source = if is_yaml(path) {
            Source::Values(read_yaml(path)?.into_iter())
        } else {
            let file = File::open(path).map_err(io(path))?;
            Source::Lines(BufReader::new(file).lines())
        };
        Ok(ItemReader {
            path: path.to_path_buf(),
            source,
            line: 0,
            repeat: 1,
            pending: None,
        })
    }

    /// Yields every item `n` times, numbered from 1 (unnumbered for 1).
    pub(super) fn repeat(mut self, n: u32) -> Self {
        self.repeat = n.max(1);
        self
    }

    fn next_value(&mut self) -> Option<Result<Value, DatasetError>> {
        loop {
            let text = match &mut self.source {
                Source::Values(values) => {
                    self.line += 1;
                    return values.next().map(Ok);
                }
                Source::Lines(lines) => match lines.next()? {
                    Ok(t) => t,
                    Err(source) => {
                        return Some(Err(DatasetError::Io {
                            path: self.path.clone(),
                            source,
                        }))
                    }
                },
            };
            self.line += 1;
            if text.trim().is_empty() {
                continue;
            }
            return Some(serde_json::from_str(&text).map_err(|e| self.bad(e.to_string())));
        }
    }

    fn bad(&self, message: String) -> DatasetError {
        DatasetError::BadItem {
            path: self.path.clone(),
            line: self.line,
            message,
        }
    }
}

impl Iterator for ItemReader {
    type Item = Result<Item, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some((item, k)) = self.pending.take() {
            if k < self.repeat {
                self.pending = Some((item.clone(), k + 1));
            }
            return Some(Ok(Item {
                repeat: Some(k),
                ..item
            }));
        }
        let value = match self.next_value()? {
            Ok(v) => v,
            Err(e) => return Some(Err(e)),
        };
        let item = match parse_item(value, self.line) {
            Ok(item) => item,
            Err(message) => return Some(Err(self.bad(message))),
        };
        if self.repeat == 1 {
            return Some(Ok(item));
        }
        self.pending = Some((item.clone(), 2));
        Some(Ok(Item {
            repeat: Some(1),
            ..item
        }))
    }
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// The cases of a YAML dataset: a list, or a map with a `cases` list (as
/// pydantic_evals writes them).
fn read_yaml(path: &Path) -> Result<Vec<Value>, DatasetError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let bad = |message: String| DatasetError::BadItem {
        path: path.to_path_buf(),
        line: 0,
        message,
    };
    let value: Value = serde_norway::from_str(&text).map_err(|e| bad(e.to_string()))?;
    match value {
        Value::Array(cases) => Ok(cases),
        Value::Object(mut map) => match map.remove("cases") {
            Some(Value::Array(cases)) => Ok(cases),
            _ => Err(bad(
                "a YAML dataset is a list of cases or has a `cases:` list".into(),
            )),
        },
        Value::Null => Ok(Vec::new()),
        _ => Err(bad(
            "a YAML dataset is a list of cases or has a `cases:` list".into(),
        )),
    }
}

pub(super) fn parse_item(value: Value, line: u64) -> Result<Item, String> {
    let Value::Object(mut fields) = value else {
        return Err("an item is a JSON object".into());
    };
    let (input, env) = match fields.remove("input") {
        Some(Value::String(s)) => (s, None),
        Some(Value::Object(map)) => {
            let env: Env = serde_json::from_value(Value::Object(map))
                .map_err(|e| format!("\"input\" is an object but not an env: {e}"))?;
            let last_user = env.messages.iter().rev().find(|m| m.role == Role::User);
            (
                last_user.map(|m| m.content.clone()).unwrap_or_default(),
                Some(env),
            )
        }
        Some(Value::Null) | None => return Err("no \"input\" field".into()),
        Some(other) => (other.to_string(), None),
    };
    let id = match fields.remove("id") {
        Some(Value::String(s)) => s,
        Some(Value::Null) | None => line.to_string(),
        Some(other) => other.to_string(),
    };
    let tags = match fields.remove("tags") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(tag)) => vec![tag],
        Some(tags) => {
            serde_json::from_value(tags).map_err(|_| "\"tags\" is a list of strings".to_owned())?
        }
    };
    let evaluators = match fields.remove("evaluators") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list,
        Some(one @ Value::Object(_)) => vec![one],
        Some(_) => return Err("\"evaluators\" is a list of objects".into()),
    };
    Ok(Item {
        id,
        input,
        expected: fields.remove("expected").filter(|v| !v.is_null()),
        env,
        tags,
        metadata: fields.remove("metadata").filter(|v| !v.is_null()),
        evaluators,
        repeat: None,
    })
}

/// Opens `output` for appending after the results it already holds,
/// checking them against `items` (which it advances past them) and adding
/// them to `summary`. A last line without its newline is cut off.
pub(super) fn resume(
    items: &mut ItemReader,
    output: &Path,
    summary: &mut Summary,
) -> Result<File, DatasetError> {
    let mut out = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(output)
        .map_err(io(output))?;
    let mut reader = BufReader::new(&mut out);
    let mut kept = 0u64;
    let mut line_no = 0u64;
    let mut buf = String::new();
    loop {
        buf.clear();
        let n = reader.read_line(&mut buf).map_err(io(output))?;
        if n == 0 || !buf.ends_with('\n') {
            break; // the end, or a line the crash cut short
        }
        line_no += 1;
        // Each result is one write: only a last line without its newline
        // can be torn. A whole line that is not a result is not ours.
        let result =
            serde_json::from_str::<ItemResult>(&buf).map_err(|e| DatasetError::NotResults {
                path: output.to_path_buf(),
                line: line_no,
                message: e.to_string(),
            })?;
        let (expected, repeat) = match items.next() {
            Some(item) => {
                let item = item?;
                (item.id, item.repeat)
            }
            None => (String::new(), None),
        };
        if result.id != expected || result.repeat != repeat {
            return Err(DatasetError::Mismatch {
                path: output.to_path_buf(),
                line: line_no,
                expected,
                found: result.id,
            });
        }
        summary.add(&result);
        kept += n as u64;
    }
    drop(reader);
    out.set_len(kept).map_err(io(output))?;
    out.seek(SeekFrom::End(0)).map_err(io(output))?;
    Ok(out)
}

pub(super) fn count_lines(path: &Path) -> Result<u64, DatasetError> {
    if is_yaml(path) {
        return Ok(read_yaml(path)?.len() as u64);
    }
    let file = File::open(path).map_err(io(path))?;
    let mut n = 0;
    for line in BufReader::new(file).lines() {
        if !line.map_err(io(path))?.trim().is_empty() {
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_default_their_id_to_the_line_number() {
        let parse = |text: &str, line| parse_item(serde_json::from_str(text).unwrap(), line);
        assert_eq!(parse(r#"{"input": "q"}"#, 7).unwrap().id, "7");
        let item = parse(r#"{"id": 12, "input": "q", "expected": "a"}"#, 1).unwrap();
        assert_eq!(
            (item.id.as_str(), item.expected),
            ("12", Some(Value::String("a".into())))
        );
        assert!(parse(r#"{"id": 1}"#, 1).unwrap_err().contains("input"));
        assert!(parse("[1]", 1).is_err());
    }

    #[test]
    fn an_object_input_is_an_env_and_cases_carry_tags_and_evaluators() {
        let text = r#"{"id": "e", "input": {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]},
            "tags": "greeting", "evaluators": {"type": "contains", "value": "hello"}, "metadata": {"source": "x"}}"#;
        let item = parse_item(serde_json::from_str(text).unwrap(), 1).unwrap();
        assert_eq!(item.input, "Hi?");
        assert_eq!(item.env.map(|e| e.messages.len()), Some(2));
        assert_eq!(item.tags, ["greeting"]);
        assert_eq!(item.evaluators.len(), 1);
        assert!(item.metadata.is_some());
        let bad = parse_item(serde_json::json!({"input": {"messages": 3}}), 4).unwrap_err();
        assert!(bad.contains("not an env"), "{bad}");
    }
}
