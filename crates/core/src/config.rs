//! The filter's properties: their table (names, types, defaults, documentation) and their
//! validation into a [`Config`]. Every error names the property and says why.

use regex::Regex;
use std::fmt;

/// How rows relate to time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateMode {
    /// Each flush emits the rows of the window since the last flush, then starts afresh.
    /// Rows of consecutive windows, or of many agents, merge by summing counts and taking
    /// the min of firstTime and the max of lastTime.
    Tumbling,
    /// Counts run from start-up; each flush emits the rows updated since the last one.
    Cumulative,
}

/// How a property is typed in Fluent Bit's config map (for `fluent-bit -h` and docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyType {
    Str,
    Int,
}

/// One property of the filter.
#[derive(Debug, Clone, Copy)]
pub struct PropertySpec {
    pub name: &'static str,
    pub ty: PropertyType,
    /// Default as Fluent Bit would show it; None when unset by default.
    pub default: Option<&'static str>,
    /// May be given several times.
    pub multiple: bool,
    pub description: &'static str,
    /// How its value is checked and applied.
    pub apply: Apply,
}

type Result1 = Result<(), ConfigError>;

/// How a property's value is checked and applied to the configuration.
#[derive(Clone, Copy)]
pub enum Apply {
    /// With its (trimmed) value, when it is given.
    One(fn(&mut Config, &'static str, &str) -> Result1),
    /// With every value given (a repeatable property), none included.
    All(fn(&mut Config, &'static str, &[String]) -> Result1),
    /// With its value or None: its default depends on a property declared before it.
    Maybe(fn(&mut Config, &'static str, Option<&str>) -> Result1),
}

impl std::fmt::Debug for Apply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Apply::One(_) => "One",
            Apply::All(_) => "All",
            Apply::Maybe(_) => "Maybe",
        })
    }
}

const fn prop(
    name: &'static str,
    ty: PropertyType,
    default: Option<&'static str>,
    multiple: bool,
    description: &'static str,
    apply: Apply,
) -> PropertySpec {
    PropertySpec {
        name,
        ty,
        default,
        multiple,
        description,
        apply,
    }
}

use PropertyType::{Int, Str};

/// Every property the filter accepts. Fluent Bit rejects any other name at start-up.
pub const PROPERTIES: &[PropertySpec] = &[
    prop(
        "mode",
        Str,
        Some("exact"),
        false,
        "Detection mode. `exact`: the reference analytic, literally (EventCode 4104 in the \
         PowerShell Operational channel whose script text contains both `Enter-PSSession` and \
         `-ComputerName`, case-insensitively). `extended`: reads the script as PowerShell \
         does and flags the Enter-PSSession invocations that open a session elsewhere.",
        Apply::One(set_mode),
    ),
    prop(
        "local_sessions",
        Str,
        Some("ignore"),
        false,
        "mode extended: sessions that stay on this computer (loopback, its own name, a local \
         Hyper-V VM or container) are `ignore`d or `flag`ged with local_risk_score, never as \
         lateral movement.",
        Apply::One(set_local_sessions),
    ),
    prop(
        "local_risk_score",
        Int,
        Some("10"),
        false,
        "mode extended: risk score of flagged local sessions (0 to 1000).",
        Apply::One(set_local_risk_score),
    ),
    prop(
        "transport_risk",
        Str,
        None,
        false,
        "mode extended: risk score per transport, e.g. `ssh=60,session=50` (transports: \
         winrm, winrm-uri, ssh, session); others use risk_score.",
        Apply::One(set_transport_risk),
    ),
    prop(
        "schema",
        Str,
        Some("ecs"),
        false,
        "Field names of the enrichment: `ecs` (Elastic Common Schema: threat.*, rule.*, \
         event.kind/risk_score/severity) or `splunk` (risk-based alerting: risk_score, \
         risk_message, risk_object, annotations.mitre_attack, ...).",
        Apply::One(set_schema),
    ),
    prop(
        "exclude_user",
        Str,
        None,
        true,
        "Regular expression (unanchored, Rust regex syntax) on the normalised User; a match \
         is not flagged. Repeat the property for several expressions.",
        Apply::All(set_exclude_user),
    ),
    prop(
        "exclude_computer",
        Str,
        None,
        true,
        "Regular expression (unanchored) on the normalised ComputerName; a match is not \
         flagged. Repeatable.",
        Apply::All(set_exclude_computer),
    ),
    prop(
        "risk_score",
        Int,
        Some("45"),
        false,
        "Risk score written on flagged records, 0 to 1000 (the analytic's is 45).",
        Apply::One(set_risk_score),
    ),
    prop(
        "namespace",
        Str,
        Some("pssession"),
        false,
        "Key of the map that carries the normalised values (EventCode, ComputerName, User, \
         time) and the fields the schema has no place for. If a record already has this key, \
         `_` is prepended until the key is free.",
        Apply::One(set_namespace),
    ),
    prop(
        "aggregate",
        Str,
        Some("on"),
        false,
        "Keep the analytic's `stats count min(_time) max(_time) by EventCode Message \
         ComputerName User` live and emit its rows as records: `on` or `off`.",
        Apply::One(set_aggregate),
    ),
    prop(
        "aggregate_tag",
        Str,
        Some("pssession.aggregate"),
        false,
        "Tag of the aggregate rows (route them with Match).",
        Apply::One(set_tag),
    ),
    prop(
        "aggregate_mode",
        Str,
        Some("tumbling"),
        false,
        "`tumbling`: each flush emits the rows of the window since the last flush \
         (mergeable: sum count, min firstTime, max lastTime). `cumulative`: running totals \
         since start-up; each flush emits the rows updated since the last one.",
        Apply::One(set_aggregate_mode),
    ),
    prop(
        "flush_interval",
        Str,
        Some("60s"),
        false,
        "How often rows are emitted: seconds, or a number with s, m or h (1s to 24h).",
        Apply::One(set_flush_interval),
    ),
    prop(
        "max_keys",
        Int,
        Some("10000"),
        false,
        "Most rows kept at once (1 to 1000000); when full the least recently updated row is \
         emitted early.",
        Apply::One(set_max_keys),
    ),
    prop(
        "max_message_bytes",
        Str,
        Some("16M"),
        false,
        "Most bytes of Message text kept in rows at once (a size: 64K, 16M, 1G); when full \
         the least recently updated row is emitted early.",
        Apply::One(set_max_message_bytes),
    ),
    prop(
        "aggregate_state_file",
        Str,
        None,
        false,
        "File where rows not yet emitted are saved when Fluent Bit stops or reloads, and \
         read back (then removed) at the next start, so no count is lost. Without it, such \
         rows are written to Fluent Bit's log.",
        Apply::One(set_aggregate_state_file),
    ),
    prop(
        "alert_tag",
        Str,
        None,
        false,
        "When set, a copy of each flagged record is also emitted under this tag, while the \
         original goes on in its own stream.",
        Apply::One(set_tag),
    ),
    prop(
        "emitter_name",
        Str,
        None,
        false,
        "Name of the emitter input that carries aggregate rows and alert copies (default \
         `emitter_for_<filter name>`).",
        Apply::One(set_emitter_name),
    ),
    prop(
        "emitter_mem_buf_limit",
        Str,
        Some("10M"),
        false,
        "Memory buffer limit of the emitter input.",
        Apply::One(set_emitter_mem_buf_limit),
    ),
    prop(
        "emitter_storage.type",
        Str,
        Some("memory"),
        false,
        "Storage type of the emitter input: `memory` or `filesystem`.",
        Apply::One(set_emitter_storage_type),
    ),
    prop(
        "reassemble",
        Str,
        Some("off"),
        false,
        "Judge script blocks split over several 4104 events as a whole: collect the parts \
         per (computer, ScriptBlock ID) and flag the record that completes the script. Off \
         by default in mode exact, which judges each event alone as the analytic does.",
        Apply::Maybe(set_reassemble),
    ),
    prop(
        "reassemble_timeout",
        Str,
        Some("30s"),
        false,
        "How long a script block may stay incomplete before it is judged as it stands \
         (1s to 24h).",
        Apply::One(set_reassemble_timeout),
    ),
    prop(
        "reassemble_max_bytes",
        Str,
        Some("32M"),
        false,
        "Most bytes of open script blocks kept; past it the oldest block is judged as it \
         stands.",
        Apply::One(set_reassemble_max_bytes),
    ),
    prop(
        "reassemble_max_blocks",
        Int,
        Some("1000"),
        false,
        "Most open script blocks (1 to 1000000); past it the oldest is judged as it stands.",
        Apply::One(set_reassemble_max_blocks),
    ),
    prop(
        "event_code_key",
        Str,
        None,
        false,
        "Field holding the event id, for a record shape the filter does not know. A top-level \
         key, or a record accessor such as `$event['id']`. Read before the built-in shapes.",
        Apply::One(set_field_key),
    ),
    prop(
        "channel_key",
        Str,
        None,
        false,
        "Field holding the event log channel (see event_code_key).",
        Apply::One(set_field_key),
    ),
    prop(
        "computer_key",
        Str,
        None,
        false,
        "Field holding the computer name (see event_code_key).",
        Apply::One(set_field_key),
    ),
    prop(
        "user_key",
        Str,
        None,
        false,
        "Field holding the user (see event_code_key).",
        Apply::One(set_field_key),
    ),
    prop(
        "message_key",
        Str,
        None,
        false,
        "Field holding the rendered message text (see event_code_key).",
        Apply::One(set_field_key),
    ),
    prop(
        "script_block_key",
        Str,
        None,
        false,
        "Field holding the script block text, used when there is no message (see \
         event_code_key).",
        Apply::One(set_field_key),
    ),
    prop(
        "time_key",
        Str,
        None,
        false,
        "Field holding the event's own time (RFC 3339, `YYYY-MM-DD HH:MM:SS[.fff][ +zzzz]` \
         or epoch seconds; see event_code_key).",
        Apply::One(set_field_key),
    ),
];

/// Looks a property up by name, as Fluent Bit does (ASCII case-insensitively).
pub fn find_property(name: &str) -> Option<&'static PropertySpec> {
    PROPERTIES
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(name))
}

/// A configuration error: which property, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub property: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "property '{}': {}", self.property, self.message)
    }
}

impl std::error::Error for ConfigError {}

fn error(property: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        property: property.to_string(),
        message: message.into(),
    }
}

/// Detection mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Exact,
    Extended,
}

/// Field naming of the enrichment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    Ecs,
    Splunk,
}

/// A path to a field: top-level key then nested map keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath(pub Vec<String>);

impl FieldPath {
    /// Parses `name` (a literal top-level key, dots included) or a Fluent Bit record
    /// accessor `$a['b']["c"]` / `$a`.
    pub fn parse(property: &str, s: &str) -> Result<FieldPath, ConfigError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(error(property, "empty field name"));
        }
        let Some(rest) = s.strip_prefix('$') else {
            return Ok(FieldPath(vec![s.to_string()]));
        };
        let first_end = rest.find('[').unwrap_or(rest.len());
        let first = &rest[..first_end];
        if first.is_empty() {
            return Err(error(
                property,
                format!("record accessor '{s}' has no key after '$'"),
            ));
        }
        let mut parts = vec![first.to_string()];
        let mut tail = &rest[first_end..];
        while !tail.is_empty() {
            let quote = match tail.as_bytes() {
                [b'[', q @ (b'\'' | b'"'), ..] => *q as char,
                _ => {
                    return Err(error(
                        property,
                        format!("record accessor '{s}': expected ['key'] at '{tail}'"),
                    ))
                }
            };
            let inner = &tail[2..];
            let close = format!("{quote}]");
            let Some(end) = inner.find(&close) else {
                return Err(error(
                    property,
                    format!("record accessor '{s}': unterminated ['key']"),
                ));
            };
            parts.push(inner[..end].to_string());
            tail = &inner[end + 2..];
        }
        Ok(FieldPath(parts))
    }
}

/// Fields named by the user for a record shape the filter does not know.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldOverrides {
    pub event_code: Option<FieldPath>,
    pub channel: Option<FieldPath>,
    pub computer: Option<FieldPath>,
    pub user: Option<FieldPath>,
    pub message: Option<FieldPath>,
    pub script_block: Option<FieldPath>,
    pub time: Option<FieldPath>,
}

impl FieldOverrides {
    pub fn is_empty(&self) -> bool {
        self.iter().all(|(_, p)| p.is_none())
    }

    pub fn iter(&self) -> impl Iterator<Item = (FieldRole, Option<&FieldPath>)> {
        [
            (FieldRole::EventCode, self.event_code.as_ref()),
            (FieldRole::Channel, self.channel.as_ref()),
            (FieldRole::Computer, self.computer.as_ref()),
            (FieldRole::User, self.user.as_ref()),
            (FieldRole::Message, self.message.as_ref()),
            (FieldRole::ScriptBlock, self.script_block.as_ref()),
            (FieldRole::Time, self.time.as_ref()),
        ]
        .into_iter()
    }
}

/// What a field means to the analytic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldRole {
    EventCode,
    Channel,
    Computer,
    User,
    Message,
    ScriptBlock,
    Time,
}

/// Settings of the live aggregate.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateSettings {
    pub mode: AggregateMode,
    pub tag: String,
    pub flush_interval_ms: u64,
    pub max_keys: usize,
    pub max_message_bytes: usize,
    pub state_file: Option<String>,
}

impl Default for AggregateSettings {
    fn default() -> Self {
        AggregateSettings {
            mode: AggregateMode::Tumbling,
            tag: "pssession.aggregate".into(),
            flush_interval_ms: 60_000,
            max_keys: 10_000,
            max_message_bytes: 16 << 20,
            state_file: None,
        }
    }
}

/// Settings of the emitter input the filter creates for rows and alert copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmitterSettings {
    /// None: `emitter_for_<filter name>`.
    pub name: Option<String>,
    pub mem_buf_limit: String,
    pub storage_type: String,
}

impl Default for EmitterSettings {
    fn default() -> Self {
        EmitterSettings {
            name: None,
            mem_buf_limit: "10M".into(),
            storage_type: "memory".into(),
        }
    }
}

/// Settings of script-block reassembly.
#[derive(Debug, Clone, PartialEq)]
pub struct ReassemblySettings {
    pub timeout_secs: f64,
    pub max_bytes: usize,
    pub max_blocks: usize,
}

impl Default for ReassemblySettings {
    fn default() -> Self {
        ReassemblySettings {
            timeout_secs: 30.0,
            max_bytes: 32 << 20,
            max_blocks: 1000,
        }
    }
}

/// A validated configuration of one filter instance.
#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    pub schema: Schema,
    pub exclude_user: Vec<Regex>,
    pub exclude_computer: Vec<Regex>,
    pub risk_score: i64,
    pub namespace: String,
    pub fields: FieldOverrides,
    /// None when `aggregate off`.
    pub aggregate: Option<AggregateSettings>,
    pub alert_tag: Option<String>,
    pub emitter: EmitterSettings,
    /// None when `reassemble off`.
    pub reassembly: Option<ReassemblySettings>,
    /// mode extended: flag local sessions (with `local_risk_score`) instead of ignoring them.
    pub flag_local_sessions: bool,
    pub local_risk_score: i64,
    /// mode extended: risk score per transport name.
    pub transport_risk: Vec<(String, i64)>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mode: Mode::Exact,
            schema: Schema::Ecs,
            exclude_user: Vec::new(),
            exclude_computer: Vec::new(),
            risk_score: super::analytic::RISK_SCORE,
            namespace: "pssession".to_string(),
            fields: FieldOverrides::default(),
            aggregate: Some(AggregateSettings::default()),
            alert_tag: None,
            emitter: EmitterSettings::default(),
            reassembly: None,
            flag_local_sessions: false,
            local_risk_score: 10,
            transport_risk: Vec::new(),
        }
    }
}

/// Longest value accepted for any property (a guard against pasted garbage).
pub const MAX_VALUE_LEN: usize = 4096;
/// Compiled size limit of one exclusion regex.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

impl Config {
    /// Builds a configuration from the property values given for each name (several for a
    /// repeatable property, none when unset). Unknown names are Fluent Bit's to reject.
    pub fn from_properties<F>(values: F) -> Result<Config, ConfigError>
    where
        F: Fn(&str) -> Vec<String>,
    {
        let mut cfg = Config::default();
        for spec in PROPERTIES {
            let vals = values(spec.name);
            if vals.len() > 1 && !spec.multiple {
                return Err(error(
                    spec.name,
                    format!("is set {} times; it takes one value", vals.len()),
                ));
            }
            for v in &vals {
                if v.trim().is_empty() {
                    return Err(error(spec.name, "empty value"));
                }
                if v.len() > MAX_VALUE_LEN {
                    return Err(error(
                        spec.name,
                        format!(
                            "value is {} bytes long; at most {MAX_VALUE_LEN} are accepted",
                            v.len()
                        ),
                    ));
                }
            }
            match spec.apply {
                Apply::One(set) => {
                    if let Some(v) = vals.first() {
                        set(&mut cfg, spec.name, v.trim())?;
                    }
                }
                Apply::All(set) => set(&mut cfg, spec.name, &vals)?,
                Apply::Maybe(set) => set(&mut cfg, spec.name, vals.first().map(|v| v.trim()))?,
            }
        }
        Ok(cfg)
    }
}

// Each property's parser, declared with its spec in PROPERTIES (called in that order,
// so a default may depend on a property declared before it).

fn set_mode(cfg: &mut Config, name: &'static str, v: &str) -> Result<(), ConfigError> {
    cfg.mode = match v.to_ascii_lowercase().as_str() {
        "exact" => Mode::Exact,
        "extended" => Mode::Extended,
        _ => {
            return Err(error(
                name,
                format!("unknown mode '{v}' (valid: exact, extended)"),
            ))
        }
    };
    Ok(())
}

fn set_schema(cfg: &mut Config, name: &'static str, v: &str) -> Result<(), ConfigError> {
    cfg.schema = match v.to_ascii_lowercase().as_str() {
        "ecs" => Schema::Ecs,
        "splunk" => Schema::Splunk,
        _ => {
            return Err(error(
                name,
                format!("unknown schema '{v}' (valid: ecs, splunk)"),
            ))
        }
    };
    Ok(())
}

fn set_risk_score(cfg: &mut Config, name: &'static str, v: &str) -> Result<(), ConfigError> {
    cfg.risk_score = parse_int(name, v, 0, 1000)?;
    Ok(())
}

fn set_namespace(cfg: &mut Config, name: &'static str, v: &str) -> Result<(), ConfigError> {
    if v.len() > 64 || v.chars().any(|c| c.is_control()) {
        return Err(error(
            name,
            "must be 1 to 64 characters with no control characters",
        ));
    }
    cfg.namespace = v.to_string();
    Ok(())
}

fn set_aggregate(cfg: &mut Config, name: &'static str, v: &str) -> Result<(), ConfigError> {
    if !parse_bool(name, v)? {
        cfg.aggregate = None;
    };
    Ok(())
}

fn set_tag(cfg: &mut Config, name: &'static str, v: &str) -> Result<(), ConfigError> {
    if v.chars().any(|c| c.is_whitespace() || c.is_control()) || v.len() > 256 {
        return Err(error(name, format!("'{v}' is not a valid tag")));
    }
    if name == "alert_tag" {
        cfg.alert_tag = Some(v.to_string());
    } else if let Some(a) = cfg.aggregate.as_mut() {
        a.tag = v.to_string();
    };
    Ok(())
}

fn set_aggregate_mode(cfg: &mut Config, name: &'static str, v: &str) -> Result<(), ConfigError> {
    let mode = match v.to_ascii_lowercase().as_str() {
        "tumbling" => AggregateMode::Tumbling,
        "cumulative" => AggregateMode::Cumulative,
        _ => {
            return Err(error(
                name,
                format!("unknown mode '{v}' (valid: tumbling, cumulative)"),
            ))
        }
    };
    if let Some(a) = cfg.aggregate.as_mut() {
        a.mode = mode;
    };
    Ok(())
}

fn set_flush_interval(cfg: &mut Config, name: &'static str, v: &str) -> Result<(), ConfigError> {
    let ms = parse_duration_ms(name, v)?;
    if let Some(a) = cfg.aggregate.as_mut() {
        a.flush_interval_ms = ms;
    };
    Ok(())
}

fn set_max_keys(cfg: &mut Config, name: &'static str, v: &str) -> Result<(), ConfigError> {
    let n = parse_int(name, v, 1, 1_000_000)? as usize;
    if let Some(a) = cfg.aggregate.as_mut() {
        a.max_keys = n;
    };
    Ok(())
}

fn set_max_message_bytes(cfg: &mut Config, name: &'static str, v: &str) -> Result<(), ConfigError> {
    let n = parse_size(name, v, 1024, 1 << 40)?;
    if let Some(a) = cfg.aggregate.as_mut() {
        a.max_message_bytes = n;
    };
    Ok(())
}

fn set_aggregate_state_file(
    cfg: &mut Config,
    name: &'static str,
    v: &str,
) -> Result<(), ConfigError> {
    check_writable_dir(name, v)?;
    if let Some(a) = cfg.aggregate.as_mut() {
        a.state_file = Some(v.to_string());
    };
    Ok(())
}

fn set_local_sessions(cfg: &mut Config, name: &'static str, v: &str) -> Result<(), ConfigError> {
    cfg.flag_local_sessions = match v.to_ascii_lowercase().as_str() {
        "ignore" => false,
        "flag" => true,
        _ => {
            return Err(error(
                name,
                format!("unknown value '{v}' (valid: ignore, flag)"),
            ))
        }
    };
    Ok(())
}

fn set_local_risk_score(cfg: &mut Config, name: &'static str, v: &str) -> Result<(), ConfigError> {
    cfg.local_risk_score = parse_int(name, v, 0, 1000)?;
    Ok(())
}

fn set_transport_risk(cfg: &mut Config, name: &'static str, v: &str) -> Result<(), ConfigError> {
    for item in v.split(',').map(str::trim).filter(|x| !x.is_empty()) {
        let bad = || {
            error(
                name,
                format!(
                    "'{item}': expected transport=score with a transport of \
                     winrm, winrm-uri, ssh, session and a score from 0 to 1000"
                ),
            )
        };
        let (t, n) = item.split_once('=').ok_or_else(bad)?;
        let t = t.trim().to_ascii_lowercase();
        if !matches!(t.as_str(), "winrm" | "winrm-uri" | "ssh" | "session") {
            return Err(bad());
        }
        let n: i64 = n.trim().parse().map_err(|_| bad())?;
        if !(0..=1000).contains(&n) {
            return Err(bad());
        }
        if cfg.transport_risk.iter().any(|(x, _)| *x == t) {
            return Err(error(name, format!("'{t}' is given twice")));
        }
        cfg.transport_risk.push((t, n));
    }
    if cfg.transport_risk.is_empty() {
        return Err(error(
            name,
            "expected transport=score items separated by commas",
        ));
    };
    Ok(())
}

fn set_reassemble_timeout(
    cfg: &mut Config,
    name: &'static str,
    v: &str,
) -> Result<(), ConfigError> {
    let ms = parse_duration_ms(name, v)?;
    if let Some(r) = cfg.reassembly.as_mut() {
        r.timeout_secs = ms as f64 / 1000.0;
    };
    Ok(())
}

fn set_reassemble_max_bytes(
    cfg: &mut Config,
    name: &'static str,
    v: &str,
) -> Result<(), ConfigError> {
    let n = parse_size(name, v, 1024, 1 << 40)?;
    if let Some(r) = cfg.reassembly.as_mut() {
        r.max_bytes = n;
    };
    Ok(())
}

fn set_reassemble_max_blocks(
    cfg: &mut Config,
    name: &'static str,
    v: &str,
) -> Result<(), ConfigError> {
    let n = parse_int(name, v, 1, 1_000_000)? as usize;
    if let Some(r) = cfg.reassembly.as_mut() {
        r.max_blocks = n;
    };
    Ok(())
}

fn set_emitter_mem_buf_limit(
    cfg: &mut Config,
    name: &'static str,
    v: &str,
) -> Result<(), ConfigError> {
    parse_size(name, v, 1024, 1 << 40)?;
    cfg.emitter.mem_buf_limit = v.to_string();
    Ok(())
}

fn set_emitter_storage_type(
    cfg: &mut Config,
    name: &'static str,
    v: &str,
) -> Result<(), ConfigError> {
    let t = v.to_ascii_lowercase();
    if t != "memory" && t != "filesystem" {
        return Err(error(
            name,
            format!("unknown storage type '{v}' (valid: memory, filesystem)"),
        ));
    }
    cfg.emitter.storage_type = t;
    Ok(())
}

fn set_field_key(cfg: &mut Config, name: &'static str, v: &str) -> Result<(), ConfigError> {
    let path = Some(FieldPath::parse(name, v)?);
    let f = &mut cfg.fields;
    match name {
        "event_code_key" => f.event_code = path,
        "channel_key" => f.channel = path,
        "computer_key" => f.computer = path,
        "user_key" => f.user = path,
        "message_key" => f.message = path,
        "script_block_key" => f.script_block = path,
        "time_key" => f.time = path,
        _ => return Err(error(name, "is not a field key property")),
    };
    Ok(())
}

fn set_exclude_user(
    cfg: &mut Config,
    name: &'static str,
    vals: &[String],
) -> Result<(), ConfigError> {
    cfg.exclude_user = compile_all(name, vals)?;
    Ok(())
}

fn set_exclude_computer(
    cfg: &mut Config,
    name: &'static str,
    vals: &[String],
) -> Result<(), ConfigError> {
    cfg.exclude_computer = compile_all(name, vals)?;
    Ok(())
}

/// On by default in mode extended (declared after `mode`), off in mode exact.
fn set_reassemble(
    cfg: &mut Config,
    name: &'static str,
    v: Option<&str>,
) -> Result<(), ConfigError> {
    cfg.reassembly = match v {
        Some(v) => parse_bool(name, v)?.then(ReassemblySettings::default),
        None => (cfg.mode == Mode::Extended).then(ReassemblySettings::default),
    };
    Ok(())
}

fn set_emitter_name(cfg: &mut Config, _name: &'static str, v: &str) -> Result<(), ConfigError> {
    cfg.emitter.name = Some(v.to_string());
    Ok(())
}

fn compile_all(property: &str, patterns: &[String]) -> Result<Vec<Regex>, ConfigError> {
    patterns
        .iter()
        .map(|p| {
            regex::RegexBuilder::new(p.trim())
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| {
                    let why = e
                        .to_string()
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ");
                    error(
                        property,
                        format!("invalid regular expression '{}': {why}", p.trim()),
                    )
                })
        })
        .collect()
}

/// The state file's folder must exist and be writable now, not only at shutdown.
fn check_writable_dir(property: &str, path: &str) -> Result<(), ConfigError> {
    let p = std::path::Path::new(path);
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let meta = std::fs::metadata(&dir).map_err(|e| {
        error(
            property,
            format!("folder '{}' of '{path}': {e}", dir.display()),
        )
    })?;
    if !meta.is_dir() {
        return Err(error(
            property,
            format!("'{}' is not a folder", dir.display()),
        ));
    }
    if meta.permissions().readonly() || p.is_dir() {
        return Err(error(
            property,
            format!("'{path}' cannot be written (a read-only folder, or a folder itself)"),
        ));
    }
    Ok(())
}

/// Fluent Bit's booleans: on/off, true/false, yes/no, 1/0.
fn parse_bool(property: &str, v: &str) -> Result<bool, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err(error(property, format!("expected on or off, got '{v}'"))),
    }
}

/// Seconds, or a number with an s, m or h suffix; 1 second to 24 hours.
fn parse_duration_ms(property: &str, v: &str) -> Result<u64, ConfigError> {
    let t = v.to_ascii_lowercase();
    let (num, unit) = match t.strip_suffix('h') {
        Some(n) => (n, 3_600_000.0),
        None => match t.strip_suffix('m') {
            Some(n) => (n, 60_000.0),
            None => (t.strip_suffix('s').unwrap_or(&t), 1000.0),
        },
    };
    let bad = || {
        error(
            property,
            format!("expected a duration from 1s to 24h (e.g. 60, 30s, 5m, 1h), got '{v}'"),
        )
    };
    let n: f64 = num.trim().parse().map_err(|_| bad())?;
    let ms = n * unit;
    if !(1000.0..=86_400_000.0).contains(&ms) {
        return Err(bad());
    }
    Ok(ms as u64)
}

/// A size in bytes, with an optional K, M or G suffix (KB/MB/GB too), as Fluent Bit writes.
fn parse_size(property: &str, v: &str, min: usize, max: usize) -> Result<usize, ConfigError> {
    let t = v.to_ascii_uppercase();
    let t = t.strip_suffix('B').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('K') => (&t[..t.len() - 1], 1usize << 10),
        Some('M') => (&t[..t.len() - 1], 1 << 20),
        Some('G') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let bad = || {
        error(
            property,
            format!("expected a size from {min} bytes to {max} bytes (e.g. 64K, 16M), got '{v}'"),
        )
    };
    let n: usize = num.trim().parse().map_err(|_| bad())?;
    let bytes = n.checked_mul(mult).ok_or_else(bad)?;
    if !(min..=max).contains(&bytes) {
        return Err(bad());
    }
    Ok(bytes)
}

fn parse_int(property: &str, v: &str, min: i64, max: i64) -> Result<i64, ConfigError> {
    match v.parse::<i64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(error(
            property,
            format!("expected an integer from {min} to {max}, got '{v}'"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_properties(|name| {
            owned
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
                .collect()
        })
    }

    #[test]
    fn defaults_follow_the_analytic() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.mode, Mode::Exact);
        assert_eq!(c.schema, Schema::Ecs);
        assert_eq!(c.risk_score, 45);
        assert_eq!(c.namespace, "pssession");
        assert!(c.fields.is_empty());
    }

    #[test]
    fn every_property_is_handled() {
        for p in PROPERTIES {
            let v = match p.name {
                "mode" => "extended",
                "schema" => "splunk",
                "risk_score"
                | "max_keys"
                | "flush_interval"
                | "reassemble_max_blocks"
                | "reassemble_timeout" => "10",
                "reassemble" => "on",
                "local_sessions" => "flag",
                "local_risk_score" => "5",
                "transport_risk" => "ssh=60,session=50",
                "reassemble_max_bytes" => "1M",
                "aggregate" => "off",
                "aggregate_mode" => "cumulative",
                "max_message_bytes" | "emitter_mem_buf_limit" => "1M",
                "emitter_storage.type" => "filesystem",
                "aggregate_state_file" => "/tmp/pssession-test.state",
                _ => "x",
            };
            cfg(&[(p.name, v)]).unwrap_or_else(|e| panic!("{}: {e}", p.name));
        }
    }

    #[test]
    fn errors_name_the_property() {
        let e = cfg(&[("schema", "cim")]).unwrap_err();
        assert_eq!(e.property, "schema");
        assert!(e.to_string().contains("unknown schema 'cim'"), "{e}");
        let e = cfg(&[("exclude_user", "a("), ("exclude_user", "ok")]).unwrap_err();
        assert_eq!(e.property, "exclude_user");
        assert!(e.message.contains("invalid regular expression 'a('"));
        for bad in ["-1", "1001", "4x", "99999999999999999999"] {
            let e = cfg(&[("risk_score", bad)]).unwrap_err();
            assert_eq!(e.property, "risk_score", "{bad}");
        }
        assert_eq!(cfg(&[("mode", " ")]).unwrap_err().message, "empty value");
        for (k, v) in [
            ("aggregate", "maybe"),
            ("aggregate_mode", "sliding"),
            ("flush_interval", "0"),
            ("flush_interval", "25h"),
            ("flush_interval", "-5"),
            ("max_keys", "0"),
            ("max_message_bytes", "12Q"),
            ("max_message_bytes", "99999999999G"),
            ("emitter_storage.type", "disk"),
            ("alert_tag", "a b"),
        ] {
            assert_eq!(cfg(&[(k, v)]).unwrap_err().property, k, "{k}={v}");
        }
        let long = "a".repeat(MAX_VALUE_LEN + 1);
        assert!(cfg(&[("namespace", &long)]).is_err());
        let e = cfg(&[("schema", "ecs"), ("schema", "splunk")]).unwrap_err();
        assert!(e.message.contains("set 2 times"));
    }

    #[test]
    fn aggregate_settings() {
        let c = cfg(&[
            ("flush_interval", "5m"),
            ("max_message_bytes", "64K"),
            ("aggregate_mode", "Cumulative"),
            ("alert_tag", "alerts.ps"),
        ])
        .unwrap();
        let a = c.aggregate.unwrap();
        assert_eq!(a.flush_interval_ms, 300_000);
        assert_eq!(a.max_message_bytes, 65_536);
        assert_eq!(a.mode, AggregateMode::Cumulative);
        assert_eq!(c.alert_tag.as_deref(), Some("alerts.ps"));
        assert!(cfg(&[("aggregate", "off")]).unwrap().aggregate.is_none());
        assert_eq!(
            cfg(&[("flush_interval", "90")])
                .unwrap()
                .aggregate
                .unwrap()
                .flush_interval_ms,
            90_000
        );
    }

    #[test]
    fn repeatable_exclusions_compile() {
        let c = cfg(&[
            ("exclude_user", "^CONTOSO\\\\svc_"),
            ("exclude_user", "admin$"),
            ("exclude_computer", "(?i)^jump\\d+"),
        ])
        .unwrap();
        assert_eq!(c.exclude_user.len(), 2);
        assert!(c.exclude_computer[0].is_match("JUMP01.contoso.local"));
    }

    #[test]
    fn record_accessor_paths() {
        assert_eq!(
            FieldPath::parse("k", "$winlog['event_data'][\"ScriptBlockText\"]").unwrap(),
            FieldPath(vec![
                "winlog".into(),
                "event_data".into(),
                "ScriptBlockText".into()
            ])
        );
        assert_eq!(
            FieldPath::parse("k", "event.code").unwrap(),
            FieldPath(vec!["event.code".into()])
        );
        assert!(FieldPath::parse("k", "$a[b]").is_err());
        assert!(FieldPath::parse("k", "$a['b'").is_err());
        assert!(FieldPath::parse("k", "$").is_err());
    }
}
