//! Arbitrary text into `mode extended`'s PowerShell reader (tokenizer, invocations,
//! Enter-PSSession binding). libFuzzer's -timeout catches blow-ups.
//!
//! Checks: never a panic; tokens lie inside the text, in order, without overlap; the code
//! found inside strings is shorter than the text it came from (so reading it terminates);
//! a session found without a computer name of our own stays found when the reader is told
//! one that the script does not mention.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pssession_core::pwsh;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lexed = pwsh::tokenize(&text);
    let mut end = 0;
    for t in &lexed.tokens {
        assert!(t.start <= t.end, "token ends before it starts: {t:?}");
        assert!(t.end <= lexed.text.len(), "token past the text: {t:?}");
        assert!(
            lexed.text.is_char_boundary(t.start) && lexed.text.is_char_boundary(t.end),
            "token not on character boundaries: {t:?}"
        );
        assert!(
            t.start >= end,
            "tokens overlap or go back: {t:?} after {end}"
        );
        end = t.end;
    }
    for n in &lexed.nested {
        assert!(n.len() < text.len(), "nested code as long as its text");
    }
    let first = pwsh::sessions(&text, None);
    let own = "zz-not-in-script-0";
    if !text.to_ascii_lowercase().contains(own) {
        let with_own = pwsh::sessions(&text, Some(own));
        assert_eq!(
            first.len(),
            with_own.len(),
            "a computer name the script never names"
        );
    }
    let _ = pwsh::command_key(&text);
});
