//! The commands constant evaluation understands inside an expression (`Get-Command`,
//! `Get-Alias`, `Get-Variable`, `New-Object`, `ForEach-Object`, ...), the built-in command
//! and alias names a wildcard is matched against, and the automatic variables whose
//! characters obfuscators pick (`$ShellId`, `$PSHome`, `$env:ComSpec`, ...), with the
//! values they have on a stock Windows PowerShell 5.1.

use super::dotnet::{self, to_str};
use super::parse::run_block;
use super::{Evaluator, Value};

/// One command argument: `-Name[:value]` or a value.
pub(super) enum CmdArg {
    Param(String, Option<Value>),
    Value(Value),
}

/// The arguments of one command: positional values, and named ones (prefix-matched).
struct Args {
    args: Vec<CmdArg>,
}

impl Args {
    /// The value of the parameter `full` (written as any prefix of at least `min` letters),
    /// taken with the value after it when it has no `:value`.
    fn named(&self, full: &str, min: usize) -> Option<Value> {
        let mut it = self.args.iter();
        while let Some(a) = it.next() {
            if let CmdArg::Param(p, v) = a {
                let p = p.to_ascii_lowercase();
                if p.len() >= min && full.starts_with(&p) {
                    return match v {
                        Some(v) => Some(v.clone()),
                        None => match it.next() {
                            Some(CmdArg::Value(v)) => Some(v.clone()),
                            _ => Some(Value::Bool(true)),
                        },
                    };
                }
            }
        }
        None
    }

    /// Positional values (those not taken by a parameter).
    fn positional(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut it = self.args.iter();
        while let Some(a) = it.next() {
            match a {
                CmdArg::Value(v) => out.push(v.clone()),
                CmdArg::Param(p, None) if !is_switch(p) => {
                    it.next();
                }
                CmdArg::Param(..) => {}
            }
        }
        out
    }
}

/// Switches of the commands run here (they take no value).
fn is_switch(p: &str) -> bool {
    let p = p.to_ascii_lowercase();
    ["valueonly", "all", "noelement"]
        .iter()
        .any(|s| s.starts_with(&p) && p.len() >= 2)
}

/// Runs the command `name` with `args` on pipeline `input`, when it is one constant
/// evaluation understands.
pub(super) fn run(
    ev: &mut Evaluator,
    name: &str,
    args: Vec<CmdArg>,
    input: Option<Value>,
    base: usize,
) -> Option<Value> {
    let key = name.rsplit('\\').next().unwrap_or("").to_ascii_lowercase();
    let key = canonical_command(&key);
    let args = Args { args };
    match key.as_str() {
        "foreach-object" => for_each(ev, &args, input?, base),
        "where-object" => where_object(ev, &args, input?, base),
        "select-object" => select(&args, input?),
        "out-string" => Some(Value::Str(lines(&input?))),
        "write-output" => input.or_else(|| args.positional().into_iter().next()),
        "invoke-expression" => {
            let code = input
                .or_else(|| args.named("command", 1))
                .or_else(|| args.positional().into_iter().next())?;
            ev.runs(to_str(&code), "invoke-expression");
            Some(Value::Null)
        }
        "get-command" => {
            ev.layer("get-command");
            get_command(&args)
        }
        "get-alias" => {
            ev.layer("get-alias");
            get_alias(&args)
        }
        "get-variable" => {
            let pattern = args
                .named("name", 1)
                .or_else(|| args.positional().into_iter().next())?;
            let found = variables_named(ev, &to_str(&pattern), base);
            let value_only = args.named("valueonly", 2).is_some();
            pick_one(found, value_only)
        }
        "get-item" | "get-childitem" => {
            let path = args
                .named("path", 1)
                .or_else(|| args.positional().into_iter().next())?;
            let path = to_str(&path).to_ascii_lowercase();
            let (drive, pattern) = path.split_once(':')?;
            match drive {
                "variable" => pick_one(variables_named(ev, pattern, base), false),
                "env" => {
                    let found = ENV
                        .iter()
                        .filter(|(n, _)| glob_match(pattern, n))
                        .map(|(n, v)| item(n, Value::Str((*v).into())))
                        .collect();
                    pick_one_items(found)
                }
                _ => None,
            }
        }
        "new-object" => {
            let t = args
                .named("typename", 1)
                .or_else(|| args.positional().into_iter().next())?;
            let rest = match args.named("argumentlist", 1) {
                Some(a) => vec![a],
                None => args.positional().into_iter().skip(1).collect(),
            };
            dotnet::new_object(ev, &dotnet::type_name(&to_str(&t)), rest)
        }
        _ => None,
    }
}

/// `Get-Command name` or `Get-Command -Verb v -Noun n`: the one command they find.
fn get_command(args: &Args) -> Option<Value> {
    let part = |n: &str| args.named(n, 1).map(|v| to_str(&v).to_ascii_lowercase());
    let (verb, noun) = (part("verb"), part("noun"));
    if verb.is_none() && noun.is_none() {
        let pattern = args
            .named("name", 2)
            .or_else(|| args.positional().into_iter().next())?;
        return resolve_command_pattern(&to_str(&pattern)).map(Value::Command);
    }
    let hits: Vec<&str> = COMMANDS
        .iter()
        .copied()
        .filter(|c| {
            let (v, n) = c.split_once('-').unwrap_or((c, ""));
            let ok = |p: &Option<String>, s: &str| {
                p.as_ref()
                    .is_none_or(|p| glob_match(p, &s.to_ascii_lowercase()))
            };
            !n.is_empty() && ok(&verb, v) && ok(&noun, n)
        })
        .collect();
    match hits.as_slice() {
        [one] => Some(Value::Command((*one).to_string())),
        _ => None,
    }
}

/// `Get-Alias name` or `Get-Alias -Definition command`: the command the one alias found
/// stands for.
fn get_alias(args: &Args) -> Option<Value> {
    if let Some(def) = args.named("definition", 1) {
        let def = to_str(&def).to_ascii_lowercase();
        let targets: Vec<&str> = ALIASES
            .iter()
            .filter(|(_, t)| glob_match(&def, &t.to_ascii_lowercase()))
            .map(|(_, t)| *t)
            .collect();
        let first = *targets.first()?;
        return targets
            .iter()
            .all(|t| *t == first)
            .then(|| Value::Command(first.into()));
    }
    let pattern = args
        .named("name", 1)
        .or_else(|| args.positional().into_iter().next())?;
    let alias = resolve_command_pattern(&to_str(&pattern))?;
    Some(Value::Command(alias_target(&alias)?.to_string()))
}

/// A Get-Variable / Get-Item result as an object with Name and Value.
fn item(name: &str, value: Value) -> Value {
    Value::Hash(vec![
        ("Name".into(), Value::Str(name.into())),
        ("Value".into(), value),
    ])
}

/// The variables `pattern` names: the script's own (a plain name, as set before `at`),
/// else PowerShell's automatic ones (a name or a wildcard).
fn variables_named(ev: &mut Evaluator, pattern: &str, at: usize) -> Vec<Value> {
    let plain = !pattern.contains(['*', '?', '[']);
    if plain {
        if let Some(v) = ev.variable(pattern, at) {
            return vec![item(pattern, v)];
        }
    }
    variables_matching(pattern)
}

fn variables_matching(pattern: &str) -> Vec<Value> {
    let p = pattern.to_ascii_lowercase();
    VARIABLE_NAMES
        .iter()
        .filter(|n| glob_match(&p, &n.to_ascii_lowercase()))
        .map(|n| {
            item(
                n,
                automatic_variable(&n.to_ascii_lowercase()).unwrap_or(Value::Null),
            )
        })
        .collect()
}

fn pick_one(found: Vec<Value>, value_only: bool) -> Option<Value> {
    let v = pick_one_items(found)?;
    match (value_only, &v) {
        (true, Value::Hash(h)) => h.iter().find(|(k, _)| k == "Value").map(|(_, v)| v.clone()),
        _ => Some(v),
    }
}

fn pick_one_items(mut found: Vec<Value>) -> Option<Value> {
    match found.len() {
        0 => None,
        1 => found.pop(),
        _ => Some(Value::Array(found)),
    }
}

/// Out-String: each item on its own line.
fn lines(v: &Value) -> String {
    let mut s = match v {
        Value::Array(items) => items.iter().map(to_str).collect::<Vec<_>>().join("\r\n"),
        other => to_str(other),
    };
    s.push_str("\r\n");
    s
}

/// `ForEach-Object { ... }` (or `% MemberName`): the block per input item, `$_` bound.
fn for_each(ev: &mut Evaluator, args: &Args, input: Value, base: usize) -> Option<Value> {
    let what = args
        .named("process", 1)
        .or_else(|| args.positional().into_iter().next())?;
    let items = match input {
        Value::Array(items) => items,
        Value::Bytes { data, .. } => data.into_iter().map(|b| Value::Int(b.into())).collect(),
        other => vec![other],
    };
    let mut out = Vec::new();
    for it in items {
        if !ev.step() {
            return None;
        }
        match &what {
            Value::Block(body) => out.extend(run_block(ev, body, it, base)?),
            Value::Str(member) => out.push(dotnet::member(ev, it, member, None, false, base)?),
            _ => return None,
        }
    }
    Some(Value::Array(out))
}

/// `Where-Object { ... }`: the items for which the block's last output is true.
fn where_object(ev: &mut Evaluator, args: &Args, input: Value, base: usize) -> Option<Value> {
    let Value::Block(body) = args
        .named("filterscript", 1)
        .or_else(|| args.positional().into_iter().next())?
    else {
        return None;
    };
    let mut out = Vec::new();
    for it in dotnet_items(input) {
        let r = run_block(ev, &body, it.clone(), base)?;
        if r.last().is_some_and(dotnet::truthy) {
            out.push(it);
        }
    }
    Some(Value::Array(out))
}

fn dotnet_items(v: Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items,
        other => vec![other],
    }
}

/// `Select-Object -First n / -Last n / -Skip n / -Index i`.
fn select(args: &Args, input: Value) -> Option<Value> {
    let items = dotnet_items(input);
    let n = |v: Option<Value>| {
        v.and_then(|v| dotnet::to_int(&v))
            .and_then(|n| usize::try_from(n).ok())
    };
    let out: Vec<Value> = if let Some(k) = n(args.named("first", 1)) {
        items.into_iter().take(k).collect()
    } else if let Some(k) = n(args.named("last", 1)) {
        let skip = items.len().saturating_sub(k);
        items.into_iter().skip(skip).collect()
    } else if let Some(k) = n(args.named("skip", 1)) {
        items.into_iter().skip(k).collect()
    } else if let Some(k) = n(args.named("index", 1)) {
        items.into_iter().nth(k).into_iter().collect()
    } else {
        return None;
    };
    Some(Value::Array(out))
}

/// `*` and `?` wildcards, as Get-Command matches names (linear: greedy with one backtrack
/// point). Both sides as given: lowercase them first for a case-insensitive match.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(sp) = star {
            pi = sp + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// The command names (built-in commands and aliases) a pattern matches.
pub(super) fn matching_commands(pattern: &str) -> Vec<&'static str> {
    let p = pattern.trim().to_ascii_lowercase();
    COMMANDS
        .iter()
        .copied()
        .chain(ALIASES.iter().map(|(a, _)| *a))
        .filter(|c| glob_match(&p, &c.to_ascii_lowercase()))
        .collect()
}

/// What `Get-Command pattern` names: without wildcards the name itself (module qualifier
/// dropped); with them, the one built-in command or alias it matches (none when it matches
/// several or none).
pub fn resolve_command_pattern(pattern: &str) -> Option<String> {
    let p = pattern.trim();
    let p = p.rsplit('\\').next().unwrap_or(p);
    if p.is_empty() {
        return None;
    }
    if !p.contains(['*', '?', '[']) {
        let canonical = COMMANDS.iter().find(|c| c.eq_ignore_ascii_case(p));
        return Some(canonical.map_or(p.to_string(), |c| (*c).to_string()));
    }
    match matching_commands(p).as_slice() {
        [one] => Some((*one).to_string()),
        _ => None,
    }
}

/// A command name as PowerShell resolves it (lowercase): an alias to its command, and a
/// name no command has to `Get-<name>` when that is one (`variable` is `Get-Variable`).
pub(super) fn canonical_command(key: &str) -> String {
    if let Some(t) = alias_target(key) {
        return t.to_ascii_lowercase();
    }
    if COMMANDS.iter().any(|c| c.eq_ignore_ascii_case(key)) {
        return key.to_string();
    }
    let with_get = format!("get-{key}");
    if COMMANDS.iter().any(|c| c.eq_ignore_ascii_case(&with_get)) {
        return with_get;
    }
    key.to_string()
}

/// The command a built-in alias stands for.
pub(super) fn alias_target(alias: &str) -> Option<&'static str> {
    ALIASES
        .iter()
        .find(|(a, _)| a.eq_ignore_ascii_case(alias))
        .map(|(_, t)| *t)
}

/// The value of an automatic or environment variable on a stock Windows PowerShell 5.1
/// (key lowercase, without scope).
pub(super) fn automatic_variable(key: &str) -> Option<Value> {
    if let Some(name) = key.strip_prefix("env:") {
        return ENV
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| Value::Str((*v).into()));
    }
    let s = |v: &str| Some(Value::Str(v.into()));
    match key {
        "true" => Some(Value::Bool(true)),
        "false" => Some(Value::Bool(false)),
        "null" => Some(Value::Null),
        "shellid" => s("Microsoft.PowerShell"),
        "pshome" => s(r"C:\Windows\System32\WindowsPowerShell\v1.0"),
        "verbosepreference" | "debugpreference" | "informationpreference" => s("SilentlyContinue"),
        "erroractionpreference" | "warningpreference" | "progresspreference" => s("Continue"),
        "confirmpreference" => s("High"),
        "whatifpreference" => Some(Value::Bool(false)),
        "errorview" => s("NormalView"),
        "ofs" => s(" "),
        "maximumdrivecount"
        | "maximumaliascount"
        | "maximumfunctioncount"
        | "maximumvariablecount" => Some(Value::Int(4096)),
        "maximumerrorcount" => Some(Value::Int(256)),
        "maximumhistorycount" => Some(Value::Int(4096)),
        "formatenumerationlimit" => Some(Value::Int(4)),
        "executioncontext" => Some(Value::Object("executioncontext")),
        "psdefaultparametervalues" => Some(Value::Hash(Vec::new())),
        "pssessionapplicationname" => s("wsman"),
        "pssessionconfigurationname" => {
            s("http://schemas.microsoft.com/powershell/Microsoft.PowerShell")
        }
        "psculture" | "psuiculture" => s("en-US"),
        "nestedpromptlevel" => Some(Value::Int(0)),
        _ => None,
    }
}

/// Environment variables every Windows host has, with their usual values.
const ENV: &[(&str, &str)] = &[
    ("comspec", r"C:\WINDOWS\system32\cmd.exe"),
    ("public", r"C:\Users\Public"),
    ("windir", r"C:\WINDOWS"),
    ("systemroot", r"C:\WINDOWS"),
    ("systemdrive", "C:"),
    ("programdata", r"C:\ProgramData"),
    ("programfiles", r"C:\Program Files"),
    ("programfiles(x86)", r"C:\Program Files (x86)"),
    ("commonprogramfiles", r"C:\Program Files\Common Files"),
    ("allusersprofile", r"C:\ProgramData"),
    ("os", "Windows_NT"),
    (
        "pathext",
        ".COM;.EXE;.BAT;.CMD;.VBS;.VBE;.JS;.JSE;.WSF;.WSH;.MSC",
    ),
    ("processor_architecture", "AMD64"),
    ("number_of_processors", "4"),
];

/// The global variables of a new Windows PowerShell 5.1 session (what `Get-Variable`
/// patterns are matched against).
const VARIABLE_NAMES: &[&str] = &[
    "$",
    "?",
    "^",
    "args",
    "ConfirmPreference",
    "ConsoleFileName",
    "DebugPreference",
    "Error",
    "ErrorActionPreference",
    "ErrorView",
    "ExecutionContext",
    "false",
    "FormatEnumerationLimit",
    "HOME",
    "Host",
    "InformationPreference",
    "input",
    "MaximumAliasCount",
    "MaximumDriveCount",
    "MaximumErrorCount",
    "MaximumFunctionCount",
    "MaximumHistoryCount",
    "MaximumVariableCount",
    "MyInvocation",
    "NestedPromptLevel",
    "null",
    "OutputEncoding",
    "PID",
    "PROFILE",
    "ProgressPreference",
    "PSBoundParameters",
    "PSCommandPath",
    "PSCulture",
    "PSDefaultParameterValues",
    "PSEmailServer",
    "PSHOME",
    "PSScriptRoot",
    "PSSessionApplicationName",
    "PSSessionConfigurationName",
    "PSSessionOption",
    "PSUICulture",
    "PSVersionTable",
    "PWD",
    "ShellId",
    "StackTrace",
    "true",
    "VerbosePreference",
    "WarningPreference",
    "WhatIfPreference",
];

/// Built-in commands of Windows PowerShell 5.1's default modules (and the common ones of
/// PowerShell 7), for wildcard matching.
const COMMANDS: &[&str] = &[
    // Microsoft.PowerShell.Core
    "Add-History",
    "Add-PSSnapin",
    "Clear-History",
    "Connect-PSSession",
    "Debug-Job",
    "Disable-PSRemoting",
    "Disable-PSSessionConfiguration",
    "Disconnect-PSSession",
    "Enable-PSRemoting",
    "Enable-PSSessionConfiguration",
    "Enter-PSHostProcess",
    "Enter-PSSession",
    "Exit-PSHostProcess",
    "Exit-PSSession",
    "Export-Console",
    "Export-ModuleMember",
    "ForEach-Object",
    "Get-Command",
    "Get-Help",
    "Get-History",
    "Get-Job",
    "Get-Module",
    "Get-PSHostProcessInfo",
    "Get-PSSession",
    "Get-PSSessionCapability",
    "Get-PSSessionConfiguration",
    "Get-PSSnapin",
    "Import-Module",
    "Invoke-Command",
    "Invoke-History",
    "New-Module",
    "New-ModuleManifest",
    "New-PSRoleCapabilityFile",
    "New-PSSession",
    "New-PSSessionConfigurationFile",
    "New-PSSessionOption",
    "New-PSTransportOption",
    "Out-Default",
    "Out-Host",
    "Out-Null",
    "Receive-Job",
    "Receive-PSSession",
    "Register-ArgumentCompleter",
    "Register-PSSessionConfiguration",
    "Remove-Job",
    "Remove-Module",
    "Remove-PSSession",
    "Remove-PSSnapin",
    "Resume-Job",
    "Save-Help",
    "Set-PSDebug",
    "Set-PSSessionConfiguration",
    "Set-StrictMode",
    "Start-Job",
    "Stop-Job",
    "Suspend-Job",
    "Test-ModuleManifest",
    "Test-PSSessionConfigurationFile",
    "Unregister-PSSessionConfiguration",
    "Update-Help",
    "Wait-Job",
    "Where-Object",
    "Clear-Host",
    "Get-Verb",
    "help",
    "mkdir",
    "more",
    "oss",
    "Pause",
    "prompt",
    "TabExpansion2",
    // Microsoft.PowerShell.Utility
    "Add-Member",
    "Add-Type",
    "Clear-Variable",
    "Compare-Object",
    "ConvertFrom-Csv",
    "ConvertFrom-Json",
    "ConvertFrom-String",
    "ConvertFrom-StringData",
    "Convert-String",
    "ConvertTo-Csv",
    "ConvertTo-Html",
    "ConvertTo-Json",
    "ConvertTo-Xml",
    "Debug-Runspace",
    "Disable-PSBreakpoint",
    "Disable-RunspaceDebug",
    "Enable-PSBreakpoint",
    "Enable-RunspaceDebug",
    "Export-Alias",
    "Export-Clixml",
    "Export-Csv",
    "Export-FormatData",
    "Export-PSSession",
    "Format-Custom",
    "Format-Hex",
    "Format-List",
    "Format-Table",
    "Format-Wide",
    "Get-Alias",
    "Get-Culture",
    "Get-Date",
    "Get-Event",
    "Get-EventSubscriber",
    "Get-FileHash",
    "Get-FormatData",
    "Get-Host",
    "Get-Member",
    "Get-PSBreakpoint",
    "Get-PSCallStack",
    "Get-Random",
    "Get-Runspace",
    "Get-RunspaceDebug",
    "Get-TraceSource",
    "Get-TypeData",
    "Get-UICulture",
    "Get-Unique",
    "Get-Variable",
    "Group-Object",
    "Import-Alias",
    "Import-Clixml",
    "Import-Csv",
    "Import-LocalizedData",
    "Import-PowerShellDataFile",
    "Import-PSSession",
    "Invoke-Expression",
    "Invoke-RestMethod",
    "Invoke-WebRequest",
    "Measure-Command",
    "Measure-Object",
    "New-Alias",
    "New-Event",
    "New-Guid",
    "New-Object",
    "New-TemporaryFile",
    "New-TimeSpan",
    "New-Variable",
    "Out-File",
    "Out-GridView",
    "Out-Printer",
    "Out-String",
    "Read-Host",
    "Register-EngineEvent",
    "Register-ObjectEvent",
    "Remove-Event",
    "Remove-PSBreakpoint",
    "Remove-TypeData",
    "Remove-Variable",
    "Select-Object",
    "Select-String",
    "Select-Xml",
    "Send-MailMessage",
    "Set-Alias",
    "Set-Date",
    "Set-PSBreakpoint",
    "Set-TraceSource",
    "Set-Variable",
    "Show-Command",
    "Sort-Object",
    "Start-Sleep",
    "Tee-Object",
    "Trace-Command",
    "Unblock-File",
    "Unregister-Event",
    "Update-FormatData",
    "Update-List",
    "Update-TypeData",
    "Wait-Debugger",
    "Wait-Event",
    "Write-Debug",
    "Write-Error",
    "Write-Host",
    "Write-Information",
    "Write-Output",
    "Write-Progress",
    "Write-Verbose",
    "Write-Warning",
    // Microsoft.PowerShell.Management
    "Add-Computer",
    "Add-Content",
    "Checkpoint-Computer",
    "Clear-Content",
    "Clear-EventLog",
    "Clear-Item",
    "Clear-ItemProperty",
    "Clear-RecycleBin",
    "Complete-Transaction",
    "Convert-Path",
    "Copy-Item",
    "Copy-ItemProperty",
    "Debug-Process",
    "Disable-ComputerRestore",
    "Enable-ComputerRestore",
    "Get-ChildItem",
    "Get-Clipboard",
    "Get-ComputerInfo",
    "Get-ComputerRestorePoint",
    "Get-Content",
    "Get-ControlPanelItem",
    "Get-EventLog",
    "Get-HotFix",
    "Get-Item",
    "Get-ItemProperty",
    "Get-ItemPropertyValue",
    "Get-Location",
    "Get-Process",
    "Get-PSDrive",
    "Get-PSProvider",
    "Get-Service",
    "Get-TimeZone",
    "Get-Transaction",
    "Get-WmiObject",
    "Invoke-Item",
    "Invoke-WmiMethod",
    "Join-Path",
    "Limit-EventLog",
    "Move-Item",
    "Move-ItemProperty",
    "New-EventLog",
    "New-Item",
    "New-ItemProperty",
    "New-PSDrive",
    "New-Service",
    "New-WebServiceProxy",
    "Pop-Location",
    "Push-Location",
    "Register-WmiEvent",
    "Remove-Computer",
    "Remove-EventLog",
    "Remove-Item",
    "Remove-ItemProperty",
    "Remove-PSDrive",
    "Remove-WmiObject",
    "Rename-Computer",
    "Rename-Item",
    "Rename-ItemProperty",
    "Reset-ComputerMachinePassword",
    "Resolve-Path",
    "Restart-Computer",
    "Restart-Service",
    "Restore-Computer",
    "Resume-Service",
    "Set-Clipboard",
    "Set-Content",
    "Set-Item",
    "Set-ItemProperty",
    "Set-Location",
    "Set-Service",
    "Set-TimeZone",
    "Set-WmiInstance",
    "Show-ControlPanelItem",
    "Show-EventLog",
    "Split-Path",
    "Start-Process",
    "Start-Service",
    "Start-Transaction",
    "Stop-Computer",
    "Stop-Process",
    "Stop-Service",
    "Suspend-Service",
    "Test-ComputerSecureChannel",
    "Test-Connection",
    "Test-Path",
    "Undo-Transaction",
    "Use-Transaction",
    "Wait-Process",
    "Write-EventLog",
    // Microsoft.PowerShell.Security, Host, WSMan, CimCmdlets
    "ConvertFrom-SecureString",
    "ConvertTo-SecureString",
    "Get-Acl",
    "Get-AuthenticodeSignature",
    "Get-CmsMessage",
    "Get-Credential",
    "Get-ExecutionPolicy",
    "Get-PfxCertificate",
    "Protect-CmsMessage",
    "Set-Acl",
    "Set-AuthenticodeSignature",
    "Set-ExecutionPolicy",
    "Unprotect-CmsMessage",
    "Start-Transcript",
    "Stop-Transcript",
    "Connect-WSMan",
    "Disconnect-WSMan",
    "Get-WSManCredSSP",
    "Get-WSManInstance",
    "Invoke-WSManAction",
    "New-WSManInstance",
    "New-WSManSessionOption",
    "Remove-WSManInstance",
    "Set-WSManInstance",
    "Set-WSManQuickConfig",
    "Test-WSMan",
    "Enable-WSManCredSSP",
    "Disable-WSManCredSSP",
    "Get-CimAssociatedInstance",
    "Get-CimClass",
    "Get-CimInstance",
    "Get-CimSession",
    "Invoke-CimMethod",
    "New-CimInstance",
    "New-CimSession",
    "New-CimSessionOption",
    "Register-CimIndicationEvent",
    "Remove-CimInstance",
    "Remove-CimSession",
    "Set-CimInstance",
    // Hyper-V sessions
    "Get-VM",
    "Start-VM",
    "Stop-VM",
    "Get-VMIntegrationService",
];

/// The default aliases of Windows PowerShell 5.1 and what they stand for.
const ALIASES: &[(&str, &str)] = &[
    ("%", "ForEach-Object"),
    ("?", "Where-Object"),
    ("ac", "Add-Content"),
    ("cat", "Get-Content"),
    ("cd", "Set-Location"),
    ("chdir", "Set-Location"),
    ("clc", "Clear-Content"),
    ("clear", "Clear-Host"),
    ("clhy", "Clear-History"),
    ("cli", "Clear-Item"),
    ("clp", "Clear-ItemProperty"),
    ("cls", "Clear-Host"),
    ("clv", "Clear-Variable"),
    ("cnsn", "Connect-PSSession"),
    ("compare", "Compare-Object"),
    ("copy", "Copy-Item"),
    ("cp", "Copy-Item"),
    ("cpi", "Copy-Item"),
    ("cpp", "Copy-ItemProperty"),
    ("curl", "Invoke-WebRequest"),
    ("cvpa", "Convert-Path"),
    ("dbp", "Disable-PSBreakpoint"),
    ("del", "Remove-Item"),
    ("diff", "Compare-Object"),
    ("dir", "Get-ChildItem"),
    ("dnsn", "Disconnect-PSSession"),
    ("ebp", "Enable-PSBreakpoint"),
    ("echo", "Write-Output"),
    ("epal", "Export-Alias"),
    ("epcsv", "Export-Csv"),
    ("epsn", "Export-PSSession"),
    ("erase", "Remove-Item"),
    ("etsn", "Enter-PSSession"),
    ("exsn", "Exit-PSSession"),
    ("fc", "Format-Custom"),
    ("fhx", "Format-Hex"),
    ("fl", "Format-List"),
    ("foreach", "ForEach-Object"),
    ("ft", "Format-Table"),
    ("fw", "Format-Wide"),
    ("gal", "Get-Alias"),
    ("gbp", "Get-PSBreakpoint"),
    ("gc", "Get-Content"),
    ("gcb", "Get-Clipboard"),
    ("gci", "Get-ChildItem"),
    ("gcm", "Get-Command"),
    ("gcs", "Get-PSCallStack"),
    ("gdr", "Get-PSDrive"),
    ("ghy", "Get-History"),
    ("gi", "Get-Item"),
    ("gin", "Get-ComputerInfo"),
    ("gjb", "Get-Job"),
    ("gl", "Get-Location"),
    ("gm", "Get-Member"),
    ("gmo", "Get-Module"),
    ("gp", "Get-ItemProperty"),
    ("gps", "Get-Process"),
    ("gpv", "Get-ItemPropertyValue"),
    ("group", "Group-Object"),
    ("gsn", "Get-PSSession"),
    ("gsnp", "Get-PSSnapin"),
    ("gsv", "Get-Service"),
    ("gtz", "Get-TimeZone"),
    ("gu", "Get-Unique"),
    ("gv", "Get-Variable"),
    ("gwmi", "Get-WmiObject"),
    ("h", "Get-History"),
    ("history", "Get-History"),
    ("icm", "Invoke-Command"),
    ("iex", "Invoke-Expression"),
    ("ihy", "Invoke-History"),
    ("ii", "Invoke-Item"),
    ("ipal", "Import-Alias"),
    ("ipcsv", "Import-Csv"),
    ("ipmo", "Import-Module"),
    ("ipsn", "Import-PSSession"),
    ("irm", "Invoke-RestMethod"),
    ("iwmi", "Invoke-WmiMethod"),
    ("iwr", "Invoke-WebRequest"),
    ("kill", "Stop-Process"),
    ("ls", "Get-ChildItem"),
    ("man", "help"),
    ("md", "mkdir"),
    ("measure", "Measure-Object"),
    ("mi", "Move-Item"),
    ("mount", "New-PSDrive"),
    ("move", "Move-Item"),
    ("mp", "Move-ItemProperty"),
    ("mv", "Move-Item"),
    ("nal", "New-Alias"),
    ("ndr", "New-PSDrive"),
    ("ni", "New-Item"),
    ("nmo", "New-Module"),
    ("npssc", "New-PSSessionConfigurationFile"),
    ("nsn", "New-PSSession"),
    ("nv", "New-Variable"),
    ("ogv", "Out-GridView"),
    ("oh", "Out-Host"),
    ("popd", "Pop-Location"),
    ("ps", "Get-Process"),
    ("pushd", "Push-Location"),
    ("pwd", "Get-Location"),
    ("r", "Invoke-History"),
    ("rbp", "Remove-PSBreakpoint"),
    ("rcjb", "Receive-Job"),
    ("rcsn", "Receive-PSSession"),
    ("rd", "Remove-Item"),
    ("rdr", "Remove-PSDrive"),
    ("ren", "Rename-Item"),
    ("ri", "Remove-Item"),
    ("rjb", "Remove-Job"),
    ("rm", "Remove-Item"),
    ("rmdir", "Remove-Item"),
    ("rmo", "Remove-Module"),
    ("rni", "Rename-Item"),
    ("rnp", "Rename-ItemProperty"),
    ("rp", "Remove-ItemProperty"),
    ("rsn", "Remove-PSSession"),
    ("rsnp", "Remove-PSSnapin"),
    ("rujb", "Resume-Job"),
    ("rv", "Remove-Variable"),
    ("rvpa", "Resolve-Path"),
    ("rwmi", "Remove-WmiObject"),
    ("sajb", "Start-Job"),
    ("sal", "Set-Alias"),
    ("saps", "Start-Process"),
    ("sasv", "Start-Service"),
    ("sbp", "Set-PSBreakpoint"),
    ("sc", "Set-Content"),
    ("scb", "Set-Clipboard"),
    ("select", "Select-Object"),
    ("set", "Set-Variable"),
    ("shcm", "Show-Command"),
    ("si", "Set-Item"),
    ("sl", "Set-Location"),
    ("sleep", "Start-Sleep"),
    ("sls", "Select-String"),
    ("sort", "Sort-Object"),
    ("sp", "Set-ItemProperty"),
    ("spjb", "Stop-Job"),
    ("spps", "Stop-Process"),
    ("spsv", "Stop-Service"),
    ("start", "Start-Process"),
    ("stz", "Set-TimeZone"),
    ("sujb", "Suspend-Job"),
    ("sv", "Set-Variable"),
    ("swmi", "Set-WmiInstance"),
    ("tee", "Tee-Object"),
    ("trcm", "Trace-Command"),
    ("type", "Get-Content"),
    ("wget", "Invoke-WebRequest"),
    ("where", "Where-Object"),
    ("wjb", "Wait-Job"),
    ("write", "Write-Output"),
];
