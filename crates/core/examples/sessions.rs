//! What mode extended reads in a script: `cargo run -p pssession-core --example sessions
//! < script.ps1` prints each Enter-PSSession that would run, with its target, transport,
//! deobfuscated command line and the layers peeled to reach it. With `--eval`, prints what
//! the constant evaluator makes of the text instead; with `--tokenize`, only tokenizes.

use std::io::Read;

fn main() {
    let mut script = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut script) {
        eprintln!("sessions: cannot read the script from stdin: {e}");
        std::process::exit(2);
    }
    let own = std::env::args().nth(1);
    if own.as_deref() == Some("--tokenize") {
        let lexed = pssession_core::pwsh::tokenize(&script);
        println!("{} tokens", lexed.tokens.len());
        return;
    }
    if own.as_deref() == Some("--eval") {
        use pssession_core::detect::constant::{Budget, Evaluator, NoDefinitions};
        let mut budget = Budget::for_script(script.len());
        let mut ev = Evaluator::new(&script, &NoDefinitions, &mut budget);
        println!("{:?}", ev.eval_range(0, script.len()));
        println!("runs: {:?}", ev.take_runs());
        return;
    }
    let found = pssession_core::pwsh::sessions(&script, own.as_deref());
    if found.is_empty() {
        println!("no session");
    }
    for s in found {
        println!(
            "{} {} {:?} local={}\n  command_line: {}\n  layers: {:?}\n  readings: {:?}",
            s.transport.name(),
            s.target.kind(),
            s.target.text(),
            s.local,
            s.command_line,
            s.layers,
            s.readings
        );
    }
}
