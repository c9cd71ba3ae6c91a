//! pssession-replay: runs saved logs through the built plugin with no Fluent Bit, over the
//! same ABI path Fluent Bit uses (the host emulator loads the `.so`), and prints what
//! comes out.

use clap::Parser;
use flb_filter_pssession::chunk_io::{self, Layout};
use flb_filter_pssession::host_emulator::{self, Instance, Plugin};
use flb_filter_pssession::replay::{self, InputError, InputFormat};
use std::collections::BTreeMap;
use std::io::{BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

flb_filter_pssession::export_host_symbols!();

/// Run saved Windows/PowerShell logs through the pssession Fluent Bit filter.
#[derive(Parser, Debug)]
#[command(name = "pssession-replay", version)]
struct Args {
    /// Input files or directories (recursively); `-` reads stdin.
    #[arg(required = true)]
    inputs: Vec<String>,
    /// Filter property, as in a Fluent Bit config (repeatable): -p schema=splunk
    #[arg(short = 'p', long = "property", value_name = "KEY=VALUE")]
    properties: Vec<String>,
    /// Print every record, not only the flagged ones.
    #[arg(long)]
    all: bool,
    /// Write records to this file instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// The plugin to load (default: the one built next to this binary).
    #[arg(long, value_name = "SO")]
    plugin: Option<PathBuf>,
    /// Exit with status 1 when any record was flagged.
    #[arg(long)]
    fail_on_match: bool,
    /// Pretty-print JSON records (multi-line) instead of one per line.
    #[arg(long)]
    pretty: bool,
    /// Echo the plugin's log lines on stderr.
    #[arg(short = 'v', long)]
    verbose: bool,
}

/// Records handed to the filter per call, like a Fluent Bit chunk of a busy input.
const RECORDS_PER_CHUNK: usize = 512;

#[derive(Default)]
struct Summary {
    per_file: Vec<(String, &'static str, u64, u64)>,
    per_host_user: BTreeMap<(String, String), u64>,
    records: u64,
    flagged: u64,
}

struct Run<'p> {
    inst: Instance<'p>,
    out: Box<dyn Write>,
    all: bool,
    pretty: bool,
    pending: Vec<u8>,
    pending_n: usize,
    summary: Summary,
    file_records: u64,
    file_flagged: u64,
    namespace: String,
    closed: bool,
}

impl Run<'_> {
    fn push(&mut self, body: &rmpv::Value) -> Result<(), InputError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        chunk_io::push_record(&mut self.pending, body, now, Layout::CURRENT);
        self.pending_n += 1;
        if self.pending_n >= RECORDS_PER_CHUNK {
            self.flush();
        }
        Ok(())
    }

    fn flush(&mut self) {
        if self.pending_n == 0 {
            return;
        }
        let chunk = std::mem::take(&mut self.pending);
        self.pending_n = 0;
        let call = self.inst.filter(&chunk, "replay");
        let inputs = chunk_io::decode_chunk(&chunk).unwrap_or_default();
        let outputs = chunk_io::decode_chunk(&call.chunk).unwrap_or_default();
        for (i, o) in outputs.iter().enumerate() {
            let flagged = call.modified() && inputs.get(i).is_none_or(|r| r.raw != o.raw);
            self.file_records += 1;
            if flagged {
                self.file_flagged += 1;
                let ns = &o.body[self.namespace.as_str()];
                let key = (
                    ns["ComputerName"].as_str().unwrap_or("unknown").to_string(),
                    ns["User"].as_str().unwrap_or("unknown").to_string(),
                );
                *self.summary.per_host_user.entry(key).or_default() += 1;
            }
            if (flagged || self.all) && !self.closed {
                let text = if self.pretty {
                    serde_json::to_string_pretty(&o.body).unwrap_or_default()
                } else {
                    o.body.to_string()
                };
                if let Err(e) = writeln!(self.out, "{text}") {
                    // A closed pipe (`| head`) ends the output, not the run.
                    self.closed = e.kind() == std::io::ErrorKind::BrokenPipe;
                }
            }
        }
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
        None => host_emulator::find_built_plugin()
            .ok_or("the plugin .so was not found next to this binary; build it or pass --plugin")?,
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
    let props = parse_properties(&args.properties)?;
    let sources = replay::expand_inputs(&args.inputs).map_err(|e| e.to_string())?;
    let plugin = load_plugin(args.plugin.as_ref())?;
    let mut all_props: Vec<(&str, &str)> = vec![("match", "*")];
    all_props.extend(props.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let namespace = props
        .iter()
        .rev()
        .find(|(k, _)| k.eq_ignore_ascii_case("namespace"))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "pssession".into());
    let inst = plugin.instance(&all_props).map_err(|e| e.to_string())?;
    let out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(BufWriter::new(
            std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    let mut run = Run {
        inst,
        out,
        all: args.all,
        pretty: args.pretty,
        pending: Vec::new(),
        pending_n: 0,
        summary: Summary::default(),
        file_records: 0,
        file_flagged: 0,
        namespace,
        closed: false,
    };
    let started = Instant::now();
    for src in &sources {
        let mut reader = replay::open(src).map_err(|e| e.to_string())?;
        let mut head = Vec::new();
        (&mut reader)
            .take(4096)
            .read_to_end(&mut head)
            .map_err(|e| format!("{src}: {e}"))?;
        let format = replay::sniff(&head);
        let reader = std::io::Cursor::new(head).chain(reader);
        match format {
            InputFormat::JsonLines => replay::read_json_lines(src, reader, |r| run.push(&r.body))
                .map_err(|e| e.to_string())?,
        }
        run.flush();
        run.summary.per_file.push((
            src.to_string(),
            format.name(),
            run.file_records,
            run.file_flagged,
        ));
        run.summary.records += run.file_records;
        run.summary.flagged += run.file_flagged;
        run.file_records = 0;
        run.file_flagged = 0;
    }
    match run.out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.to_string()),
        _ => {}
    }
    let elapsed = started.elapsed().as_secs_f64();
    print_summary(&run.summary, elapsed);
    if args.fail_on_match && run.summary.flagged > 0 {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_summary(s: &Summary, secs: f64) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "\n== pssession-replay summary ==");
    let _ = writeln!(
        e,
        "{:<48} {:>7} {:>9} {:>8}",
        "file", "format", "records", "flagged"
    );
    for (f, fmt, n, fl) in &s.per_file {
        let name = if f.len() > 48 { &f[f.len() - 48..] } else { f };
        let _ = writeln!(e, "{name:<48} {fmt:>7} {n:>9} {fl:>8}");
    }
    if !s.per_host_user.is_empty() {
        let _ = writeln!(e, "\nflagged by ComputerName / User:");
        for ((h, u), n) in &s.per_host_user {
            let _ = writeln!(e, "  {h:<32} {u:<40} {n:>6}");
        }
    }
    let rate = if secs > 0.0 {
        s.records as f64 / secs
    } else {
        0.0
    };
    let _ = writeln!(
        e,
        "\n{} records, {} flagged, {:.2}s ({:.0} records/s)",
        s.records, s.flagged, secs, rate
    );
}
