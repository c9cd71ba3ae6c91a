//! What mode extended reads, form by form (issue 14's list): each case a short script of
//! my own with the session PowerShell would open, or none, and for the obfuscated ones the
//! command line and layers an analyst sees. Payloads were encoded with Python (base64,
//! zlib raw deflate, gzip), not with this code.

use pssession_core::pwsh::{sessions, Session};

fn remote(script: &str) -> Vec<Session> {
    sessions(script, Some("ws01"))
        .into_iter()
        .filter(|s| !s.local)
        .collect()
}

/// The one remote session of `script`, with its command line.
fn one(script: &str) -> Session {
    let found = remote(script);
    assert_eq!(found.len(), 1, "{script}\n{found:#?}");
    found.into_iter().next().unwrap_or_else(|| unreachable!())
}

fn none(script: &str) {
    let found = remote(script);
    assert!(found.is_empty(), "{script}\n{found:#?}");
}

#[test]
fn names_built_at_run_time_and_invoked() {
    for script in [
        "& ('Ent'+'er-PS'+'Session') -ComputerName app7",
        ". (\"{2}{0}{1}\" -f 'r-PSSes','sion','Ente') -ComputerName app7",
        "& (('E','n','t','e','r','-','P','S','S','e','s','s','i','o','n') -join '') -ComputerName app7",
        "& ([string]::Join('', @('Enter-','PSSession'))) -ComputerName app7",
        "& ('EnZZter-PSSeZZssion' -replace 'ZZ') -ComputerName app7",
        "& ('En#ter-PS#Session'.Replace('#','')) -ComputerName app7",
        "& (-join 'noisseSSP-retnE'[-1..-15]) -ComputerName app7",
        "$n = [char[]]'noisseSSP-retnE'; [array]::Reverse($n); & (-join $n) -ComputerName app7",
        "& (-join ([regex]::Matches('noisseSSP-retnE','.','RightToLeft') | % { $_.Value })) -ComputerName app7",
        "& ([string]([char]69+[char]110+[char]116+[char]101+[char]114+'-PSSession')) -ComputerName app7",
        "& (-join [char[]](69,110,116,101,114,45,80,83,83,101,115,115,105,111,110)) -ComputerName app7",
        "& ('xxEnter-PSSessionxx'.Substring(2,15)) -ComputerName app7",
        "& ('ENTER-PSSESSION'.ToLower()) -ComputerName app7",
    ] {
        let s = one(script);
        assert_eq!(s.command_line, "Enter-PSSession -ComputerName app7", "{script}");
    }
}

#[test]
fn the_character_picks_that_spell_iex() {
    for pick in [
        "$ShellId[1]+$ShellId[13]+'x'",
        "$PSHome[4]+$PSHome[30]+'x'",
        "$env:ComSpec[4,15,25]-join''",
        "($VerbosePreference.ToString())[1,3]+'x'-join''",
        "(gv '*mdr*').Name[3,11,2]-join''",
    ] {
        let s = one(&format!("& ({pick}) 'etsn db2'"));
        assert_eq!(
            s.command_line, "Enter-PSSession -ComputerName db2",
            "{pick}"
        );
        let s = one(&format!("'etsn db2' | .({pick})"));
        assert_eq!(
            s.command_line, "Enter-PSSession -ComputerName db2",
            "{pick}"
        );
    }
}

#[test]
fn commands_fetched_as_objects() {
    for script in [
        "& (Get-Command Enter-PSSession) -ComputerName app7",
        "& (gcm E?ter-PSSess?on) -ComputerName app7",
        "& (Get-Command -Verb Enter -Noun PSSession) -ComputerName app7",
        "& (Get-Alias etsn) -ComputerName app7",
        "& $ExecutionContext.InvokeCommand.GetCommand('Enter-PSSession','Cmdlet') -ComputerName app7",
        "& $ExecutionContext.InvokeCommand.GetCmdlet('Enter-PSSession') -ComputerName app7",
        "& $ExecutionContext.InvokeCommand.GetCommandName('Ent*-PSSess*',$true,$true) -ComputerName app7",
        "$ExecutionContext.InvokeCommand.InvokeScript('Enter-PSSession -ComputerName app7')",
        "[scriptblock]::Create('Enter-PSSession -ComputerName app7').Invoke()",
        "$sb = [scriptblock]::Create('Enter-PSSession -ComputerName app7'); & $sb",
        "$sb = [scriptblock]::Create('Enter-PSSession -ComputerName app7'); Invoke-Command -ScriptBlock $sb",
    ] {
        let s = one(script);
        assert_eq!(s.command_line, "Enter-PSSession -ComputerName app7", "{script}");
    }
    // a wildcard that also matches Register- and Unregister-PSSessionConfiguration gets
    // three commands, which & cannot run
    none("& (gcm *ter-pss*) -ComputerName app7");
    // run remotely, the block opens no session here
    none("$sb = [scriptblock]::Create('Enter-PSSession -ComputerName app7'); Invoke-Command -ComputerName h1 -ScriptBlock $sb");
}

#[test]
fn payloads_the_script_decodes_and_runs() {
    // base64 of UTF-16LE "Enter-PSSession -ComputerName web01"
    let u16 = "RQBuAHQAZQByAC0AUABTAFMAZQBzAHMAaQBvAG4AIAAtAEMAbwBtAHAAdQB0AGUAcgBOAGEAbQBlACAAdwBlAGIAMAAxAA==";
    let s = one(&format!(
        "iex ([Text.Encoding]::Unicode.GetString([Convert]::FromBase64String('{u16}')))"
    ));
    assert_eq!(s.command_line, "Enter-PSSession -ComputerName web01");
    assert_eq!(s.layers, ["base64-utf16le", "invoke-expression"]);
    // raw deflate of the same command, base64
    let deflate = "c80rSS3SDQgOTi0uzszPU9B1zs8tKAWK+SXmpiqUpyYZGAIA";
    let s = one(&format!("IEX (New-Object IO.StreamReader((New-Object IO.Compression.DeflateStream([IO.MemoryStream][Convert]::FromBase64String('{deflate}'),[IO.Compression.CompressionMode]::Decompress)),[Text.Encoding]::ASCII)).ReadToEnd()"));
    assert_eq!(s.layers, ["base64", "deflate", "invoke-expression"]);
    let gzip = "H4sIAAAAAAACA3PNK0kt0g0IDk4tLs7Mz1PQdc7PLSgFivkl5qYqlKcmGRgCAAROxagjAAAA";
    let s = one(&format!("$m = New-Object IO.MemoryStream(,[Convert]::FromBase64String('{gzip}'))\n$g = New-Object IO.Compression.GZipStream($m, [IO.Compression.CompressionMode]::Decompress)\n(New-Object IO.StreamReader($g)).ReadToEnd() | Invoke-Expression"));
    assert!(s.layers.contains(&"gzip".to_string()), "{:?}", s.layers);
    // -bxor 0x5A over the command's bytes
    let s = one("iex (-join ('31,52,46,63,40,119,10,9,9,63,41,41,51,53,52,122,119,25,53,55,42,47,46,63,40,20,59,55,63,122,45,63,56,106,107' -split ',' | % { [char]([int]$_ -bxor 0x5A) }))");
    assert_eq!(s.command_line, "Enter-PSSession -ComputerName web01");
    // powershell -EncodedCommand of a base64 string put together at run time
    let half = u16.len() / 2;
    let s = one(&format!(
        "$e = '{}' + '{}'; powershell.exe -NoP -EncodedCommand $e",
        &u16[..half],
        &u16[half..]
    ));
    assert_eq!(s.command_line, "Enter-PSSession -ComputerName web01");
    // cmd starting PowerShell (Invoke-Obfuscation's launchers); cmd's own commands are not read
    let s = one("cmd.exe /c \"powershell -c Enter-PSSession web01\"");
    assert_eq!(s.layers, ["cmd-command", "powershell-command"]);
    one("cmd /c powershell -nop -c \"etsn web01\"");
    none("cmd /c \"etsn web01\"");
    none("cmd /c echo Enter-PSSession web01");
}

#[test]
fn the_scripts_own_definitions() {
    // a function of that name runs instead of the cmdlet, the alias etsn included
    none("function Enter-PSSession { param($ComputerName) Write-Host $ComputerName }\nEnter-PSSession -ComputerName app7");
    none("filter Enter-PSSession { $_ }\netsn app7");
    // a proxy calling the module-qualified cmdlet still opens the session
    let proxy = "function Enter-PSSession { param($ComputerName) Microsoft.PowerShell.Core\\Enter-PSSession -ComputerName $ComputerName }\nEnter-PSSession -ComputerName app7";
    assert!(!remote(proxy).is_empty());
    // called before the function is defined: the cmdlet runs
    one("Enter-PSSession -ComputerName app7\nfunction Enter-PSSession { }");
    // a Pester mock replaces the cmdlet for the whole test, calls in functions included
    none("function Connect { param($N) Enter-PSSession -ComputerName $N }\nMock Enter-PSSession { }\nConnect -N app7");
    // removed again before the call: the cmdlet runs
    one("function Enter-PSSession { }\nRemove-Item Function:\\Enter-PSSession\nEnter-PSSession -ComputerName app7");
    // etsn re-pointed elsewhere before it is used, and an alias of one's own
    none("Set-Alias etsn Get-Date\netsn app7");
    one("etsn app7\nSet-Alias etsn Get-Date");
    one("Set-Alias -Name hop -Value ('Enter-' + 'PSSession')\nhop app7");
    // default parameter values supply the target
    let s =
        one("$PSDefaultParameterValues['Enter-PSSession:ComputerName'] = 'app7'\nEnter-PSSession");
    assert_eq!(s.command_line, "Enter-PSSession -ComputerName app7");
    // variables set and read through the variable cmdlets
    one("sv x 'Enter-PSSession'; & (gv x -ValueOnly) -ComputerName web01");
    one("Set-Variable -Name c -Value ('Enter'+'-PSSession') -Scope Script\n& (Get-Variable c).Value web01");
    one("New-Variable -Value Enter-PSSession -Name c\n& (Get-Item Variable:c).Value web01");
    none("sv x 'Get-Date'; & (gv x -ValueOnly) web01");
    // aliases the script makes for Invoke-Expression
    one("Set-Alias x Invoke-Expression; x 'etsn web01'");
    one("nal -Name run -Value iex\nrun ('Enter-PSSession' + ' web01')");
    none("Set-Alias x Write-Output; x 'etsn web01'");
    // scope-qualified functions, functions set through the function: drive, aliases removed
    none("function global:Enter-PSSession { 'x' }\nEnter-PSSession web01");
    none("${function:Enter-PSSession} = { 'x' }\nEnter-PSSession web01");
    one("$function:f = { etsn web01 }\nf");
    none("Remove-Item Alias:etsn -Force\netsn web01");
    none("del alias:\\etsn\netsn web01");
    one("Remove-Item Alias:etsn\nEnter-PSSession web01");
}

#[test]
fn a_functions_parameters_are_bound_at_its_calls() {
    // a wrapper never called opens nothing, in either form of parameter list
    none("function Connect($h) { Enter-PSSession $h }");
    none("function Connect { param($h) Enter-PSSession -ComputerName $h }");
    // called with this computer: local; with another: remote, named or positional
    none("function Connect { param($h) Enter-PSSession $h }\nConnect localhost");
    none("function c { param([string]$Computer) etsn -cn $Computer }\nc -Comp $env:COMPUTERNAME");
    let s = one("function Connect { param($h) Enter-PSSession $h }\nConnect web01");
    assert_eq!(s.target.text(), "web01");
    assert_eq!(s.command_line, "Enter-PSSession -ComputerName web01");
    let s = one(
        "function Connect([switch]$Force, $Name, $Port = 5985) {\n  Enter-PSSession -ComputerName $Name -Port $Port\n}\nConnect -Force ('db'+'01')",
    );
    assert_eq!(s.target.text(), "db01");
    // one call with a remote value is enough, whatever the others give
    let s = one("function c { param($Computer) etsn -cn $Computer }\nc -Comp .\nc -Computer sql02");
    assert_eq!(s.target.text(), "sql02");
    // a proxy named Enter-PSSession, reached through etsn, forwarding its parameter
    none("function Enter-PSSession { param($ComputerName) Microsoft.PowerShell.Core\\Enter-PSSession -ComputerName $ComputerName }\netsn .");
    let s = one("function Enter-PSSession { param($ComputerName) Microsoft.PowerShell.Core\\Enter-PSSession -ComputerName $ComputerName }\netsn app7");
    assert_eq!(s.target.text(), "app7");
    // a proxy forwarding @PSBoundParameters, with attributes before param()
    let proxy = "function Enter-PSSession {\n  [CmdletBinding()]\n  param([Parameter(Position = 0)][Alias('Cn')][string]$ComputerName, [pscredential]$Credential)\n  Microsoft.PowerShell.Core\\Enter-PSSession @PSBoundParameters\n}\n";
    let s = one(&format!(
        "{proxy}Enter-PSSession -ComputerName sql15 -Credential $c"
    ));
    assert_eq!(
        s.command_line,
        "Enter-PSSession -ComputerName sql15 -Credential $c"
    );
    let s = one(&format!("{proxy}etsn ('bkp'+'12')"));
    assert_eq!(s.command_line, "Enter-PSSession -ComputerName bkp12");
    none(&format!("{proxy}etsn localhost"));
    // a script block kept in a variable and called with & takes its arguments the same way
    none("$sb = { param($h) Enter-PSSession -ComputerName $h }; & $sb localhost");
    let s = one("$sb = { param($h) Enter-PSSession -ComputerName $h }\n& $sb -h web01");
    assert_eq!(s.target.text(), "web01");
}

#[test]
fn splatting() {
    let s = one("$p = @{ ComputerName = 'app7'; Port = 5986 }\nEnter-PSSession @p -UseSSL");
    assert_eq!(
        s.command_line,
        "Enter-PSSession -ComputerName app7 -Port 5986 -UseSSL"
    );
    let s = one("$p = @{}\n$p.HostName = 'app7'\n$p['UserName'] = 'ops'\nEnter-PSSession @p");
    assert_eq!(
        s.command_line,
        "Enter-PSSession -HostName app7 -UserName ops"
    );
    // the explicit parameter wins over the splatted one (PowerShell 7.1)
    let s = one("$p = @{ ComputerName = 'localhost' }\nEnter-PSSession @p -ComputerName app7");
    assert_eq!(s.command_line, "Enter-PSSession -ComputerName app7");
    // an array does not bind to the single ComputerName; two targets are two sets
    none("$p = @{ ComputerName = 'app7','app8' }\nEnter-PSSession @p");
    none("$p = @{ ComputerName = 'app7'; VMName = 'lab' }\nEnter-PSSession @p");
    assert!(remote("$p = @{ ComputerName = 'localhost' }\nEnter-PSSession @p").is_empty());
    // a one-element array, and a key computed at run time
    let s = one("$p = @('10.56.111.16')\nEnter-PSSession @p");
    assert_eq!(s.command_line, "Enter-PSSession -ComputerName 10.56.111.16");
    let s = one("$c = @{ ('Co'+'m'+'puterName') = 'sccm08'; Port = 5985 }\nEnter-PSSession @c");
    assert_eq!(
        s.command_line,
        "Enter-PSSession -ComputerName sccm08 -Port 5985"
    );
    // an entry added with .Add()
    let s = one("$s = @{ Comp = 'ca02' }\n$s.Add('UseSSL', $true)\netsn @s");
    assert_eq!(s.command_line, "Enter-PSSession -ComputerName ca02 -UseSSL");
    // strings piped in bind to ComputerName by value
    let s = one("'web28.lab', 'vpn28' | Enter-PSSession");
    assert_eq!(s.command_line, "Enter-PSSession -ComputerName web28.lab");
    none("'localhost' | Enter-PSSession");
}

#[test]
fn control_flow() {
    none("function Quit { exit 1 }\nQuit\nEnter-PSSession -ComputerName app7");
    one("function Leave { return }\nLeave\nEnter-PSSession -ComputerName app7");
    none("try { throw 'no' ; Enter-PSSession -ComputerName app7 } catch { Write-Warning $_ }");
    one("try { throw 'no' } catch { Enter-PSSession -ComputerName app7 }");
    one("trap { continue }\nthrow 'x'\nEnter-PSSession -ComputerName app7");
    none("throw 'x'\nEnter-PSSession -ComputerName app7");
    none("if (1) { return }\nEnter-PSSession -ComputerName app7");
    none("$go = @{ a = { Get-Date }; b = { Enter-PSSession -ComputerName app7 } }\n& $go['a']");
    one("$go = @{ a = { Get-Date }; b = { Enter-PSSession -ComputerName app7 } }\n& $go.b");
    none("$s = New-PSSession -ComputerName app7\nRemove-PSSession $s\nEnter-PSSession -Session $s");
    one("$s = New-PSSession -ComputerName app7\nEnter-PSSession -Session $s\nRemove-PSSession $s");
    none("if ($false) { etsn app7 } elseif (0) { etsn app8 }");
    one("if ($false) { etsn app7 } else { etsn app8 }");
    none("switch ('x') { 'y' { etsn app7 } }");
    none("while ($false) { etsn app7 }");
    none("for ($i = 3; $i -lt 2; $i++) { etsn app7 }");
    none("foreach ($h in @()) { etsn $h }");
    none("@() | ForEach-Object { etsn app7 }");
    one("$null | ForEach-Object { etsn app7 }");
    // errors that end a block: Write-Error under Stop, a numeric cast that cannot convert
    none("$ErrorActionPreference = 'Stop'\nWrite-Error 'no'\netsn app7");
    none("Write-Error 'no' -ErrorAction Stop\netsn app7");
    none("Write-Error 'no' -EA:Stop\netsn app7");
    one("Write-Error 'no'\netsn app7");
    one("$ErrorActionPreference = 'Continue'\nWrite-Error 'no'\netsn app7");
    one("trap { continue }\n$ErrorActionPreference = 'Stop'\nWrite-Error 'no'\netsn app7");
    one("function f { $ErrorActionPreference = 'Stop' }\nWrite-Error 'no'\netsn app7");
    none("try {\n  $n = [int]'abc'\n  etsn app7\n} catch { }");
    none("try { $n = [Int32] \"none\"; etsn app7 } catch { }");
    one("try {\n  $n = [int]'12'\n  etsn app7\n} catch { }");
    one("try {\n  $n = [int]''\n  etsn app7\n} catch { }");
    one("try { $n = [string]'abc'; etsn app7 } catch { }");
    // outside try a failed cast ends only its own statement
    one("$n = [int]'abc'\netsn app7");
    // break or continue outside any loop stops the script; a function that surely throws
    // (or exits) does so where it is called
    none("break\netsn app7");
    none("continue\netsn app7");
    none("function f { throw 'x' }\nf\netsn app7");
    one("function f { throw 'x' }\ntry { f } catch { }\netsn app7");
    none("function f { exit }\nif (Test-Path x) { f; etsn app7 }");
    none("switch (1) { 1 { exit } }\netsn app7");
    one("switch (2) { 1 { exit } }\netsn app7");
}

#[test]
fn tokenizer_details() {
    // en dash, em dash and horizontal bar are dashes; U+2212 is not
    for dash in ['\u{2013}', '\u{2014}', '\u{2015}'] {
        one(&format!("Enter-PSSession {dash}ComputerName app7"));
    }
    none("Enter-PSSession \u{2212}ComputerName app7 \u{2212}Credential $c");
    // typographic quotes are quotes
    one("Enter-PSSession -ComputerName \u{2018}app7\u{2019}");
    one("& (\u{201C}Enter-\u{201D} + \u{201C}PSSession\u{201D}) app7");
    // backtick escapes in bare words: `t and `n change the word, others are the letter
    one("E`NTER-P`S`Se`ssi`on app7");
    none("En`ter-PSSession app7");
    none("E`nter-PSSession app7");
    // a no-break space separates words
    one("Enter-PSSession\u{a0}-ComputerName\u{a0}app7");
    // an array to the single-valued ComputerName fails to bind
    none("Enter-PSSession -ComputerName app7,app8");
    // a colon and a space: the next argument is the value, a switch's too
    let s = one("Enter-PSSession -ComputerName: 10.254.145.90 -Port 5985");
    assert_eq!(
        s.command_line,
        "Enter-PSSession -ComputerName 10.254.145.90 -Port 5985"
    );
    let s = one("Enter-PSSession -ComputerName web01 -UseSSL: $false");
    assert_eq!(s.command_line, "Enter-PSSession -ComputerName web01");
}

#[test]
fn this_computer_through_variables() {
    none("$me = $env:COMPUTERNAME; Enter-PSSession -ComputerName $me");
    none("$me = hostname\nEnter-PSSession -ComputerName $me");
    none("$a = $env:COMPUTERNAME; $b = $a; etsn $b");
    none("$a = 'localhost'\n$b = $a\netsn -cn $b");
    one("$a = 'web01'; $b = $a; etsn -cn $b");
}

#[test]
fn loop_variables_over_constant_items() {
    none("foreach ($h in 'localhost','.') { Enter-PSSession -ComputerName $h }");
    none("'localhost' | % { etsn -cn $_ }");
    let s = one(
        "$hosts = 'localhost','web01'\nforeach ($h in $hosts) { Enter-PSSession -ComputerName $h }",
    );
    assert_eq!(s.target.text(), "web01");
    let s = one("'web01' | ForEach-Object { etsn $_ }");
    assert_eq!(s.command_line, "Enter-PSSession -ComputerName web01");
    // items not known: the variable stays as written, and the call counts as remote
    one("Get-Content hosts.txt | % { etsn -cn $_ }");
}

#[test]
fn sessions_are_capped_and_a_remote_one_is_never_lost() {
    use pssession_core::pwsh::MAX_SESSIONS;
    let many = "etsn web01\n".repeat(10_000);
    assert_eq!(sessions(&many, Some("ws01")).len(), MAX_SESSIONS);
    let local_then_remote = format!("{}etsn web01\n", "etsn localhost\n".repeat(10_000));
    let found = sessions(&local_then_remote, Some("ws01"));
    assert_eq!(found.len(), MAX_SESSIONS);
    assert_eq!(
        found.iter().filter(|s| !s.local).count(),
        1,
        "the remote one is kept"
    );
}

#[test]
fn evidence_is_capped() {
    let long = "a".repeat(5000);
    let s = one(&format!(
        "Enter-PSSession -ComputerName app7 -ConfigurationName {long}"
    ));
    assert!(s.command_line.len() <= 1024);
    assert!(s
        .command_line
        .starts_with("Enter-PSSession -ComputerName app7"));
}
