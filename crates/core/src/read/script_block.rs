//! The pieces of a rendered 4104 message: the "Creating Scriptblock text (n of m)" header,
//! the script, and the "ScriptBlock ID:" trailer, which place an event in its script block.

/// Where one event sits in its script block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    pub number: u32,
    pub total: u32,
    pub block_id: String,
}

/// The pieces of a rendered 4104 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered<'a> {
    pub number: u32,
    pub total: u32,
    pub block_id: Option<&'a [u8]>,
    /// The script text between the header line and the trailer.
    pub body: &'a [u8],
}

/// Parses "Creating Scriptblock text (n of m):\r\n<script>\r\n\r\nScriptBlock ID: <id>\r\nPath: ...".
pub fn parse_rendered(msg: &[u8]) -> Option<Rendered<'_>> {
    const HEAD: &[u8] = b"Creating Scriptblock text (";
    let start = memchr::memmem::find(&msg[..msg.len().min(256)], HEAD)? + HEAD.len();
    let rest = &msg[start..];
    let close = memchr::memchr(b')', &rest[..rest.len().min(32)])?;
    let inner = std::str::from_utf8(&rest[..close]).ok()?;
    let (n, m) = inner.split_once(" of ")?;
    let (number, total) = (n.trim().parse().ok()?, m.trim().parse().ok()?);
    let mut body = &rest[close + 1..];
    body = body.strip_prefix(b":").unwrap_or(body);
    body = body
        .strip_prefix(b"\r\n")
        .or_else(|| body.strip_prefix(b"\n"))
        .unwrap_or(body);
    let (body, block_id) = match memchr::memmem::rfind(body, b"ScriptBlock ID:") {
        Some(i) => {
            let id_part = &body[i + b"ScriptBlock ID:".len()..];
            let id_end = id_part
                .iter()
                .position(|b| *b == b'\r' || *b == b'\n')
                .unwrap_or(id_part.len());
            let mut script = &body[..i];
            for sep in [&b"\r\n\r\n"[..], b"\n\n", b"\r\n", b"\n"] {
                if let Some(s) = script.strip_suffix(sep) {
                    script = s;
                    break;
                }
            }
            (script, Some(id_part[..id_end].trim_ascii()))
        }
        None => (body, None),
    };
    Some(Rendered {
        number,
        total,
        block_id,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rendered_messages() {
        let r = parse_rendered(b"Creating Scriptblock text (2 of 3):\r\nEnter-PSSession -Comp\r\n\r\nScriptBlock ID: 1e5c-aa\r\nPath: C:\\x.ps1").unwrap();
        assert_eq!((r.number, r.total), (2, 3));
        assert_eq!(r.block_id, Some(&b"1e5c-aa"[..]));
        assert_eq!(r.body, b"Enter-PSSession -Comp");
        let r =
            parse_rendered(b"Creating Scriptblock text (1 of 1):\nx\n\nScriptBlock ID: id\nPath: ")
                .unwrap();
        assert_eq!(r.body, b"x");
        assert!(parse_rendered(b"something else").is_none());
    }
}
