//! pssession-replay: runs saved logs through the built plugin with no Fluent Bit, over the
//! same ABI path Fluent Bit uses (the host emulator loads the `.so`), and prints what comes
//! out: flagged records, then aggregate rows, then a summary.

use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use pssession_core::chunk_io::{self, Layout};
use pssession_core::config::FieldOverrides;
use pssession_core::shapes::Scan;
use pssession_host_emulator::{self as host_emulator, Instance, Plugin};
use pssession_tools::replay::{self, InputError, InputFormat, InputRecord, Source};
use std::collections::BTreeMap;
use std::io::{BufWriter, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

pssession_host_emulator::export_host_symbols!();

/// Run saved Windows and PowerShell logs through the pssession Fluent Bit filter.
///
/// Inputs: EVTX files, JSON lines (one record body per line, any shape the plugin reads),
/// Fluent Bit msgpack record files, and plain text (syslog) files; directories recursively;
/// `-` for stdin. Flagged records (or all with --all) are written as JSON lines, then the
/// aggregate rows; the summary goes to stderr.
///
/// Exit status: 0 when it ran; 1 with --fail-on-match when something was flagged; 2 on a
/// usage, configuration or input error.
#[derive(Parser, Debug)]
#[command(name = "pssession-replay", version)]
struct Args {
    /// Input files or directories (read recursively); `-` reads stdin.
    #[arg(required = true)]
    inputs: Vec<String>,
    /// Filter property, as in a Fluent Bit config (repeatable): -p schema=splunk. Applied
    /// after -c, replacing that file's values of the same name.
    #[arg(short = 'p', long = "property", value_name = "KEY=VALUE")]
    properties: Vec<String>,
    /// Take the pssession filter section of this Fluent Bit config (classic or YAML).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print every record, not only the flagged ones.
    #[arg(long)]
    all: bool,
    /// Write records and rows to this file instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// Summary format on stderr.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// The plugin to load (default: the one built next to this binary, or $PSSESSION_PLUGIN).
    #[arg(long, value_name = "SO")]
    plugin: Option<PathBuf>,
    /// Exit with status 1 when any record was flagged (for CI of detection content).
    #[arg(long)]
    fail_on_match: bool,
    /// Pretty-print JSON records (multi-line).
    #[arg(long)]
    pretty: bool,
    /// Echo the plugin's log lines on stderr.
    #[arg(short = 'v', long)]
    verbose: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
}

/// Records handed to the filter per call, like a Fluent Bit chunk of a busy input.
const RECORDS_PER_CHUNK: usize = 512;

#[derive(Default)]
struct FileStats {
    name: String,
    format: &'static str,
    records: u64,
    flagged: u64,
}

#[derive(Default)]
struct Summary {
    files: Vec<FileStats>,
    per_shape: BTreeMap<String, u64>,
    per_host_user: BTreeMap<(String, String), u64>,
    records: u64,
    flagged: u64,
    rows: u64,
    bytes: u64,
    first_time: Option<f64>,
    last_time: Option<f64>,
}

struct Run<'p> {
    inst: Instance<'p>,
    out: Box<dyn Write>,
    all: bool,
    pretty: bool,
    closed: bool,
    namespace: String,
    overrides: FieldOverrides,
    pending: Vec<u8>,
    pending_n: usize,
    started: f64,
    summary: Summary,
    file: FileStats,
}

impl Run<'_> {
    fn write_json(&mut self, v: &serde_json::Value) {
        if self.closed {
            return;
        }
        let text = if self.pretty {
            serde_json::to_string_pretty(v).unwrap_or_default()
        } else {
            v.to_string()
        };
        if let Err(e) = writeln!(self.out, "{text}") {
            // A closed pipe (`| head`) ends the output, not the run.
            self.closed = e.kind() == std::io::ErrorKind::BrokenPipe;
        }
    }

    fn push(&mut self, rec: InputRecord) -> Result<(), InputError> {
        let time = rec.time.unwrap_or(self.started);
        let start = self.pending.len();
        match rec.raw {
            Some(raw) => self.pending.extend_from_slice(&raw),
            None => chunk_io::push_record(&mut self.pending, &rec.body, time, Layout::CURRENT),
        }
        self.account(start, time);
        self.pending_n += 1;
        if self.pending_n >= RECORDS_PER_CHUNK {
            self.flush();
        }
        Ok(())
    }

    /// Shape and time span of the record just appended.
    fn account(&mut self, start: usize, fb_time: f64) {
        use pssession_core::chunk::Records;
        let Some(Ok(rec)) = Records::new(&self.pending[start..]).next() else {
            return;
        };
        let (shape, time) = match Scan::new(rec.body(), &self.overrides) {
            Some(mut scan) => match scan.event_code() {
                Some(_) => {
                    let view = scan.view();
                    (view.shape.name(), view.time.map_or(fb_time, |t| t.secs))
                }
                None => ("not a windows event", fb_time),
            },
            None => ("not a windows event", fb_time),
        };
        *self.summary.per_shape.entry(shape.to_string()).or_default() += 1;
        let s = &mut self.summary;
        s.first_time = Some(s.first_time.map_or(time, |t| t.min(time)));
        s.last_time = Some(s.last_time.map_or(time, |t| t.max(time)));
    }

    fn flush(&mut self) {
        if self.pending_n == 0 {
            return;
        }
        let chunk = std::mem::take(&mut self.pending);
        let n = std::mem::take(&mut self.pending_n);
        let call = self.inst.filter(&chunk, "replay");
        if !call.modified() && !self.all {
            // Nothing flagged and nothing to print: no need to decode anything.
            self.file.records += n as u64;
            return;
        }
        let inputs = chunk_io::decode_chunk(&chunk).unwrap_or_default();
        let outputs = chunk_io::decode_chunk(&call.chunk).unwrap_or_default();
        for (i, o) in outputs.iter().enumerate() {
            let flagged = call.modified() && inputs.get(i).is_none_or(|r| r.raw != o.raw);
            self.file.records += 1;
            if flagged {
                self.file.flagged += 1;
                let ns = &o.body[self.namespace.as_str()];
                let key = (
                    ns["ComputerName"].as_str().unwrap_or("unknown").to_string(),
                    ns["User"].as_str().unwrap_or("unknown").to_string(),
                );
                *self.summary.per_host_user.entry(key).or_default() += 1;
            }
            if flagged || self.all {
                self.write_json(&o.body);
            }
        }
    }

    fn end_file(&mut self) {
        self.flush();
        let f = std::mem::take(&mut self.file);
        self.summary.records += f.records;
        self.summary.flagged += f.flagged;
        self.summary.files.push(f);
    }
}

fn parse_properties(props: &[String]) -> Result<Vec<(String, String)>, String> {
    props
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => Err(format!("-p {p}: expected KEY=VALUE")),
        })
        .collect()
}

fn load_plugin(path: Option<&PathBuf>) -> Result<Plugin, String> {
    let built = match path {
        Some(p) => p.clone(),
        None => host_emulator::find_built_plugin().ok_or(
            "the plugin .so was not found next to this binary; build it (make build) or pass --plugin",
        )?,
    };
    let staged =
        host_emulator::stage_plugin(&built).map_err(|e| format!("{}: {e}", built.display()))?;
    Plugin::load(&staged).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("pssession-replay: {msg}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> Result<ExitCode, String> {
    host_emulator::echo_logs(args.verbose);
    let props = merged_properties(&args)?;
    let sources = replay::expand_inputs(&args.inputs).map_err(|e| e.to_string())?;
    let plugin = load_plugin(args.plugin.as_ref())?;
    let mut all_props: Vec<(&str, &str)> = vec![("match", "*"), ("log_level", "warn")];
    all_props.extend(props.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let find = |name: &str| {
        props
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    };
    let namespace = find("namespace").unwrap_or_else(|| "pssession".into());
    let aggregate_tag = find("aggregate_tag").unwrap_or_else(|| "pssession.aggregate".into());
    let inst = plugin
        .instance(&all_props)
        .map_err(|e| format!("configuration error:\n{e}"))?;
    let emitter = find("emitter_name").unwrap_or_else(|| format!("emitter_for_{}", inst.name()));
    // The same field overrides the plugin uses, for the per-shape counts of the summary.
    let overrides = pssession_core::config::Config::from_properties(|name| {
        props
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    })
    .map(|c| c.fields)
    .unwrap_or_default();

    let progress = progress_bar(&sources);
    let started = Instant::now();
    let mut run = Run {
        inst,
        out: open_output(args.output.as_ref())?,
        all: args.all,
        pretty: args.pretty,
        closed: false,
        namespace,
        overrides,
        pending: Vec::new(),
        pending_n: 0,
        started: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0),
        summary: Summary::default(),
        file: FileStats::default(),
    };
    for src in &sources {
        replay_source(&mut run, src, &progress)?;
    }
    progress.finish_and_clear();
    write_rows(&mut run, &emitter, &aggregate_tag)?;
    let secs = started.elapsed().as_secs_f64();
    match args.format {
        Format::Table => print_table(&run.summary, secs),
        Format::Json => eprintln!("{}", summary_json(&run.summary, secs)),
    }
    if args.fail_on_match && run.summary.flagged > 0 {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// The filter's properties: the config file's section, then -p (replacing same-named
/// values); `match` and `alias` belong to the replay, not the filter.
fn merged_properties(args: &Args) -> Result<Vec<(String, String)>, String> {
    let mut props = match &args.config {
        Some(path) => replay::filter_properties_from_config(path).map_err(|e| e.to_string())?,
        None => Vec::new(),
    };
    let cli = parse_properties(&args.properties)?;
    props.retain(|(k, _)| !cli.iter().any(|(c, _)| c.eq_ignore_ascii_case(k)));
    props.extend(cli);
    props.retain(|(k, _)| !k.eq_ignore_ascii_case("match") && !k.eq_ignore_ascii_case("alias"));
    Ok(props)
}

fn open_output(path: Option<&PathBuf>) -> Result<Box<dyn Write>, String> {
    Ok(match path {
        Some(p) => Box::new(BufWriter::new(
            std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    })
}

/// A byte-count progress bar over the input files, shown only on a terminal.
fn progress_bar(sources: &[Source]) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let total_bytes: u64 = sources
        .iter()
        .filter_map(|s| match s {
            Source::File(p) => std::fs::metadata(p).ok().map(|m| m.len()),
            Source::Stdin => None,
        })
        .sum();
    let bar = ProgressBar::new(total_bytes);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {bytes}/{total_bytes} {wide_bar} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Replays one input (its format sniffed from its first bytes) through the plugin.
fn replay_source(run: &mut Run, src: &Source, progress: &ProgressBar) -> Result<(), String> {
    progress.set_message(src.to_string());
    let mut reader = replay::open(src).map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    (&mut reader)
        .take(4096)
        .read_to_end(&mut head)
        .map_err(|e| format!("{src}: {e}"))?;
    let format = match src {
        // An empty .evtx file is an event log with no events.
        Source::File(p) if head.is_empty() && p.extension().is_some_and(|e| e == "evtx") => {
            InputFormat::Evtx
        }
        _ => replay::sniff(&head),
    };
    run.file = FileStats {
        name: src.to_string(),
        format: format.name(),
        ..FileStats::default()
    };
    let mut counted = CountingReader {
        inner: std::io::Cursor::new(head).chain(reader),
        bar: progress,
        bytes: 0,
    };
    let each = |r: InputRecord| run.push(r);
    let result = match format {
        InputFormat::JsonLines => replay::read_json_lines(src, &mut counted, each),
        InputFormat::Evtx => replay::read_evtx(src, &mut counted, each),
        InputFormat::Msgpack => replay::read_msgpack(src, &mut counted, each),
        InputFormat::Text => replay::read_text_lines(src, &mut counted, each),
    };
    run.summary.bytes += counted.bytes;
    result.map_err(|e| e.to_string())?;
    run.end_file();
    Ok(())
}

/// Fires the engine's timer once more (the rows of everything replayed) and writes the
/// rows the emitter received under `aggregate_tag`.
fn write_rows(run: &mut Run, emitter: &str, aggregate_tag: &str) -> Result<(), String> {
    run.inst.fire_timers();
    let rows: Vec<serde_json::Value> = host_emulator::emitted(emitter)
        .into_iter()
        .filter(|e| e.tag == aggregate_tag)
        .flat_map(|e| chunk_io::decode_chunk(&e.data).unwrap_or_default())
        .map(|r| r.body)
        .collect();
    run.summary.rows = rows.len() as u64;
    for r in &rows {
        run.write_json(r);
    }
    match run.out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.to_string()),
        _ => Ok(()),
    }
}

/// Counts bytes read for the progress bar and the throughput.
struct CountingReader<'b, R> {
    inner: R,
    bar: &'b ProgressBar,
    bytes: u64,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

fn time_text(t: Option<f64>) -> String {
    t.map(pssession_core::timefmt::rfc3339)
        .unwrap_or_else(|| "-".into())
}

fn summary_json(s: &Summary, secs: f64) -> serde_json::Value {
    serde_json::json!({
        "records": s.records,
        "flagged": s.flagged,
        "aggregate_rows": s.rows,
        "files": s.files.iter().map(|f| serde_json::json!({
            "file": f.name, "format": f.format, "records": f.records, "flagged": f.flagged,
        })).collect::<Vec<_>>(),
        "shapes": s.per_shape,
        "flagged_by_host_user": s.per_host_user.iter().map(|((h, u), n)| serde_json::json!({
            "ComputerName": h, "User": u, "count": n,
        })).collect::<Vec<_>>(),
        "first_time": time_text(s.first_time),
        "last_time": time_text(s.last_time),
        "seconds": secs,
        "records_per_second": if secs > 0.0 { s.records as f64 / secs } else { 0.0 },
        "bytes": s.bytes,
    })
}

fn print_table(s: &Summary, secs: f64) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "\n== pssession-replay summary ==");
    let _ = writeln!(
        e,
        "{:<56} {:>7} {:>9} {:>8}",
        "file", "format", "records", "flagged"
    );
    for f in &s.files {
        let name = if f.name.len() > 56 {
            &f.name[f.name.len() - 56..]
        } else {
            &f.name
        };
        let _ = writeln!(
            e,
            "{name:<56} {:>7} {:>9} {:>8}",
            f.format, f.records, f.flagged
        );
    }
    let _ = writeln!(e, "\nrecords by shape:");
    for (shape, n) in &s.per_shape {
        let _ = writeln!(e, "  {shape:<24} {n:>9}");
    }
    if !s.per_host_user.is_empty() {
        let _ = writeln!(e, "\nflagged by ComputerName / User:");
        for ((h, u), n) in &s.per_host_user {
            let _ = writeln!(e, "  {h:<32} {u:<48} {n:>6}");
        }
    }
    let rate = if secs > 0.0 {
        s.records as f64 / secs
    } else {
        0.0
    };
    let mb = s.bytes as f64 / 1e6;
    let _ = writeln!(
        e,
        "\ntime span: {} .. {}",
        time_text(s.first_time),
        time_text(s.last_time)
    );
    let _ = writeln!(
        e,
        "{} records, {} flagged, {} aggregate rows; {:.2}s, {:.0} records/s, {:.1} MB/s",
        s.records,
        s.flagged,
        s.rows,
        secs,
        rate,
        if secs > 0.0 { mb / secs } else { 0.0 }
    );
}
