//! The dataset and the results file: items read one line at a time, and
//! where a rerun resumes (the complete result lines already written,
//! checked against the input's ids; a line cut by a crash is dropped).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::summary::Summary;
use super::{io, DatasetError, Item, ItemResult};

/// Reads items one line at a time.
pub(super) struct ItemReader {
    path: PathBuf,
    lines: std::io::Lines<BufReader<File>>,
    line: u64,
}

impl ItemReader {
    pub(super) fn open(path: &Path) -> Result<Self, DatasetError> {
        let file = File::open(path).map_err(io(path))?;
        Ok(ItemReader {
            path: path.to_path_buf(),
            lines: BufReader::new(file).lines(),
            line: 0,
        })
    }
}

impl Iterator for ItemReader {
    type Item = Result<Item, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let text = match self.lines.next()? {
                Ok(t) => t,
                Err(source) => {
                    return Some(Err(DatasetError::Io {
                        path: self.path.clone(),
                        source,
                    }))
                }
            };
            self.line += 1;
            if text.trim().is_empty() {
                continue;
            }
            return Some(
                parse_item(&text, self.line).map_err(|message| DatasetError::BadItem {
                    path: self.path.clone(),
                    line: self.line,
                    message,
                }),
            );
        }
    }
}

pub(super) fn parse_item(text: &str, line: u64) -> Result<Item, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let input = match value.get("input") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => return Err("no \"input\" field".into()),
    };
    let id = match value.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => line.to_string(),
        Some(other) => other.to_string(),
    };
    Ok(Item {
        id,
        input,
        expected: value.get("expected").cloned().filter(|v| !v.is_null()),
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
        let expected = match items.next() {
            Some(item) => item?.id,
            None => String::new(),
        };
        if result.id != expected {
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
        assert_eq!(parse_item(r#"{"input": "q"}"#, 7).unwrap().id, "7");
        let item = parse_item(r#"{"id": 12, "input": "q", "expected": "a"}"#, 1).unwrap();
        assert_eq!(
            (item.id.as_str(), item.expected),
            ("12", Some(Value::String("a".into())))
        );
        assert!(parse_item(r#"{"id": 1}"#, 1).unwrap_err().contains("input"));
        assert!(parse_item("not json", 1).is_err());
    }
}
