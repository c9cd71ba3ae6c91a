//! Record shapes -> one event view. Reads the Windows event fields the analytic needs from
//! whichever known shape a record has (Fluent Bit winevtlog, NXLog JSON, Winlogbeat/ECS,
//! Splunk XmlWinEventLog, Splunk flat fields) or from fields the user named, in one pass
//! over the top-level keys, borrowing from the chunk wherever it can.

use crate::config::{FieldOverrides, FieldPath, FieldRole};
use crate::linux;
use crate::msgpack::{array_elements, first_token, map_get, MapEntries, Token};
use crate::script_block::{self, PartInfo};
use crate::timefmt::parse_time_text;
use crate::xml_event::{self, XmlEvent};
use std::borrow::Cow;

/// Text borrowed from the record where possible. Not necessarily UTF-8.
pub type Text<'a> = Cow<'a, [u8]>;

/// Which known shape a record was read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Fluent Bit's winevtlog input (EventID, Channel, Computer, StringInserts, ...).
    Winevtlog,
    /// NXLog JSON (EventID, Hostname, AccountName, ScriptBlockText, ...).
    Nxlog,
    /// Winlogbeat / Elastic Common Schema (winlog.*, powershell.*, host.name).
    Winlogbeat,
    /// Splunk XmlWinEventLog: a whole `<Event>` document in one string field.
    XmlWinEventLog,
    /// Splunk flat fields (EventCode, Message, ComputerName, User, source).
    SplunkFlat,
    /// PowerShell on Linux, from Fluent Bit's `syslog` input or rfc3164/rfc5424 parsers
    /// (`host`, `ident`, `pid`, `message`).
    Syslog,
    /// PowerShell on Linux, a whole syslog line in `log` or `message` (tail, no parser).
    SyslogLine,
    /// PowerShell on Linux, from Fluent Bit's `systemd` input (`SYSLOG_IDENTIFIER`,
    /// `_HOSTNAME`, `_UID`, `MESSAGE`).
    Journald,
    /// The fields the user named with the `*_key` properties.
    Custom,
    /// Windows event fields, but of no recognisable collector.
    Other,
}

impl Shape {
    pub fn name(&self) -> &'static str {
        match self {
            Shape::Winevtlog => "winevtlog",
            Shape::Nxlog => "nxlog",
            Shape::Winlogbeat => "winlogbeat",
            Shape::XmlWinEventLog => "xmlwineventlog",
            Shape::SplunkFlat => "splunk",
            Shape::Syslog => "syslog",
            Shape::SyslogLine => "syslog-line",
            Shape::Journald => "journald",
            Shape::Custom => "custom",
            Shape::Other => "other",
        }
    }
}

/// Where the event time came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventTime {
    pub secs: f64,
    /// The field it was read from.
    pub field: &'static str,
}

/// Everything the analytic looks at in one event, whatever its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct EventView<'a> {
    pub shape: Shape,
    pub event_code: Option<i64>,
    pub channel: Option<Text<'a>>,
    pub computer: Option<Text<'a>>,
    pub user: Option<Text<'a>>,
    /// The rendered message ("Creating Scriptblock text (n of m): ...").
    pub message: Option<Text<'a>>,
    pub script_block_text: Option<Text<'a>>,
    /// The record's own time, when it carries a parseable one.
    pub time: Option<EventTime>,
    /// Its place in a script block split over several events, when known.
    pub part: Option<PartInfo>,
}

impl<'a> EventView<'a> {
    /// This part's own script text: ScriptBlockText, else the body of the rendered message.
    pub fn part_text(&self) -> Option<&[u8]> {
        self.script_block_text.as_deref().or_else(|| {
            let m = self.message.as_deref()?;
            Some(script_block::parse_rendered(m).map_or(m, |r| r.body))
        })
    }

    /// The text the analytic searches: the rendered Message, else ScriptBlockText.
    pub fn script_text(&self) -> Option<&[u8]> {
        self.message
            .as_deref()
            .or(self.script_block_text.as_deref())
    }
}

/// Values of the top-level keys the readers know, found in one pass.
#[derive(Default, Debug)]
struct Slots<'a> {
    event_id: Option<&'a [u8]>,
    event_code: Option<&'a [u8]>,
    channel: Option<&'a [u8]>,
    log_name: Option<&'a [u8]>,
    source: Option<&'a [u8]>,
    computer: Option<&'a [u8]>,
    hostname: Option<&'a [u8]>,
    computer_name: Option<&'a [u8]>,
    user_id: Option<&'a [u8]>,
    account_name: Option<&'a [u8]>,
    domain: Option<&'a [u8]>,
    user: Option<&'a [u8]>,
    message_upper: Option<&'a [u8]>,
    message_lower: Option<&'a [u8]>,
    log: Option<&'a [u8]>,
    raw: Option<&'a [u8]>,
    script_block_text: Option<&'a [u8]>,
    string_inserts: Option<&'a [u8]>,
    time_created: Option<&'a [u8]>,
    event_time: Option<&'a [u8]>,
    at_timestamp: Option<&'a [u8]>,
    splunk_time: Option<&'a [u8]>,
    source_module_type: bool,
    message_number: Option<&'a [u8]>,
    message_total: Option<&'a [u8]>,
    script_block_id: Option<&'a [u8]>,
    ident: Option<&'a [u8]>,
    syslog_identifier: Option<&'a [u8]>,
    journal_hostname: Option<&'a [u8]>,
    journal_uid: Option<&'a [u8]>,
    journal_message: Option<&'a [u8]>,
    winlog: Option<&'a [u8]>,
    powershell: Option<&'a [u8]>,
    host: Option<&'a [u8]>,
    /// Values of the user-named fields' first keys, by role.
    custom: [Option<&'a [u8]>; 7],
}

fn set<'a>(slot: &mut Option<&'a [u8]>, v: &'a [u8]) {
    if slot.is_none() {
        *slot = Some(v);
    }
}

impl<'a> Slots<'a> {
    /// Keeps `v` as the value of a scanned key (the first occurrence wins).
    fn set_scanned(&mut self, name: &[u8], v: &'a [u8]) {
        let slot = match name {
            b"EventID" => &mut self.event_id,
            b"EventCode" => &mut self.event_code,
            b"Channel" => &mut self.channel,
            b"LogName" => &mut self.log_name,
            b"source" => &mut self.source,
            b"Computer" => &mut self.computer,
            b"Hostname" => &mut self.hostname,
            b"ComputerName" => &mut self.computer_name,
            b"UserID" => &mut self.user_id,
            b"AccountName" => &mut self.account_name,
            b"Domain" => &mut self.domain,
            b"User" => &mut self.user,
            b"Message" => &mut self.message_upper,
            b"message" => &mut self.message_lower,
            b"log" => &mut self.log,
            b"_raw" => &mut self.raw,
            b"ScriptBlockText" => &mut self.script_block_text,
            b"StringInserts" => &mut self.string_inserts,
            b"TimeCreated" => &mut self.time_created,
            b"EventTime" => &mut self.event_time,
            b"@timestamp" => &mut self.at_timestamp,
            b"_time" => &mut self.splunk_time,
            b"SourceModuleType" => {
                self.source_module_type = true;
                return;
            }
            b"MessageNumber" => &mut self.message_number,
            b"MessageTotal" => &mut self.message_total,
            b"ScriptBlockId" => &mut self.script_block_id,
            b"ident" => &mut self.ident,
            b"SYSLOG_IDENTIFIER" => &mut self.syslog_identifier,
            b"_HOSTNAME" => &mut self.journal_hostname,
            b"_UID" => &mut self.journal_uid,
            b"MESSAGE" => &mut self.journal_message,
            b"winlog" => &mut self.winlog,
            b"powershell" => &mut self.powershell,
            b"host" => &mut self.host,
            _ => return,
        };
        set(slot, v);
    }

    /// Keeps `v` for every role whose user-named field starts with the key `name`.
    fn set_custom(&mut self, overrides: &FieldOverrides, name: &[u8], v: &'a [u8]) {
        for (role, path) in overrides.iter() {
            if path.is_some_and(|p| p.0[0].as_bytes() == name) {
                set(&mut self.custom[role_index(role)], v);
            }
        }
    }
}

fn role_index(role: FieldRole) -> usize {
    match role {
        FieldRole::EventCode => 0,
        FieldRole::Channel => 1,
        FieldRole::Computer => 2,
        FieldRole::User => 3,
        FieldRole::Message => 4,
        FieldRole::ScriptBlock => 5,
        FieldRole::Time => 6,
    }
}

/// A body scanned once; the view is resolved from it on demand, so a record whose event id
/// rules it out costs only the scan.
pub struct Scan<'a, 'c> {
    slots: Slots<'a>,
    overrides: &'c FieldOverrides,
    xml: Option<Option<XmlEvent>>,
    linux: Option<Option<LinuxEvent<'a>>>,
}

/// A PowerShell event logged on Linux, read from one of the Linux shapes.
#[derive(Debug, Clone)]
struct LinuxEvent<'a> {
    shape: Shape,
    event_code: Option<i64>,
    computer: Option<Text<'a>>,
    user: Option<Text<'a>>,
    text: Text<'a>,
    time: Option<EventTime>,
}

/// The keys [`Scan::measured`] reads (the arms of `Slots::set_scanned`, in the same order).
const SCANNED: [&[u8]; 34] = [
    b"EventID",
    b"EventCode",
    b"Channel",
    b"LogName",
    b"source",
    b"Computer",
    b"Hostname",
    b"ComputerName",
    b"UserID",
    b"AccountName",
    b"Domain",
    b"User",
    b"Message",
    b"message",
    b"log",
    b"_raw",
    b"ScriptBlockText",
    b"StringInserts",
    b"TimeCreated",
    b"EventTime",
    b"@timestamp",
    b"_time",
    b"SourceModuleType",
    b"MessageNumber",
    b"MessageTotal",
    b"ScriptBlockId",
    b"ident",
    b"SYSLOG_IDENTIFIER",
    b"_HOSTNAME",
    b"_UID",
    b"MESSAGE",
    b"winlog",
    b"powershell",
    b"host",
];

/// For each key length below 32, the first bytes of [`SCANNED`] keys of that length, as a
/// 256-bit set (built at compile time).
const SCANNED_FIRST_BYTES: [[u64; 4]; 32] = {
    let mut t = [[0u64; 4]; 32];
    let mut i = 0;
    while i < SCANNED.len() {
        let k = SCANNED[i];
        let b = k[0] as usize;
        t[k.len()][b / 64] |= 1 << (b % 64);
        i += 1;
    }
    t
};

/// Whether the scan may want `name`: false, in a few instructions, for most keys of a
/// record (their length and first byte match no key the scan reads); the match then
/// compares whole names.
#[inline]
fn is_scanned(name: &[u8]) -> bool {
    match (name.first(), SCANNED_FIRST_BYTES.get(name.len())) {
        (Some(&b), Some(set)) => set[b as usize / 64] & (1 << (b % 64)) != 0,
        _ => false,
    }
}

impl<'a, 'c> Scan<'a, 'c> {
    /// None when the body is not a map.
    pub fn new(body: &'a [u8], overrides: &'c FieldOverrides) -> Option<Self> {
        Self::measured(body, overrides).map(|(scan, _)| scan)
    }

    /// Scans the map at the start of `buf` (which may go on past it) and returns the scan
    /// with the map's length: the record walk and the field scan in one pass. None when
    /// `buf` does not start with a well-formed map.
    pub fn measured(buf: &'a [u8], overrides: &'c FieldOverrides) -> Option<(Self, usize)> {
        let mut entries = MapEntries::new(buf)?;
        let mut s = Slots::default();
        let has_overrides = !overrides.is_empty();
        loop {
            // without overrides only the scanned names matter: the rest are stepped over
            let next = if has_overrides {
                entries.next()
            } else {
                entries.next_wanted(is_scanned)
            };
            let Some(e) = next else { break };
            let Some(name) = e.name else { continue };
            if has_overrides {
                s.set_custom(overrides, name, e.value);
            }
            if is_scanned(name) {
                s.set_scanned(name, e.value); // most keys of a record: one look at a table
            }
        }
        if entries.failed() {
            return None;
        }
        let len = entries.position();
        let scan = Scan {
            slots: s,
            overrides,
            xml: None,
            linux: None,
        };
        Some((scan, len))
    }

    /// The length of the map at the start of `buf` when its first `EventID` names another
    /// event than 4104 and no field override applies: all the filter needs of such a record
    /// (its event code is that one, whatever else the map holds). Only the keys are looked
    /// at until then, and nothing is kept. None for every other map, and for bytes that are
    /// not a well-formed map (the full scan decides what those are).
    pub fn other_event_length(buf: &[u8], overrides: &FieldOverrides) -> Option<usize> {
        if !overrides.is_empty() {
            return None;
        }
        let mut entries = MapEntries::new(buf)?;
        loop {
            let e = entries.next_wanted(|name| name == b"EventID")?;
            if e.name == Some(b"EventID") {
                event_code_of(e.value).filter(|&c| c != crate::analytic::EVENT_CODE)?;
                entries.skip_rest();
                return (!entries.failed()).then(|| entries.position());
            }
        }
    }

    fn custom(&self, role: FieldRole) -> Option<&'a [u8]> {
        let path: &FieldPath = match role {
            FieldRole::EventCode => self.overrides.event_code.as_ref(),
            FieldRole::Channel => self.overrides.channel.as_ref(),
            FieldRole::Computer => self.overrides.computer.as_ref(),
            FieldRole::User => self.overrides.user.as_ref(),
            FieldRole::Message => self.overrides.message.as_ref(),
            FieldRole::ScriptBlock => self.overrides.script_block.as_ref(),
            FieldRole::Time => self.overrides.time.as_ref(),
        }?;
        let mut v = self.slots.custom[role_index(role)]?;
        for key in &path.0[1..] {
            v = map_get(v, key.as_bytes())?;
        }
        Some(v)
    }

    fn winlog(&self, path: &[&[u8]]) -> Option<&'a [u8]> {
        nested(self.slots.winlog?, path)
    }

    /// The XML document of an XmlWinEventLog record, parsed once, if the record carries one.
    fn xml(&mut self) -> Option<&XmlEvent> {
        if self.xml.is_none() {
            let s = &self.slots;
            let doc = [s.log, s.message_lower, s.message_upper, s.raw]
                .into_iter()
                .flatten()
                .filter_map(as_bytes)
                .find(|b| xml_event::looks_like_event_xml(b));
            let parsed = doc.and_then(|b| {
                // Cheap pre-check: a 4104 document contains the id as text.
                memchr::memmem::find(b, b"4104")?;
                xml_event::parse(&String::from_utf8_lossy(b))
            });
            self.xml = Some(parsed);
        }
        self.xml.as_ref().and_then(|x| x.as_ref())
    }

    /// PowerShell's Linux log, read once, if the record is one: journald fields, syslog
    /// fields, or a whole syslog line. Records of any other program are rejected by their
    /// program name before the message is looked at.
    fn linux(&mut self) -> Option<&LinuxEvent<'a>> {
        if self.linux.is_none() {
            self.linux = Some(self.read_linux());
        }
        self.linux.as_ref().and_then(|l| l.as_ref())
    }

    fn read_linux(&self) -> Option<LinuxEvent<'a>> {
        let s = &self.slots;
        if let Some(id) = s.syslog_identifier.and_then(as_bytes) {
            if !linux::is_powershell_ident(id) {
                return None;
            }
            let m = linux::parse_ps_message(s.journal_message.and_then(as_bytes)?)?;
            return Some(LinuxEvent {
                shape: Shape::Journald,
                event_code: m.event_code,
                computer: s.journal_hostname.and_then(text_of),
                user: s.journal_uid.and_then(text_or_number),
                text: m.text,
                time: None,
            });
        }
        if let Some(ident) = s.ident.and_then(as_bytes) {
            if !linux::is_powershell_ident(ident) {
                return None;
            }
            let m = linux::parse_ps_message(s.message_lower.and_then(as_bytes)?)?;
            return Some(LinuxEvent {
                shape: Shape::Syslog,
                event_code: m.event_code,
                computer: s.host.and_then(text_of),
                user: None,
                text: m.text,
                time: None,
            });
        }
        let line = [s.log, s.message_lower]
            .into_iter()
            .flatten()
            .filter_map(as_bytes)
            .find(|l| linux::may_be_powershell_line(l))?;
        let l = linux::parse_syslog_line(line)?;
        if !linux::is_powershell_ident(l.ident) {
            return None;
        }
        let m = linux::parse_ps_message(l.message)?;
        let time = l
            .iso_time
            .and_then(|t| parse_time_text(std::str::from_utf8(t).ok()?))
            .map(|secs| EventTime {
                secs,
                field: "syslog timestamp",
            });
        Some(LinuxEvent {
            shape: Shape::SyslogLine,
            event_code: m.event_code,
            computer: (!l.host.is_empty()).then_some(Cow::Borrowed(l.host)),
            user: None,
            text: m.text,
            time,
        })
    }

    /// Whether the record carries a Windows event id field (then the Linux readers are not
    /// consulted).
    fn has_windows_id(&self) -> bool {
        let s = &self.slots;
        s.event_id.is_some() || s.event_code.is_some() || s.winlog.is_some()
    }

    /// The event id, read from the first field that has one.
    pub fn event_code(&mut self) -> Option<i64> {
        if let Some(v) = self.custom(FieldRole::EventCode) {
            return event_code_of(v);
        }
        let s = &self.slots;
        if let Some(v) = s.event_id.or(s.event_code) {
            return event_code_of(v);
        }
        if let Some(v) = self.winlog(&[b"event_id"]) {
            return event_code_of(v);
        }
        if !self.has_windows_id() {
            if let Some(l) = self.linux() {
                return l.event_code;
            }
        }
        let x = self.xml()?;
        x.event_id
            .as_deref()
            .and_then(|t| parse_code_text(t.as_bytes()))
    }

    /// Resolves the whole view.
    pub fn view(mut self) -> EventView<'a> {
        let event_code = self.event_code();
        if self.custom(FieldRole::EventCode).is_none() && !self.has_windows_id() {
            if let Some(l) = self.linux().cloned() {
                return self.linux_view(l);
            }
        }
        let xml = self.xml().cloned();
        let xml = xml.as_ref();
        let message = self.message_of(xml);
        let part = self.part_of(xml, message.as_deref());
        EventView {
            shape: self.shape_of(xml),
            event_code,
            channel: self.channel_of(xml),
            computer: self.computer_of(xml),
            user: self.user_of(xml),
            message,
            script_block_text: self.script_block_text_of(xml),
            time: self.time_of_event(xml),
            part,
        }
    }

    /// The view of a PowerShell line of a Linux log (syslog or journald).
    fn linux_view(&self, l: LinuxEvent<'a>) -> EventView<'a> {
        let part = part_from(None, None, None, Some(&l.text));
        EventView {
            shape: l.shape,
            event_code: l.event_code,
            channel: None,
            computer: self
                .custom(FieldRole::Computer)
                .and_then(text_of)
                .or(l.computer),
            user: self.custom(FieldRole::User).and_then(text_of).or(l.user),
            message: Some(l.text),
            script_block_text: None,
            time: match self.custom(FieldRole::Time) {
                Some(v) => time_of(v, "time_key"),
                None => l.time,
            },
            part,
        }
    }

    /// Which shape the record has, by the fields that mark each.
    fn shape_of(&self, xml: Option<&XmlEvent>) -> Shape {
        let s = &self.slots;
        if self.custom(FieldRole::EventCode).is_some() {
            Shape::Custom
        } else if s.winlog.is_some() && self.winlog(&[b"event_id"]).is_some() {
            Shape::Winlogbeat
        } else if s.string_inserts.is_some() || s.computer.is_some() {
            Shape::Winevtlog
        } else if s.hostname.is_some() || s.source_module_type || s.account_name.is_some() {
            Shape::Nxlog
        } else if s.event_code.is_some() {
            Shape::SplunkFlat
        } else if xml.is_some() {
            Shape::XmlWinEventLog
        } else {
            Shape::Other
        }
    }

    fn channel_of(&self, xml: Option<&XmlEvent>) -> Option<Text<'a>> {
        let s = &self.slots;
        self.custom(FieldRole::Channel)
            .and_then(text_of)
            .or_else(|| s.channel.and_then(text_of))
            .or_else(|| s.log_name.and_then(text_of))
            .or_else(|| s.source.and_then(channel_from_source))
            .or_else(|| self.winlog(&[b"channel"]).and_then(text_of))
            .or_else(|| owned(xml.and_then(|x| x.channel.clone())))
    }

    fn computer_of(&self, xml: Option<&XmlEvent>) -> Option<Text<'a>> {
        let s = &self.slots;
        let host_name = s
            .host
            .filter(|h| is_map(h))
            .and_then(|h| map_get(h, b"name"));
        self.custom(FieldRole::Computer)
            .and_then(text_of)
            .or_else(|| s.computer.and_then(text_of))
            .or_else(|| s.hostname.and_then(text_of))
            .or_else(|| s.computer_name.and_then(text_of))
            .or_else(|| self.winlog(&[b"computer_name"]).and_then(text_of))
            .or_else(|| host_name.and_then(text_of))
            .or_else(|| owned(xml.and_then(|x| x.computer.clone())))
    }

    fn user_of(&self, xml: Option<&XmlEvent>) -> Option<Text<'a>> {
        let s = &self.slots;
        self.custom(FieldRole::User)
            .and_then(text_of)
            .or_else(|| qualified(s.domain, s.account_name))
            .or_else(|| s.user.and_then(text_of))
            .or_else(|| {
                let wl_user = self.winlog(&[b"user"])?;
                qualified(map_get(wl_user, b"domain"), map_get(wl_user, b"name"))
                    .or_else(|| map_get(wl_user, b"identifier").and_then(text_of))
            })
            .or_else(|| s.user_id.and_then(text_of))
            .or_else(|| owned(xml.and_then(|x| x.user_id.clone())))
    }

    fn message_of(&self, xml: Option<&XmlEvent>) -> Option<Text<'a>> {
        let s = &self.slots;
        self.custom(FieldRole::Message)
            .and_then(text_of)
            .or_else(|| s.message_upper.and_then(non_xml_text))
            .or_else(|| s.message_lower.and_then(non_xml_text))
            .or_else(|| owned(xml.and_then(|x| x.message.clone())))
    }

    fn script_block_text_of(&self, xml: Option<&XmlEvent>) -> Option<Text<'a>> {
        let s = &self.slots;
        self.custom(FieldRole::ScriptBlock)
            .and_then(text_of)
            .or_else(|| s.script_block_text.and_then(text_of))
            .or_else(|| {
                self.winlog(&[b"event_data", b"ScriptBlockText"])
                    .and_then(text_of)
            })
            .or_else(|| nested(s.powershell?, &[b"file", b"script_block_text"]).and_then(text_of))
            .or_else(|| {
                // winevtlog: StringInserts = [MessageNumber, MessageTotal, ScriptBlockText, ...]
                array_elements(s.string_inserts?)?.nth(2).and_then(text_of)
            })
            .or_else(|| owned(xml.and_then(|x| x.script_block_text.clone())))
    }

    /// The record's own time: `time_key`, else the first of the shapes' time fields.
    fn time_of_event(&self, xml: Option<&XmlEvent>) -> Option<EventTime> {
        let s = &self.slots;
        match self.custom(FieldRole::Time) {
            Some(v) => time_of(v, "time_key"),
            None => s
                .time_created
                .and_then(|v| time_of(v, "TimeCreated"))
                .or_else(|| {
                    let t = xml?.system_time.as_deref()?;
                    Some(EventTime {
                        secs: parse_time_text(t)?,
                        field: "SystemTime",
                    })
                })
                .or_else(|| s.event_time.and_then(|v| time_of(v, "EventTime")))
                .or_else(|| s.at_timestamp.and_then(|v| time_of(v, "@timestamp")))
                .or_else(|| s.splunk_time.and_then(|v| time_of(v, "_time"))),
        }
    }

    /// Where the event sits in its script block: from the fields of its shape, completed
    /// from the rendered message.
    fn part_of(&self, xml: Option<&XmlEvent>, message: Option<&[u8]>) -> Option<PartInfo> {
        let s = &self.slots;
        let ed = self.winlog(&[b"event_data"]);
        let inserts: Vec<&[u8]> = s
            .string_inserts
            .and_then(array_elements)
            .map(|it| it.take(4).collect())
            .unwrap_or_default();
        let xml_text = |f: fn(&XmlEvent) -> &Option<String>| xml.and_then(|x| f(x).clone());
        let number = s
            .message_number
            .and_then(u32_of)
            .or_else(|| {
                ed.and_then(|e| map_get(e, b"MessageNumber"))
                    .and_then(u32_of)
            })
            .or_else(|| inserts.first().and_then(|v| u32_of(v)))
            .or_else(|| xml_text(|x| &x.message_number)?.trim().parse().ok());
        let total = s
            .message_total
            .and_then(u32_of)
            .or_else(|| {
                ed.and_then(|e| map_get(e, b"MessageTotal"))
                    .and_then(u32_of)
            })
            .or_else(|| inserts.get(1).and_then(|v| u32_of(v)))
            .or_else(|| xml_text(|x| &x.message_total)?.trim().parse().ok());
        let block_id = s
            .script_block_id
            .and_then(text_of)
            .or_else(|| {
                ed.and_then(|e| map_get(e, b"ScriptBlockId"))
                    .and_then(text_of)
            })
            .or_else(|| nested(s.powershell?, &[b"file", b"script_block_id"]).and_then(text_of))
            .or_else(|| inserts.get(3).and_then(|v| text_of(v)))
            .map(|t| String::from_utf8_lossy(&t).into_owned())
            .or_else(|| xml_text(|x| &x.script_block_id));
        part_from(number, total, block_id, message)
    }
}

/// Number, total and block id from the fields, completed from the rendered message.
fn part_from(
    number: Option<u32>,
    total: Option<u32>,
    block_id: Option<String>,
    message: Option<&[u8]>,
) -> Option<PartInfo> {
    let r = message.and_then(script_block::parse_rendered);
    let number = number.or(r.as_ref().map(|r| r.number))?;
    let total = total.or(r.as_ref().map(|r| r.total))?;
    let block_id = block_id.filter(|b| !b.trim().is_empty()).or_else(|| {
        r.and_then(|r| r.block_id)
            .map(|b| String::from_utf8_lossy(b).into_owned())
    })?;
    (number >= 1 && total >= 1 && number <= total).then_some(PartInfo {
        number,
        total,
        block_id: block_id.trim().to_string(),
    })
}

/// A small positive integer from an integer or a string.
fn u32_of(v: &[u8]) -> Option<u32> {
    match first_token(v)? {
        Token::Int(i) => u32::try_from(i).ok(),
        Token::Str(s) | Token::Bin(s) => std::str::from_utf8(s).ok()?.trim().parse().ok(),
        _ => None,
    }
}

fn nested<'a>(mut v: &'a [u8], path: &[&[u8]]) -> Option<&'a [u8]> {
    for key in path {
        v = map_get(v, key)?;
    }
    Some(v)
}

fn is_map(v: &[u8]) -> bool {
    matches!(first_token(v), Some(Token::Map(_)))
}

fn as_bytes(v: &[u8]) -> Option<&[u8]> {
    match first_token(v)? {
        Token::Str(s) | Token::Bin(s) => Some(s),
        _ => None,
    }
}

/// A string or binary value as text; None for any other type and for empty text.
fn text_of(v: &[u8]) -> Option<Text<'_>> {
    as_bytes(v)
        .filter(|b| !b.iter().all(u8::is_ascii_whitespace))
        .map(Cow::Borrowed)
}

/// A message field's text, unless it holds an XML event (that is a document, not a message).
/// Text, or an integer written as text (journald's `_UID` may be either).
fn text_or_number(v: &[u8]) -> Option<Text<'_>> {
    match first_token(v)? {
        Token::Int(i) => Some(Cow::Owned(i.to_string().into_bytes())),
        _ => text_of(v),
    }
}

fn non_xml_text(v: &[u8]) -> Option<Text<'_>> {
    text_of(v).filter(|t| !xml_event::looks_like_event_xml(t))
}

fn owned<'a>(s: Option<String>) -> Option<Text<'a>> {
    s.filter(|s| !s.trim().is_empty())
        .map(|s| Cow::Owned(s.into_bytes()))
}

/// `DOMAIN\name` when both are present, else the name.
fn qualified<'a>(domain: Option<&'a [u8]>, name: Option<&'a [u8]>) -> Option<Text<'a>> {
    let name = name.and_then(text_of)?;
    match domain.and_then(text_of) {
        Some(d) => {
            let mut s = d.into_owned();
            s.push(b'\\');
            s.extend_from_slice(&name);
            Some(Cow::Owned(s))
        }
        None => Some(name),
    }
}

/// Splunk's `source` names the channel as `WinEventLog:<channel>` or `XmlWinEventLog:<channel>`.
fn channel_from_source(v: &[u8]) -> Option<Text<'_>> {
    let t = as_bytes(v)?;
    for prefix in [&b"XmlWinEventLog:"[..], b"WinEventLog:"] {
        if t.len() > prefix.len() && t[..prefix.len()].eq_ignore_ascii_case(prefix) {
            return Some(Cow::Borrowed(&t[prefix.len()..]));
        }
    }
    None
}

/// Event id from an integer, a float with no fraction, or a string holding either.
fn event_code_of(v: &[u8]) -> Option<i64> {
    // the usual ids, read straight from their bytes: a positive fixint, uint8, uint16
    match *v {
        [b @ 0x00..=0x7f, ..] => return Some(i64::from(b)),
        [0xcc, b, ..] => return Some(i64::from(b)),
        [0xcd, hi, lo, ..] => return Some(i64::from(u16::from_be_bytes([hi, lo]))),
        _ => {}
    }
    match first_token(v)? {
        Token::Int(i) => Some(i),
        Token::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => Some(f as i64),
        Token::Str(s) | Token::Bin(s) => parse_code_text(s),
        _ => None,
    }
}

fn parse_code_text(s: &[u8]) -> Option<i64> {
    let t = std::str::from_utf8(s).ok()?.trim();
    if let Ok(i) = t.parse::<i64>() {
        return Some(i);
    }
    let f = t.parse::<f64>().ok()?;
    (f.fract() == 0.0 && f.abs() < 1e15).then_some(f as i64)
}

fn time_of(v: &[u8], field: &'static str) -> Option<EventTime> {
    let secs = match first_token(v)? {
        Token::Int(i) if i >= 0 => i as f64,
        Token::Float(f) if f.is_finite() && f >= 0.0 => f,
        Token::Str(s) | Token::Bin(s) => parse_time_text(std::str::from_utf8(s).ok()?)?,
        _ => return None,
    };
    Some(EventTime { secs, field })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(v: &serde_json::Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &crate::chunk_io::json_to_msgpack(v)).unwrap();
        out
    }

    /// The scan measures a map whole whatever follows it, and a map cut short is not one.
    #[test]
    fn the_scan_measures_the_map_and_not_what_follows() {
        let body = encoded(&serde_json::json!({
            "EventTime": "2024-03-05 10:11:12", "EventID": 10,
            "Channel": "Microsoft-Windows-Sysmon/Operational", "EventID2": {"a": [1, 2]},
            "ScriptBlockText": "Enter-PSSession -ComputerName x"
        }));
        let mut tail = body.clone();
        tail.extend_from_slice(b"\x01trailing");
        let none = FieldOverrides::default();
        let (mut scan, len) = Scan::measured(&tail, &none).unwrap();
        assert_eq!(len, body.len());
        assert_eq!(Scan::other_event_length(&tail, &none), Some(body.len()));
        assert_eq!(scan.event_code(), Some(10));
        assert!(scan.slots.channel.is_some() && scan.slots.script_block_text.is_some());
        for cut in 0..body.len() {
            assert!(Scan::measured(&body[..cut], &none).is_none(), "at {cut}");
        }
    }

    /// A map settled by its first `EventID` is measured the same by the short walk and by
    /// the scan, which judges it the same other event; anything else is left to the scan.
    #[test]
    fn other_events_are_measured_by_their_first_event_id() {
        let none = FieldOverrides::default();
        let cases = [
            (
                serde_json::json!({"a": 1, "EventID": 4103, "Channel": "c", "tags": [1, 2]}),
                true,
            ),
            (serde_json::json!({"EventID": "10", "EventID2": 4104}), true),
            (serde_json::json!({"Message": "x", "EventID": 4104}), false),
            (serde_json::json!({"EventID": [4103]}), false),
            (serde_json::json!({"EventCode": 4103}), false),
            (serde_json::json!({"winlog": {"event_id": 4103}}), false),
            (serde_json::json!({"EventID": "four"}), false),
        ];
        for (body, settled) in cases {
            let map = encoded(&body);
            let quick = Scan::other_event_length(&map, &none);
            assert_eq!(quick.is_some(), settled, "{body}");
            if let Some(len) = quick {
                let (mut scan, full) = Scan::measured(&map, &none).unwrap();
                assert_eq!(len, full, "{body}");
                assert!(scan.event_code().is_some_and(|c| c != 4104), "{body}");
            }
            // cut short, it is never settled
            for cut in 0..map.len() {
                assert_eq!(
                    Scan::other_event_length(&map[..cut], &none),
                    None,
                    "{body} at {cut}"
                );
            }
        }
    }

    #[test]
    fn the_quick_key_check_lets_every_scanned_key_through() {
        for k in SCANNED {
            assert!(is_scanned(k), "{}", String::from_utf8_lossy(k));
            let map = encoded(&serde_json::json!({ std::str::from_utf8(k).unwrap(): "x" }));
            let overrides = FieldOverrides::default();
            let (scan, _) = Scan::measured(&map, &overrides).unwrap();
            assert_ne!(
                format!("{:?}", scan.slots),
                format!("{:?}", Slots::default()),
                "{}: the scan's match does not read it",
                String::from_utf8_lossy(k)
            );
        }
        for k in ["Keywords", "ProcessID", "ThreadID", "", "x"] {
            assert!(!is_scanned(k.as_bytes()), "{k}");
        }
    }
    use rmpv::Value;

    fn enc(v: &Value) -> Vec<u8> {
        let mut b = Vec::new();
        rmpv::encode::write_value(&mut b, v).unwrap();
        b
    }

    fn map(pairs: Vec<(&str, Value)>) -> Value {
        Value::Map(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    fn view_of(v: &Value, o: &FieldOverrides) -> EventView<'static> {
        let b = enc(v);
        let b: &'static [u8] = Box::leak(b.into_boxed_slice());
        Scan::new(b, o).unwrap().view()
    }

    #[test]
    fn winevtlog_reads_string_inserts() {
        let v = map(vec![
            ("EventID", 4104.into()),
            ("Channel", "Microsoft-Windows-PowerShell/Operational".into()),
            ("Computer", "ws01".into()),
            ("UserID", "S-1-5-21-1".into()),
            (
                "StringInserts",
                Value::Array(vec![
                    "1".into(),
                    "1".into(),
                    "Enter-PSSession -ComputerName x".into(),
                    "id".into(),
                    "".into(),
                ]),
            ),
            ("TimeCreated", "2024-03-05 10:11:12 +0000".into()),
        ]);
        let view = view_of(&v, &FieldOverrides::default());
        assert_eq!(view.shape, Shape::Winevtlog);
        assert_eq!(view.event_code, Some(4104));
        assert_eq!(view.computer.as_deref(), Some(&b"ws01"[..]));
        assert_eq!(view.user.as_deref(), Some(&b"S-1-5-21-1"[..]));
        assert_eq!(
            view.script_text(),
            Some(&b"Enter-PSSession -ComputerName x"[..])
        );
        assert_eq!(
            view.time,
            Some(EventTime {
                secs: 1_709_633_472.0,
                field: "TimeCreated"
            })
        );
    }

    #[test]
    fn winlogbeat_nested_fields() {
        let v = map(vec![
            (
                "winlog",
                map(vec![
                    ("event_id", "4104".into()),
                    ("channel", "Microsoft-Windows-PowerShell/Operational".into()),
                    ("computer_name", "ws02.contoso.local".into()),
                    (
                        "user",
                        map(vec![("name", "alice".into()), ("domain", "CONTOSO".into())]),
                    ),
                    (
                        "event_data",
                        map(vec![("ScriptBlockText", "Enter-PSSession".into())]),
                    ),
                ]),
            ),
            ("host", map(vec![("name", "other".into())])),
            ("@timestamp", "2024-03-05T10:11:12.500Z".into()),
        ]);
        let view = view_of(&v, &FieldOverrides::default());
        assert_eq!(view.shape, Shape::Winlogbeat);
        assert_eq!(view.event_code, Some(4104));
        assert_eq!(view.computer.as_deref(), Some(&b"ws02.contoso.local"[..]));
        assert_eq!(view.user.as_deref(), Some(&b"CONTOSO\\alice"[..]));
        assert_eq!(view.script_text(), Some(&b"Enter-PSSession"[..]));
        assert_eq!(view.time.unwrap().secs, 1_709_633_472.5);
    }

    #[test]
    fn event_code_forms() {
        for (v, want) in [
            (Value::from(4104), Some(4104)),
            (Value::from(4104.0), Some(4104)),
            (Value::from("4104"), Some(4104)),
            (Value::from(" 4104 "), Some(4104)),
            (Value::from(4104.5), None),
            (Value::from("41x04"), None),
            (Value::Nil, None),
        ] {
            let view = view_of(
                &map(vec![("EventID", v.clone())]),
                &FieldOverrides::default(),
            );
            assert_eq!(view.event_code, want, "{v:?}");
        }
    }

    #[test]
    fn splunk_source_names_the_channel_and_overrides_win() {
        let v = map(vec![
            ("EventCode", 4104.into()),
            (
                "source",
                "XmlWinEventLog:Microsoft-Windows-PowerShell/Operational".into(),
            ),
            ("evt", map(vec![("id", 4103.into())])),
        ]);
        let view = view_of(&v, &FieldOverrides::default());
        assert_eq!(view.shape, Shape::SplunkFlat);
        assert_eq!(
            view.channel.as_deref(),
            Some(&b"Microsoft-Windows-PowerShell/Operational"[..])
        );
        let o = FieldOverrides {
            event_code: Some(FieldPath(vec!["evt".into(), "id".into()])),
            ..Default::default()
        };
        let view = view_of(&v, &o);
        assert_eq!(view.shape, Shape::Custom);
        assert_eq!(view.event_code, Some(4103));
    }
}
