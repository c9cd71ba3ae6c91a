//! Arbitrary text into the XmlWinEventLog reader: never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pssession_core::xml_event;

fuzz_target!(|data: &[u8]| {
    let _ = xml_event::looks_like_event_xml(data);
    let text = String::from_utf8_lossy(data);
    if let Some(ev) = xml_event::parse(&text) {
        // Whatever it read came from the text.
        for s in [&ev.event_id, &ev.computer, &ev.channel]
            .into_iter()
            .flatten()
        {
            assert!(
                s.len() <= text.len() * 4 + 16,
                "field longer than its document"
            );
        }
    }
});
