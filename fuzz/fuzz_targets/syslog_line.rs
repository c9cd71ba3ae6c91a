//! Arbitrary bytes into the PowerShell-on-Linux readers: never panic; what they return are
//! parts of the line; octal decoding never grows the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pssession_core::linux;

fn within(part: &[u8], whole: &[u8]) -> bool {
    let (p, w) = (part.as_ptr() as usize, whole.as_ptr() as usize);
    part.is_empty() || (p >= w && p + part.len() <= w + whole.len())
}

fuzz_target!(|data: &[u8]| {
    let _ = linux::may_be_powershell_line(data);
    if let Some(l) = linux::parse_syslog_line(data) {
        assert!(within(l.host, data) && within(l.ident, data) && within(l.message, data));
        if let Some(m) = linux::parse_ps_message(l.message) {
            assert!(m.text.len() <= l.message.len());
        }
    }
    if let Some(m) = linux::parse_ps_message(data) {
        assert!(within(m.event_name, data));
        assert!(m.text.len() <= data.len());
    }
    let d = linux::decode_octal_escapes(data);
    assert!(d.len() <= data.len(), "decoding grew the text");
    let _ = linux::event_code_for_name(data);
});
