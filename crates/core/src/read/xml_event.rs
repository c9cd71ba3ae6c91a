//! Reads a Windows event rendered as XML (Splunk's XmlWinEventLog, `<Event xmlns=...>`) into
//! the fields the analytic needs, entities decoded, with quick-xml.

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// The fields of one XML event that matter here. Absent elements stay None.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct XmlEvent {
    pub event_id: Option<String>,
    pub channel: Option<String>,
    pub computer: Option<String>,
    pub user_id: Option<String>,
    pub system_time: Option<String>,
    pub script_block_text: Option<String>,
    pub message_number: Option<String>,
    pub message_total: Option<String>,
    pub script_block_id: Option<String>,
    /// RenderingInfo/Message, when the event was rendered.
    pub message: Option<String>,
}

/// Whether a string field looks like an XML event document (cheap pre-check): `<Event`
/// after optional white space, a byte-order mark and an `<?xml ...?>` declaration.
pub fn looks_like_event_xml(s: &[u8]) -> bool {
    let mut rest = s
        .strip_prefix("\u{feff}".as_bytes())
        .unwrap_or(s)
        .trim_ascii_start();
    if rest.starts_with(b"<?xml") {
        match memchr::memmem::find(rest, b"?>") {
            Some(end) => rest = rest[end + 2..].trim_ascii_start(),
            None => return false,
        }
    }
    rest.starts_with(b"<Event")
}

/// What text element we are inside.
#[derive(Clone, Copy, PartialEq)]
enum Target {
    None,
    EventId,
    Channel,
    Computer,
    ScriptBlockText,
    MessageNumber,
    MessageTotal,
    ScriptBlockId,
    Message,
}

/// Parses an XML event. None when the text is not well-formed XML or has no `<Event>` root.
pub fn parse(xml: &str) -> Option<XmlEvent> {
    let mut reader = Reader::from_str(xml);
    let mut ev = XmlEvent::default();
    let mut target = Target::None;
    let mut text = String::new();
    let mut depth: usize = 0;
    let mut saw_root = false;
    let mut in_rendering = false;
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) => {
                depth += 1;
                if depth == 1 {
                    if e.local_name().as_ref() != b"Event" {
                        return None;
                    }
                    saw_root = true;
                }
                let name = e.local_name();
                match name.as_ref() {
                    b"RenderingInfo" => in_rendering = true,
                    b"EventID" => target = Target::EventId,
                    b"Channel" => target = Target::Channel,
                    b"Computer" => target = Target::Computer,
                    b"Message" if in_rendering => target = Target::Message,
                    b"Data" => {
                        target = match data_name(&e).as_deref() {
                            Some("ScriptBlockText") => Target::ScriptBlockText,
                            Some("MessageNumber") => Target::MessageNumber,
                            Some("MessageTotal") => Target::MessageTotal,
                            Some("ScriptBlockId") => Target::ScriptBlockId,
                            _ => Target::None,
                        }
                    }
                    _ => attributes(&e, &mut ev),
                }
                text.clear();
            }
            Event::Empty(e) => attributes(&e, &mut ev),
            Event::Text(t) if target != Target::None => text.push_str(&t.decode().ok()?),
            Event::CData(t) if target != Target::None => {
                text.push_str(&String::from_utf8_lossy(&t))
            }
            Event::GeneralRef(r) if target != Target::None => {
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    text.push(c);
                } else {
                    let name = r.decode().ok()?;
                    text.push_str(quick_xml::escape::resolve_predefined_entity(&name)?);
                }
            }
            Event::End(e) => {
                depth = depth.saturating_sub(1);
                if e.local_name().as_ref() == b"RenderingInfo" {
                    in_rendering = false;
                }
                let done = std::mem::take(&mut text);
                let slot = match target {
                    Target::EventId => &mut ev.event_id,
                    Target::Channel => &mut ev.channel,
                    Target::Computer => &mut ev.computer,
                    Target::ScriptBlockText => &mut ev.script_block_text,
                    Target::MessageNumber => &mut ev.message_number,
                    Target::MessageTotal => &mut ev.message_total,
                    Target::ScriptBlockId => &mut ev.script_block_id,
                    Target::Message => &mut ev.message,
                    Target::None => {
                        continue;
                    }
                };
                if slot.is_none() {
                    *slot = Some(done);
                }
                target = Target::None;
            }
            Event::Eof => break,
            _ => {}
        }
    }
    saw_root.then_some(ev)
}

fn data_name(e: &BytesStart<'_>) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == b"Name")
        .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
}

/// Picks up the attributes that carry values: TimeCreated/@SystemTime, Security/@UserID.
fn attributes(e: &BytesStart<'_>, ev: &mut XmlEvent) {
    let (slot, attr): (&mut Option<String>, &[u8]) = match e.local_name().as_ref() {
        b"TimeCreated" => (&mut ev.system_time, b"SystemTime"),
        b"Security" => (&mut ev.user_id, b"UserID"),
        _ => return,
    };
    if let Some(a) = e
        .attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == attr)
    {
        if let Ok(v) = a.unescape_value() {
            *slot = Some(v.into_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'>\
<System><Provider Name='Microsoft-Windows-PowerShell' Guid='{A0C1853B-5C40-4B15-8766-3CF1C58F985A}'/>\
<EventID>4104</EventID><Level>5</Level><TimeCreated SystemTime='2024-03-05T10:11:12.1234567Z'/>\
<Channel>Microsoft-Windows-PowerShell/Operational</Channel><Computer>ws01.contoso.local</Computer>\
<Security UserID='S-1-5-21-1-2-3-1104'/></System><EventData><Data Name='MessageNumber'>1</Data>\
<Data Name='MessageTotal'>1</Data><Data Name='ScriptBlockText'>if ($a -lt 3) { Enter-PSSession -ComputerName &quot;dc01&quot; } &amp; &#x41;</Data>\
<Data Name='ScriptBlockId'>abc</Data><Data Name='Path'></Data></EventData></Event>";

    #[test]
    fn reads_system_and_script_block() {
        let ev = parse(DOC).unwrap();
        assert_eq!(ev.event_id.as_deref(), Some("4104"));
        assert_eq!(
            ev.channel.as_deref(),
            Some("Microsoft-Windows-PowerShell/Operational")
        );
        assert_eq!(ev.computer.as_deref(), Some("ws01.contoso.local"));
        assert_eq!(ev.user_id.as_deref(), Some("S-1-5-21-1-2-3-1104"));
        assert_eq!(
            ev.system_time.as_deref(),
            Some("2024-03-05T10:11:12.1234567Z")
        );
        assert_eq!(
            ev.script_block_text.as_deref(),
            Some("if ($a -lt 3) { Enter-PSSession -ComputerName \"dc01\" } & A")
        );
        assert_eq!(ev.message, None);
        assert_eq!(ev.script_block_id.as_deref(), Some("abc"));
        assert_eq!(ev.message_total.as_deref(), Some("1"));
        assert!(looks_like_event_xml(b"  \n<Event xmlns='x'>"));
        assert!(looks_like_event_xml(
            b"<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Event xmlns='x'>"
        ));
        assert!(!looks_like_event_xml(b"<?xml version=\"1.0\"?><Other/>"));
        assert!(!looks_like_event_xml(b"Creating Scriptblock text"));
    }

    #[test]
    fn rejects_non_events_and_broken_xml() {
        assert_eq!(parse("<Other/>"), None);
        assert_eq!(parse("<Event><System></Event>"), None);
        assert_eq!(parse("not xml"), None);
    }

    #[test]
    fn rendering_info_message() {
        let doc = DOC.replace(
            "</Event>",
            "<RenderingInfo Culture='en-US'><Message>Creating Scriptblock text (1 of 1):&#13;&#10;x</Message></RenderingInfo></Event>",
        );
        let ev = parse(&doc).unwrap();
        assert_eq!(
            ev.message.as_deref(),
            Some("Creating Scriptblock text (1 of 1):\r\nx")
        );
    }
}
