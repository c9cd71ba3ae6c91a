//! Saved logs -> record bodies, for the replay CLI: finds the input files, tells their
//! format, and reads each into msgpack record bodies with the place each came from, so an
//! input error can name the file and where in it.

use pssession_core::chunk_io::json_to_msgpack;
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
    /// A Windows event log file, read with the `evtx` crate.
    Evtx,
    /// Fluent Bit msgpack records (a chunk file, or `out_file`'s msgpack).
    Msgpack,
    /// Plain text lines (syslog files): each becomes `{"log": line}`.
    Text,
}

impl InputFormat {
    pub fn name(&self) -> &'static str {
        match self {
            InputFormat::JsonLines => "jsonl",
            InputFormat::Evtx => "evtx",
            InputFormat::Msgpack => "msgpack",
            InputFormat::Text => "text",
        }
    }
}

/// The EVTX file signature.
const EVTX_MAGIC: &[u8] = b"ElfFile\0";

/// Tells the format from the first bytes of an input: the EVTX signature; a msgpack record
/// (`[header, body]` arrays); a JSON object; else text lines.
pub fn sniff(head: &[u8]) -> InputFormat {
    if head.starts_with(EVTX_MAGIC) {
        return InputFormat::Evtx;
    }
    if let Some(&first) = head.first() {
        let msgpack_record = first == 0x92
            && matches!(
                head.get(1),
                Some(0x92)
                    | Some(0xd7)
                    | Some(0xcb)
                    | Some(0xca)
                    | Some(0xce)
                    | Some(0xcf)
                    | Some(0x00..=0x7f)
            );
        if msgpack_record {
            return InputFormat::Msgpack;
        }
    }
    let text = head.iter().position(|b| !b.is_ascii_whitespace());
    match text.map(|i| head[i]) {
        Some(b'{') => InputFormat::JsonLines,
        _ => InputFormat::Text,
    }
}

/// One record read from an input: a body, and the Fluent Bit time when the input has one.
#[derive(Debug, Clone, PartialEq)]
pub struct InputRecord {
    pub body: rmpv::Value,
    /// Epoch seconds, when the input gives a time (EVTX TimeCreated, msgpack headers).
    pub time: Option<f64>,
    /// The record's whole msgpack bytes, when the input is msgpack (passed on as they are).
    pub raw: Option<Vec<u8>>,
}

impl InputRecord {
    fn body(body: rmpv::Value) -> InputRecord {
        InputRecord {
            body,
            time: None,
            raw: None,
        }
    }
}

/// Calls `each` with every line (1-based number, bytes without the line end), read in
/// 1 MB blocks.
fn for_each_line(
    source: &Source,
    reader: impl Read,
    mut each: impl FnMut(usize, &[u8]) -> Result<(), InputError>,
) -> Result<(), InputError> {
    let reader = BufReader::with_capacity(1 << 20, reader);
    for (n, line) in reader.split(b'\n').enumerate() {
        let line = line.map_err(|e| input_error(source, format!("line {}", n + 1), e))?;
        each(n + 1, line.strip_suffix(b"\r").unwrap_or(&line))?;
    }
    Ok(())
}

/// Reads text lines: each becomes a record `{"log": line}` (as Fluent Bit's tail input
/// gives without a parser). Bytes that are not UTF-8 are replaced.
pub fn read_text_lines(
    source: &Source,
    reader: impl Read,
    mut each: impl FnMut(InputRecord) -> Result<(), InputError>,
) -> Result<(), InputError> {
    for_each_line(source, reader, |_, line| {
        if line.is_empty() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(line).into_owned();
        each(InputRecord::body(rmpv::Value::Map(vec![(
            "log".into(),
            rmpv::Value::from(text),
        )])))
    })
}

/// Reads Fluent Bit msgpack records as a stream (a block at a time, never the whole
/// input). An invalid record is an error naming its byte offset.
pub fn read_msgpack(
    source: &Source,
    mut reader: impl Read,
    mut each: impl FnMut(InputRecord) -> Result<(), InputError>,
) -> Result<(), InputError> {
    use pssession_core::chunk::{RecordFormat, Records};
    use pssession_core::msgpack::Cursor;
    const BLOCK: usize = 1 << 20;
    let mut buf: Vec<u8> = Vec::new();
    let mut base = 0usize; // offset of buf[0] in the input
    let mut eof = false;
    loop {
        // Complete records at the front of the buffer.
        let mut pos = 0;
        loop {
            let mut c = Cursor::at(&buf, pos);
            if c.is_at_end() {
                break;
            }
            match c.skip_value() {
                Ok(()) => {
                    let raw = &buf[pos..c.pos()];
                    let rec = match Records::new(raw).next() {
                        Some(Ok(r)) => r,
                        _ => break,
                    };
                    let at = format!("byte {}", base + pos);
                    if rec.format == RecordFormat::Other {
                        return Err(input_error(
                            source,
                            at,
                            "not a Fluent Bit record ([timestamp, body] or [[timestamp, metadata], body])",
                        ));
                    }
                    let body = rmpv::decode::read_value(&mut &rec.body()[..])
                        .map_err(|e| input_error(source, at, e))?;
                    each(InputRecord {
                        body,
                        time: rec.timestamp.as_f64(),
                        raw: Some(raw.to_vec()),
                    })?;
                    pos = c.pos();
                }
                Err(e) if eof => {
                    return Err(input_error(
                        source,
                        format!("byte {}", base + e.offset),
                        "not a msgpack record",
                    ))
                }
                Err(_) => break, // incomplete: read more
            }
        }
        buf.drain(..pos);
        base += pos;
        if eof {
            return Ok(());
        }
        let old = buf.len();
        buf.resize(old + BLOCK, 0);
        let n = reader
            .read(&mut buf[old..])
            .map_err(|e| input_error(source, format!("byte {}", base + old), e))?;
        buf.truncate(old + n);
        eof = n == 0;
    }
}

/// Reads a Windows event log file with the `evtx` crate. Each event becomes the record
/// Fluent Bit's `winevtlog` input would send for it (EventID, Channel, Computer, UserID,
/// TimeCreated, ProviderName, StringInserts = the EventData values in order), timestamped
/// with its TimeCreated. An empty file holds no events.
pub fn read_evtx(
    source: &Source,
    mut reader: impl Read,
    mut each: impl FnMut(InputRecord) -> Result<(), InputError>,
) -> Result<(), InputError> {
    let not_evtx = |e: evtx::err::EvtxError| {
        input_error(source, "header", format!("not a readable EVTX file: {e}"))
    };
    // A file is read chunk by chunk by the evtx crate; stdin is buffered whole.
    let mut from_file;
    let mut from_buf;
    let records: &mut dyn Iterator<
        Item = evtx::err::Result<evtx::SerializedEvtxRecord<serde_json::Value>>,
    > = match source {
        Source::File(p) => {
            if std::fs::metadata(p).map(|m| m.len()).unwrap_or(0) == 0 {
                return Ok(());
            }
            from_file = evtx::EvtxParser::from_path(p).map_err(not_evtx)?;
            &mut from_file.records_json_value()
        }
        Source::Stdin => {
            let mut buf = Vec::new();
            reader
                .read_to_end(&mut buf)
                .map_err(|e| input_error(source, "", e))?;
            if buf.is_empty() {
                return Ok(());
            }
            from_buf = evtx::EvtxParser::from_buffer(buf).map_err(not_evtx)?;
            &mut from_buf.records_json_value()
        }
    };
    for (n, rec) in records.enumerate() {
        let rec = rec.map_err(|e| input_error(source, format!("record {}", n + 1), e))?;
        let (body, time) = winevtlog_record(&rec.data);
        each(InputRecord {
            body: json_to_msgpack(&body),
            time,
            raw: None,
        })?;
    }
    Ok(())
}

/// The `winevtlog` shape of an event the evtx crate rendered as JSON.
pub fn winevtlog_record(event: &serde_json::Value) -> (serde_json::Value, Option<f64>) {
    use serde_json::{json, Value};
    let sys = &event["Event"]["System"];
    let text = |v: &Value| -> Value {
        match v {
            Value::Object(o) => o.get("#text").cloned().unwrap_or(Value::Null),
            other => other.clone(),
        }
    };
    let inserts: Vec<Value> = match &event["Event"]["EventData"] {
        Value::Object(m) => m
            .iter()
            .filter(|(k, _)| !k.starts_with('#'))
            .map(|(_, v)| text(v))
            .collect(),
        _ => Vec::new(),
    };
    let created = sys["TimeCreated"]["#attributes"]["SystemTime"].clone();
    let time = created
        .as_str()
        .and_then(pssession_core::timefmt::parse_time_text);
    let body = json!({
        "ProviderName": sys["Provider"]["#attributes"]["Name"],
        "EventID": text(&sys["EventID"]),
        "Level": sys["Level"],
        "Task": sys["Task"],
        "Opcode": sys["Opcode"],
        "Keywords": sys["Keywords"],
        "TimeCreated": created,
        "EventRecordID": sys["EventRecordID"],
        "ProcessID": sys["Execution"]["#attributes"]["ProcessID"],
        "ThreadID": sys["Execution"]["#attributes"]["ThreadID"],
        "Channel": sys["Channel"],
        "Computer": sys["Computer"],
        "UserID": sys["Security"]["#attributes"]["UserID"],
        "StringInserts": inserts,
    });
    (body, time)
}

/// The `pssession` filter's properties in a Fluent Bit configuration file (classic or
/// YAML, told by the extension or content): the first filter section named pssession.
pub fn filter_properties_from_config(path: &Path) -> Result<Vec<(String, String)>, InputError> {
    let src = Source::File(path.to_path_buf());
    let text = std::fs::read_to_string(path).map_err(|e| input_error(&src, "", e))?;
    let yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml")
        || text
            .lines()
            .any(|l| l.trim_start().starts_with("pipeline:"));
    let props = if yaml {
        yaml_filter_properties(&src, &text)?
    } else {
        classic_filter_properties(&text)
    };
    props.ok_or_else(|| input_error(&src, "", "no filter section with name pssession"))
}

/// `${VAR}` replaced by the environment, as Fluent Bit does.
fn expand_env(v: &str) -> String {
    let mut out = String::new();
    let mut rest = v;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        match rest[i + 2..].find('}') {
            Some(j) => {
                out.push_str(&std::env::var(&rest[i + 2..i + 2 + j]).unwrap_or_default());
                rest = &rest[i + 3 + j..];
            }
            None => {
                out.push_str(&rest[i..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

fn classic_filter_properties(text: &str) -> Option<Vec<(String, String)>> {
    let mut sections: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if t.starts_with('[') && t.ends_with(']') {
            sections.push((t[1..t.len() - 1].trim().to_ascii_uppercase(), Vec::new()));
            continue;
        }
        if let Some((_, props)) = sections.last_mut() {
            let mut parts = t.splitn(2, char::is_whitespace);
            let k = parts.next().unwrap_or("").to_string();
            let v = parts.next().unwrap_or("").trim().to_string();
            props.push((k, expand_env(&v)));
        }
    }
    sections
        .into_iter()
        .find(|(name, props)| {
            name == "FILTER"
                && props
                    .iter()
                    .any(|(k, v)| k.eq_ignore_ascii_case("name") && v == "pssession")
        })
        .map(|(_, props)| {
            props
                .into_iter()
                .filter(|(k, _)| !k.eq_ignore_ascii_case("name"))
                .collect()
        })
}

fn yaml_filter_properties(
    src: &Source,
    text: &str,
) -> Result<Option<Vec<(String, String)>>, InputError> {
    use yaml_rust2::{Yaml, YamlLoader};
    let docs = YamlLoader::load_from_str(text).map_err(|e| {
        input_error(
            src,
            format!("line {}", e.marker().line()),
            format!("not valid YAML: {e}"),
        )
    })?;
    let scalar = |y: &Yaml| -> Option<String> {
        match y {
            Yaml::String(s) => Some(expand_env(s)),
            Yaml::Integer(i) => Some(i.to_string()),
            Yaml::Real(r) => Some(r.clone()),
            Yaml::Boolean(b) => Some(if *b { "on".into() } else { "off".into() }),
            _ => None,
        }
    };
    for doc in &docs {
        let filters = &doc["pipeline"]["filters"];
        let Some(list) = filters.as_vec() else {
            continue;
        };
        for f in list {
            if f["name"].as_str() != Some("pssession") {
                continue;
            }
            let mut props = Vec::new();
            if let Some(h) = f.as_hash() {
                for (k, v) in h {
                    let Some(k) = k.as_str() else { continue };
                    if k == "name" {
                        continue;
                    }
                    match v {
                        Yaml::Array(items) => props
                            .extend(items.iter().filter_map(scalar).map(|v| (k.to_string(), v))),
                        other => {
                            if let Some(v) = scalar(other) {
                                props.push((k.to_string(), v));
                            }
                        }
                    }
                }
            }
            return Ok(Some(props));
        }
    }
    Ok(None)
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
    for_each_line(source, reader, |n, line| {
        let text = String::from_utf8_lossy(line);
        let text = text.trim();
        if text.is_empty() {
            return Ok(());
        }
        let at = || format!("line {n}");
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| input_error(source, at(), format!("not JSON: {e}")))?;
        if !v.is_object() {
            return Err(input_error(
                source,
                at(),
                "a JSON line must be an object (one record body)",
            ));
        }
        each(InputRecord::body(json_to_msgpack(&v)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_formats() {
        assert_eq!(sniff(b"ElfFile\0abc"), InputFormat::Evtx);
        assert_eq!(sniff(b"  {\"a\":1}"), InputFormat::JsonLines);
        assert_eq!(sniff(&[0x92, 0x92, 0xd7, 0x00]), InputFormat::Msgpack);
        assert_eq!(
            sniff(b"Mar  5 10:11:12 host powershell[1]: x"),
            InputFormat::Text
        );
        assert_eq!(sniff(b""), InputFormat::Text);
    }

    #[test]
    fn reads_filter_sections_of_both_config_formats() {
        let classic = "[SERVICE]\n    Flush 1\n[FILTER]\n    Name grep\n    Match *\n[FILTER]\n    Name pssession\n    Match win.*\n    Exclude_User a b\n    Exclude_User c\n";
        let p = classic_filter_properties(classic).unwrap();
        assert_eq!(
            p,
            vec![
                ("Match".to_string(), "win.*".to_string()),
                ("Exclude_User".into(), "a b".into()),
                ("Exclude_User".into(), "c".into())
            ]
        );
        let yaml = "pipeline:\n  filters:\n    - name: pssession\n      match: '*'\n      risk_score: 70\n      exclude_user:\n        - x\n        - y\n";
        let p = yaml_filter_properties(&Source::Stdin, yaml)
            .unwrap()
            .unwrap();
        assert!(p.contains(&("risk_score".into(), "70".into())));
        assert_eq!(p.iter().filter(|(k, _)| k == "exclude_user").count(), 2);
        assert!(yaml_filter_properties(&Source::Stdin, "pipeline: [").is_err());
    }

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
