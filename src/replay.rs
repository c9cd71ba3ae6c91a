//! Saved logs -> record bodies, for the replay CLI: finds the input files, tells their
//! format, and reads each into msgpack record bodies with the place each came from, so an
//! input error can name the file and where in it.

use crate::chunk_io::json_to_msgpack;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// An input the user named: a file, or `-` for stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Stdin,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Stdin => write!(f, "<stdin>"),
        }
    }
}

/// A problem with an input, naming the file and the place in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    pub source: String,
    /// "line 12", "byte 4096", "record 3", or empty.
    pub place: String,
    pub message: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.place.is_empty() {
            write!(f, "{}: {}", self.source, self.message)
        } else {
            write!(f, "{}: {}: {}", self.source, self.place, self.message)
        }
    }
}

impl std::error::Error for InputError {}

fn input_error(
    source: &Source,
    place: impl Into<String>,
    message: impl fmt::Display,
) -> InputError {
    InputError {
        source: source.to_string(),
        place: place.into(),
        message: message.to_string(),
    }
}

/// Expands the paths given on the command line: files as they are, directories recursively
/// (sorted, hidden entries skipped), `-` as stdin.
pub fn expand_inputs(args: &[String]) -> Result<Vec<Source>, InputError> {
    let mut out = Vec::new();
    for a in args {
        if a == "-" {
            out.push(Source::Stdin);
            continue;
        }
        let p = PathBuf::from(a);
        let meta =
            std::fs::metadata(&p).map_err(|e| input_error(&Source::File(p.clone()), "", e))?;
        if meta.is_dir() {
            walk(&p, &mut out)?;
        } else {
            out.push(Source::File(p));
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<Source>) -> Result<(), InputError> {
    let src = Source::File(dir.to_path_buf());
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| input_error(&src, "", e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out)?;
        } else {
            out.push(Source::File(p));
        }
    }
    Ok(())
}

/// The format of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// One JSON object (a record body) per line.
    JsonLines,
}

impl InputFormat {
    pub fn name(&self) -> &'static str {
        match self {
            InputFormat::JsonLines => "jsonl",
        }
    }
}

/// Tells the format from the first bytes of an input.
pub fn sniff(_head: &[u8]) -> InputFormat {
    InputFormat::JsonLines
}

/// One record body read from an input, as msgpack.
#[derive(Debug, Clone, PartialEq)]
pub struct InputRecord {
    pub body: rmpv::Value,
}

/// Opens a source for reading.
pub fn open(source: &Source) -> Result<Box<dyn Read>, InputError> {
    Ok(match source {
        Source::Stdin => Box::new(std::io::stdin()),
        Source::File(p) => {
            Box::new(std::fs::File::open(p).map_err(|e| input_error(source, "", e))?)
        }
    })
}

/// Reads JSON lines, calling `each` for every record. Blank lines are skipped; a line that
/// is not a JSON object is an error naming its line number.
pub fn read_json_lines(
    source: &Source,
    reader: impl Read,
    mut each: impl FnMut(InputRecord) -> Result<(), InputError>,
) -> Result<(), InputError> {
    let reader = BufReader::with_capacity(1 << 20, reader);
    for (n, line) in reader.split(b'\n').enumerate() {
        let line = line.map_err(|e| input_error(source, format!("line {}", n + 1), e))?;
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            input_error(source, format!("line {}", n + 1), format!("not JSON: {e}"))
        })?;
        if !v.is_object() {
            return Err(input_error(
                source,
                format!("line {}", n + 1),
                "a JSON line must be an object (one record body)",
            ));
        }
        each(InputRecord {
            body: json_to_msgpack(&v),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_errors_name_the_line() {
        let src = Source::Stdin;
        let mut n = 0;
        let r = read_json_lines(&src, &b"{\"a\":1}\n\n[1]\n"[..], |_| {
            n += 1;
            Ok(())
        });
        assert_eq!(n, 1);
        let e = r.unwrap_err();
        assert_eq!(e.place, "line 3");
        assert!(e
            .to_string()
            .starts_with("<stdin>: line 3: a JSON line must be an object"));
    }
}
