//! Arbitrary text into `mode extended`'s PowerShell reader (tokenizer, invocations,
//! Enter-PSSession binding): never panics, and stays linear (libFuzzer's -timeout catches
//! blow-ups).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pssession_core::pwsh;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = pwsh::tokenize(&text);
    let _ = pwsh::sessions(&text, None);
    let _ = pwsh::sessions(&text, Some("ws01"));
    let _ = pwsh::command_key(&text);
});
