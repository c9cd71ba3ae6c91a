//! Constant evaluation against values worked out by hand from PowerShell's documented
//! behaviour, and encodings made by Python's base64 / zlib / gzip (not by this code).

use super::*;

const CMD: &str = "Enter-PSSession -ComputerName web01";

/// The value of `src`, alone, with its layers.
fn eval(src: &str) -> Option<(Value, Vec<&'static str>)> {
    let mut budget = Budget::for_script(src.len());
    let mut ev = Evaluator::new(src, &NoDefinitions, &mut budget);
    ev.eval_range(0, src.len())
}

fn text(src: &str) -> String {
    match eval(src) {
        Some((v, _)) => to_text(&v),
        None => panic!("no value for {src}"),
    }
}

fn runs(src: &str) -> Vec<Runs> {
    let mut budget = Budget::for_script(src.len());
    let mut ev = Evaluator::new(src, &NoDefinitions, &mut budget);
    let _ = ev.eval_range(0, src.len());
    ev.take_runs()
}

#[test]
fn strings_built_from_pieces() {
    assert_eq!(text("('Enter-' + 'PSSession')"), "Enter-PSSession");
    assert_eq!(
        text("\"{1}{0}\" -f 'PSSession','Enter-'"),
        "Enter-PSSession"
    );
    assert_eq!(
        text("('{2}{0}{1}' -f 'r-PS','Session','Ente')"),
        "Enter-PSSession"
    );
    assert_eq!(text("'E','n','t','e','r' -join ''"), "Enter");
    assert_eq!(text("-join ('E','t','s','n')"), "Etsn");
    assert_eq!(text("[string]::Join('', @('et', 'sn'))"), "etsn");
    assert_eq!(
        text("'EnXXter-PSSession' -replace 'XX',''"),
        "Enter-PSSession"
    );
    assert_eq!(
        text("'EnXXter-PSSession'.Replace('XX','')"),
        "Enter-PSSession"
    );
    assert_eq!(text("'ENTER-pssession'.ToLower()"), "enter-pssession");
    assert_eq!(
        text("'xxEnter-PSSessionyy'.Substring(2, 15)"),
        "Enter-PSSession"
    );
    assert_eq!(text("'noisetsn'[5..7] -join ''"), "tsn");
    // -f binds tighter than +, the comma tighter than -f
    assert_eq!(text("'{0}' -f 'a' + 'b'"), "ab");
    // the unary -join binds tighter than the comma: an array of 'a' and 'b'
    assert_eq!(text("-join 'a','b'"), "a b");
}

#[test]
fn reversal_in_its_three_forms() {
    assert_eq!(text("-join 'noisseSSP-retnE'[-1..-15]"), "Enter-PSSession");
    let matches =
        "([regex]::Matches('nsté','.','RightToLeft') | ForEach-Object {$_.Value}) -join ''";
    assert_eq!(text(matches), "étsn");
    let statements = "$a = [char[]]'nste'; [array]::Reverse($a); $a -join ''";
    assert_eq!(text(statements), "etsn");
    assert!(eval(statements).is_some_and(|(_, l)| l.contains(&"reverse")));
}

#[test]
fn char_codes_casts_and_radixes() {
    assert_eq!(
        text("[string][char]101 + [char]116 + [char]115 + [char]110"),
        "etsn"
    );
    assert_eq!(text("-join [char[]](101,116,115,110)"), "etsn");
    assert_eq!(text("([char[]](101,116,115,110)) -join ''"), "etsn");
    assert_eq!(
        text("(('145,164,163,156' -split ',') | % {[char][convert]::ToInt32($_,8)}) -join ''"),
        "etsn"
    );
    assert_eq!(
        text(
            "-join ('65{74{73{6e' -split '{' | ForEach-Object {[char]([convert]::ToInt16($_,16))})"
        ),
        "etsn"
    );
    // a char on the left concatenates, as the $ShellId[1]+$ShellId[13]+'x' idiom relies on
    assert_eq!(text("[char]101 + [char]116"), "et");
    let bxor = "-join ('63,46,41,52' -split ',' | % {[char]($_ -bxor '0x5a')})";
    assert_eq!(text(bxor), "etsn");
}

#[test]
fn the_character_picks_for_iex() {
    assert_eq!(text("$ShellId[1]+$ShellId[13]+'x'"), "iex");
    assert_eq!(text("$PSHome[4]+$PSHome[30]+'x'"), "iex");
    assert_eq!(text("$PSHome[21]+$PSHome[30]+'x'"), "iex");
    assert_eq!(text("$env:ComSpec[4,15,25]-join''").to_lowercase(), "iex");
    assert_eq!(
        text("($VerbosePreference.ToString())[1,3]+'x'-join''"),
        "iex"
    );
    assert_eq!(text("([string]$VerbosePreference)[1,3]+'X'-join''"), "ieX");
    assert_eq!(text("(gv '*mdr*').Name[3,11,2]-join''"), "iex");
    assert_eq!(text("(Get-Variable '*MDR*').NAme[3,11,2]-JoIN''"), "iex");
    assert_eq!(text("( VARIABLE '*mdr*').name[3,11,2]-join''"), "iex");
}

#[test]
fn commands_fetched_as_objects() {
    assert_eq!(
        eval("(gcm *nter-pss*)").map(|v| v.0),
        Some(Value::Command("Enter-PSSession".into()))
    );
    // also Register- and Unregister-PSSessionConfiguration: PowerShell gets three commands
    assert_eq!(eval("(gcm *ter-pss*)").map(|v| v.0), None);
    assert_eq!(
        eval("(Get-Command e*-pss*)").map(|v| v.0),
        None,
        "Enter- and Export-PSSession"
    );
    assert_eq!(
        eval("(Get-Alias etsn)").map(|v| v.0),
        Some(Value::Command("Enter-PSSession".into()))
    );
    let ec = "$ExecutionContext.InvokeCommand.GetCommand('Enter-PSSession','Cmdlet')";
    assert_eq!(
        eval(ec).map(|v| v.0),
        Some(Value::Command("Enter-PSSession".into()))
    );
    let name = "$ExecutionContext.InvokeCommand.GetCommandName('*nter-pss*',$true,$true)";
    assert_eq!(text(name), "Enter-PSSession");
    let r = runs("$ExecutionContext.InvokeCommand.InvokeScript('etsn web01')");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].code, "etsn web01");
    let r = runs("[scriptblock]::Create('etsn ' + 'web01').Invoke()");
    assert_eq!(r.first().map(|r| r.code.as_str()), Some("etsn web01"));
    assert!(r[0].layers.contains(&"scriptblock-create"));
}

#[test]
fn payloads_decoded_and_inflated() {
    let u16 = "[Text.Encoding]::Unicode.GetString([Convert]::FromBase64String('RQBuAHQAZQByAC0AUABTAFMAZQBzAHMAaQBvAG4AIAAtAEMAbwBtAHAAdQB0AGUAcgBOAGEAbQBlACAAdwBlAGIAMAAxAA=='))";
    let (v, layers) = eval(u16).unwrap();
    assert_eq!(to_text(&v), CMD);
    assert_eq!(layers, ["base64-utf16le"]);
    let deflate = "(New-Object IO.StreamReader((New-Object IO.Compression.DeflateStream([IO.MemoryStream][Convert]::FromBase64String('c80rSS3SDQgOTi0uzszPU9B1zs8tKAWK+SXmpiqUpyYZGAIA'),[IO.Compression.CompressionMode]::Decompress)),[Text.Encoding]::ASCII)).ReadToEnd()";
    let (v, layers) = eval(deflate).unwrap();
    assert_eq!(to_text(&v), CMD);
    assert_eq!(layers, ["base64", "deflate"]);
    let gzip = "$ms = New-Object System.IO.MemoryStream(,[System.Convert]::FromBase64String('H4sIAAAAAAACA3PNK0kt0g0IDk4tLs7Mz1PQdc7PLSgFivkl5qYqlKcmGRgCAAROxagjAAAA'))\n$gz = New-Object System.IO.Compression.GZipStream($ms, [System.IO.Compression.CompressionMode]::Decompress)\n(New-Object System.IO.StreamReader($gz)).ReadToEnd()";
    assert_eq!(text(gzip), CMD);
    let bxor = "-join ('31,52,46,63,40,119,10,9,9,63,41,41,51,53,52,122,119,25,53,55,42,47,46,63,40,20,59,55,63,122,45,63,56,106,107'.Split(',') | ForEach-Object { [char]([int]$_ -bxor 0x5A) })";
    assert_eq!(text(bxor), CMD);
    let hex = "-join ('45{6e{74{65{72{2d{50{53{53{65{73{73{69{6f{6e{20{2d{43{6f{6d{70{75{74{65{72{4e{61{6d{65{20{77{65{62{30{31' -split '{' | % {[char][convert]::ToInt16($_,16)})";
    assert_eq!(text(hex), CMD);
}

#[test]
fn pipelines_into_iex_are_runs() {
    let r = runs("('etsn'+' web01') | iex");
    assert_eq!(r.first().map(|r| r.code.as_str()), Some("etsn web01"));
}

#[test]
fn double_quoted_strings_expand_and_escape() {
    assert_eq!(text("$a = 'PSSe'; \"Enter-${a}ssion\""), "Enter-PSSession");
    assert_eq!(text("\"E`nter\""), "E\nter");
    assert_eq!(text("\"Ent$('er-PS')Session\""), "Enter-PSSession");
    assert_eq!(text("\u{201C}et\u{201D} + \u{2018}sn\u{2019}"), "etsn");
}

#[test]
fn hashtables_pick_by_key() {
    assert_eq!(text("@{a='x'; b='etsn'}['b']"), "etsn");
    assert_eq!(text("@{a='x'; b='etsn'}.B"), "etsn");
}

#[test]
fn what_is_not_constant_stays_unknown() {
    for src in [
        "Get-Content hosts.txt",
        "$undefined + 'x'",
        "(Get-Random)",
        "[IO.File]::ReadAllText('c:\\x')",
        "'a' -replace '(', ''",
        "if ($x) { 'a' }",
        "'unterminated",
        "[Convert]::FromBase64String('not base64!')",
        // found by the filter_chunk fuzzer: an unknown hashtable value running into an
        // unterminated string
        "@{\r\nGUID=\"{8FA5064B-8479-4c5c-86EA-0",
        "@{ a = (Get-Date) ; b = 'x",
        "@{ a = x`",
    ] {
        assert!(eval(src).is_none_or(|(v, _)| v == Value::Null), "{src}");
    }
}

#[test]
fn budgets_stop_blow_ups() {
    // doubling 40 times would be a terabyte
    let mut src = String::from("$a = 'xxxxxxxx'\n");
    for _ in 0..40 {
        src.push_str("$a = $a + $a\n");
    }
    src.push_str("$a");
    assert!(eval(&src).is_none());
    assert!(eval("'x' * 100000000").is_none());
    assert!(eval("(1..100000000) -join ''").is_none());
    let deep = format!("{}'a'{}", "(".repeat(10_000), ")".repeat(10_000));
    assert!(eval(&deep).is_none());
    let nested_casts = format!("{}101", "[char]".repeat(10_000));
    assert!(eval(&nested_casts).is_none());
}

/// Definitions taken from a list of (name, start, end) over the code.
struct Defs(Vec<(&'static str, usize, usize)>);

impl Definitions for Defs {
    fn definition(&self, name: &str, before: usize) -> Option<Definition> {
        self.0
            .iter()
            .rev()
            .find(|(n, s, _)| *n == name && *s < before)
            .map(|(_, start, end)| Definition {
                start: *start,
                end: *end,
                kind: Change::Assign,
            })
    }
}

#[test]
fn variables_resolve_through_their_definitions_once_each() {
    // $a = 'et'  /  $b = $a + 'sn'  /  use: $b
    let code = "'et' $a + 'sn' $b";
    let defs = Defs(vec![("a", 0, 4), ("b", 5, 14)]);
    let mut budget = Budget::for_script(code.len());
    let mut ev = Evaluator::new(code, &defs, &mut budget);
    let (v, _) = ev.eval_range(15, 17).unwrap();
    assert_eq!(v, Value::Str("etsn".into()));
}

/// Compiling a regex costs milliseconds whatever the text, so a script may compile only so
/// many distinct ones (`MIN_REGEXES` for a short script); one pattern used again is
/// compiled once and stays free.
#[test]
fn a_script_compiles_a_bounded_number_of_distinct_regexes() {
    let chain = |patterns: &mut dyn Iterator<Item = String>| {
        let ops: Vec<String> = patterns.map(|p| format!("-replace '{p}',''")).collect();
        format!("'web01x' {}", ops.join(" "))
    };
    let same = chain(&mut (0..200).map(|_| "x$".to_string()));
    assert_eq!(text(&same), "web01");
    let few = chain(&mut (0..7).map(|i| format!("z{i}|x$")));
    assert_eq!(text(&few), "web01");
    // distinct patterns beyond the allowance: no value rather than unbounded compiling
    let many = chain(&mut (0..200).map(|i| format!("z{i}|x$")));
    assert!(
        many.len() / 256 < 200,
        "the allowance must be below the count"
    );
    assert_eq!(eval(&many), None);
}
