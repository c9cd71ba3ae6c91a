//! PowerShell on Linux: its script-block log as syslog or journald writes it. The documented
//! template (about_Logging_Non-Windows) is
//! `TIMESTAMP MACHINENAME powershell[PID]: (COMMITID:TID:CID) [EVENTID:TASK.OPCODE.LEVEL] MESSAGE`,
//! EVENTID being the event's name (`ScriptBlock_Compile_Detail` for 4104); rsyslog writes
//! control characters as `#` and three octal digits (`#012` newline, `#011` tab).

use std::borrow::Cow;

/// Event names PowerShell writes on Linux, and their Windows event ids.
const EVENT_NAMES: [(&str, i64); 4] = [
    ("ScriptBlock_Compile_Detail", 4104),
    ("Pipeline_Detail", 4103),
    ("ScriptBlock_Invoke_Start_Detail", 4105),
    ("ScriptBlock_Invoke_Complete_Detail", 4106),
];

/// The program names PowerShell logs under.
pub fn is_powershell_ident(ident: &[u8]) -> bool {
    ident.eq_ignore_ascii_case(b"powershell") || ident.eq_ignore_ascii_case(b"pwsh")
}

/// The part of a PowerShell syslog message after the program name:
/// `(COMMITID:TID:CID) [EVENTID:TASK.OPCODE.LEVEL] MESSAGE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PsMessage<'a> {
    /// The Windows event id for the event name (or the number, if one is written).
    pub event_code: Option<i64>,
    pub event_name: &'a [u8],
    /// MESSAGE, with rsyslog's octal escapes decoded.
    pub text: Cow<'a, [u8]>,
}

/// Parses `(…) [EVENTID:…] MESSAGE`. None when the text does not have that form.
pub fn parse_ps_message(msg: &[u8]) -> Option<PsMessage<'_>> {
    let msg = msg.trim_ascii_start();
    let rest = msg.strip_prefix(b"(")?;
    let close = memchr::memchr(b')', rest)?;
    if close > 128 {
        return None;
    }
    let rest = rest[close + 1..].trim_ascii_start().strip_prefix(b"[")?;
    let end = memchr::memchr(b']', rest)?;
    if end > 256 {
        return None;
    }
    let tag = &rest[..end];
    let name = match memchr::memchr(b':', tag) {
        Some(i) => &tag[..i],
        None => tag,
    };
    let body = &rest[end + 1..];
    let body = body.strip_prefix(b" ").unwrap_or(body);
    Some(PsMessage {
        event_code: event_code_for_name(name),
        event_name: name,
        text: decode_octal_escapes(body),
    })
}

/// The Windows event id of a PowerShell event name, or the number itself.
pub fn event_code_for_name(name: &[u8]) -> Option<i64> {
    if !name.is_empty() && name.iter().all(u8::is_ascii_digit) {
        return std::str::from_utf8(name).ok()?.parse().ok();
    }
    EVENT_NAMES
        .iter()
        .find(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
        .map(|(_, c)| *c)
}

/// Decodes rsyslog's escapes of control characters: `#` followed by three octal digits
/// whose value is a control character (`#012` -> newline, `#011` -> tab). Other `#`s stay.
pub fn decode_octal_escapes(s: &[u8]) -> Cow<'_, [u8]> {
    let Some(first) = memchr::memchr(b'#', s) else {
        return Cow::Borrowed(s);
    };
    let decode_at = |i: usize| -> Option<u8> {
        let d = s.get(i + 1..i + 4)?;
        if !d.iter().all(|b| (b'0'..=b'7').contains(b)) {
            return None;
        }
        let v = (d[0] - b'0') as u32 * 64 + (d[1] - b'0') as u32 * 8 + (d[2] - b'0') as u32;
        (v < 0x20 || v == 0x7f).then_some(v as u8)
    };
    let mut out = Vec::with_capacity(s.len());
    out.extend_from_slice(&s[..first]);
    let mut i = first;
    while i < s.len() {
        if s[i] == b'#' {
            if let Some(c) = decode_at(i) {
                out.push(c);
                i += 4;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    Cow::Owned(out)
}

/// A whole syslog line, as the `tail` input gives it without a parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogLine<'a> {
    pub host: &'a [u8],
    pub ident: &'a [u8],
    pub pid: Option<&'a [u8]>,
    /// The timestamp text when it is ISO 8601 (RFC 3339 / RFC 5424); None for RFC 3164's
    /// year-less form.
    pub iso_time: Option<&'a [u8]>,
    pub message: &'a [u8],
}

fn next_word(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let s = s.trim_ascii_start();
    if s.is_empty() {
        return None;
    }
    let end = s.iter().position(|b| *b == b' ').unwrap_or(s.len());
    Some((&s[..end], &s[end..]))
}

/// Parses `[<PRI>]TIMESTAMP HOST IDENT[PID]: MESSAGE` (RFC 3164 or ISO timestamps, as
/// rsyslog writes files) and `<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MESSAGE`
/// (RFC 5424).
pub fn parse_syslog_line(line: &[u8]) -> Option<SyslogLine<'_>> {
    let mut s = line.trim_ascii_start();
    if s.first() == Some(&b'<') {
        let end = memchr::memchr(b'>', &s[..s.len().min(6)])?;
        s = &s[end + 1..];
        if let Some(rest) = s.strip_prefix(b"1 ") {
            return parse_5424(rest);
        }
    }
    // timestamp: "Mmm dd hh:mm:ss" or one ISO word
    let (iso_time, rest) =
        if s.len() > 15 && s[3] == b' ' && s[..3].iter().all(u8::is_ascii_alphabetic) {
            (None, &s[15..])
        } else {
            let (w, rest) = next_word(s)?;
            if !w.first().is_some_and(u8::is_ascii_digit) {
                return None;
            }
            (Some(w), rest)
        };
    let (host, rest) = next_word(rest)?;
    let rest = rest.trim_ascii_start();
    let colon = memchr::memchr(b':', &rest[..rest.len().min(64)])?;
    let tag = &rest[..colon];
    let message = rest[colon + 1..]
        .strip_prefix(b" ")
        .unwrap_or(&rest[colon + 1..]);
    let (ident, pid) = match memchr::memchr(b'[', tag) {
        Some(i) if tag.ends_with(b"]") => (&tag[..i], Some(&tag[i + 1..tag.len() - 1])),
        _ => (tag, None),
    };
    if ident.is_empty() || ident.contains(&b' ') {
        return None;
    }
    Some(SyslogLine {
        host,
        ident,
        pid,
        iso_time,
        message,
    })
}

fn parse_5424(s: &[u8]) -> Option<SyslogLine<'_>> {
    let (time, rest) = next_word(s)?;
    let (host, rest) = next_word(rest)?;
    let (app, rest) = next_word(rest)?;
    let (procid, rest) = next_word(rest)?;
    let (_msgid, rest) = next_word(rest)?;
    let rest = rest.trim_ascii_start();
    // structured data: "-" or one or more [..] elements
    let message = if let Some(r) = rest.strip_prefix(b"-") {
        r
    } else {
        let mut depth = 0usize;
        let mut end = rest.len();
        for (i, b) in rest.iter().enumerate() {
            match b {
                b'[' => depth += 1,
                b']' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 && rest.get(i + 1) != Some(&b'[') {
                        end = i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        &rest[end..]
    };
    let message = message.strip_prefix(b" ").unwrap_or(message);
    let nil = |w: &'_ [u8]| -> bool { w == b"-" };
    Some(SyslogLine {
        host: if nil(host) { b"" } else { host },
        ident: app,
        pid: (!nil(procid)).then_some(procid),
        iso_time: (!nil(time)).then_some(time),
        message,
    })
}

/// Cheap pre-check for a raw line: does a PowerShell program name appear near its start?
pub fn may_be_powershell_line(line: &[u8]) -> bool {
    let head = &line[..line.len().min(160)];
    memchr::memmem::find(head, b"powershell").is_some()
        || memchr::memmem::find(head, b"pwsh").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &[u8] = b"Mar  5 10:11:12 lnx01 powershell[4242]: (7.4.1:9:80) [ScriptBlock_Compile_Detail:ExecuteCommand.Create.Warning] Creating Scriptblock text (1 of 1):#012Enter-PSSession -ComputerName web01#011# not an escape: #999#012#012ScriptBlock ID: 1e5c#012Path: ";

    #[test]
    fn parses_rsyslog_lines() {
        let l = parse_syslog_line(LINE).unwrap();
        assert_eq!(l.host, b"lnx01");
        assert_eq!(l.ident, b"powershell");
        assert_eq!(l.pid, Some(&b"4242"[..]));
        assert_eq!(l.iso_time, None);
        let m = parse_ps_message(l.message).unwrap();
        assert_eq!(m.event_code, Some(4104));
        assert_eq!(
            &m.text[..],
            &b"Creating Scriptblock text (1 of 1):\nEnter-PSSession -ComputerName web01\t# not an escape: #999\n\nScriptBlock ID: 1e5c\nPath: "[..]
        );
        let iso = b"2024-03-05T10:11:12.123456+00:00 lnx02 pwsh[7]: (7.4.1:1:80) [Pipeline_Detail:ExecutePipeline.Create.Informational] x";
        let l = parse_syslog_line(iso).unwrap();
        assert_eq!(l.iso_time, Some(&b"2024-03-05T10:11:12.123456+00:00"[..]));
        assert_eq!(parse_ps_message(l.message).unwrap().event_code, Some(4103));
        let other = b"Mar  5 10:11:12 lnx01 sshd[1]: Accepted publickey for root";
        assert_eq!(parse_syslog_line(other).unwrap().ident, b"sshd");
        assert!(!may_be_powershell_line(other));
    }

    #[test]
    fn parses_rfc5424() {
        let l = parse_syslog_line(b"<14>1 2024-03-05T10:11:12Z lnx03 powershell 99 - [meta x=\"1\"] (7.4:1:80) [ScriptBlock_Compile_Detail:a.b.c] Creating Scriptblock text (1 of 1):\nx").unwrap();
        assert_eq!(
            (l.host, l.ident, l.pid),
            (&b"lnx03"[..], &b"powershell"[..], Some(&b"99"[..]))
        );
        assert_eq!(parse_ps_message(l.message).unwrap().event_code, Some(4104));
    }

    #[test]
    fn octal_escapes_and_event_names() {
        assert_eq!(
            &decode_octal_escapes(b"a#012b#0111#177")[..],
            b"a\nb\t1\x7f"
        );
        assert_eq!(&decode_octal_escapes(b"#101 #12")[..], b"#101 #12");
        assert_eq!(event_code_for_name(b"4104"), Some(4104));
        assert_eq!(event_code_for_name(b"Perftrack_ConsoleStartupStart"), None);
        assert!(parse_ps_message(b"plain text").is_none());
    }
}
