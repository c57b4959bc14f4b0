//! The JSONL trace sink: one record per line, appended.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use futures::future::BoxFuture;

use super::{Line, TraceError, TraceRecord, TraceSink};

/// Appends one JSON record per line to a file.
///
/// Each record is one `write_all` of a whole line, under a lock, to a file
/// opened for appending: lines of concurrent runs never interleave, and a
/// crash loses at most the line being written (which [`read_jsonl`] skips).
#[derive(Debug)]
pub struct JsonlSink {
    path: PathBuf,
    file: Mutex<File>,
}

impl JsonlSink {
    /// Opens `path` for appending, creating it and its folder.
    pub fn append(path: impl AsRef<Path>) -> Result<Self, TraceError> {
        let path = path.as_ref().to_owned();
        let io = |source| TraceError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        Ok(JsonlSink {
            path,
            file: Mutex::new(file),
        })
    }
}

impl TraceSink for JsonlSink {
    fn write<'a>(&'a self, line: &'a Line) -> BoxFuture<'a, Result<(), TraceError>> {
        let mut buf = String::with_capacity(line.json.len() + 1);
        buf.push_str(&line.json);
        buf.push('\n');
        let result = self
            .file
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write_all(buf.as_bytes())
            .map_err(|source| TraceError::Io {
                path: self.path.display().to_string(),
                source,
            });
        Box::pin(async move { result })
    }
}

/// Reads a JSONL trace file back. A last line cut short by a crash is
/// skipped; any other bad line is an error.
pub fn read_jsonl(path: impl AsRef<Path>) -> Result<Vec<TraceRecord>, TraceError> {
    let path = path.as_ref();
    let shown = || path.display().to_string();
    let io = |source| TraceError::Io {
        path: shown(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let mut lines = BufReader::new(file).lines().enumerate().peekable();
    let mut records = Vec::new();
    while let Some((i, line)) = lines.next() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(&line) {
            Ok(r) => records.push(r),
            // A last line that is not even JSON was cut by a crash.
            Err(_)
                if lines.peek().is_none()
                    && serde_json::from_str::<serde_json::Value>(&line).is_err() => {}
            Err(source) => {
                return Err(TraceError::Format {
                    path: shown(),
                    line: i + 1,
                    source,
                })
            }
        }
    }
    Ok(records)
}
