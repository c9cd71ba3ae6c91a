#!/usr/bin/env python3
"""Generate tests/data/corpus/obfuscated.jsonl: obfuscated Enter-PSSession scripts.

The corpus is ground truth for `mode extended` written from PowerShell's documented
semantics (and the PowerShell engine source), not from the detector. Each line is
{"id", "label", "category", "note", "script", "layers", "expect_command"}:

  label           remote | local | none, as in remote_sessions.jsonl
  category        obf-name, obf-object, obf-encoded, definitions, splatting,
                  control-flow, tokenizer or nested
  layers          obfuscation layers applied, outermost last (vocabulary: LAYERS)
  scored          false where Windows PowerShell 5.1 and PowerShell 7 disagree (the label
                  is then the reading that opens a session, and the note says why); such
                  scripts are run and listed, never counted in precision or recall
  expect_command  for remote/local: the Enter-PSSession call that runs, deobfuscated
                  (full cmdlet and parameter names, constant values resolved,
                  variables kept as written); empty for none

Every run rewrites the file identically (fixed seed, standard library only). The
generator checks itself while it writes:
  * every string expression it emits is decoded back from the emitted text by a
    separate decoder (literals re-parsed, -f / -replace / reversal / char codes
    re-applied, base64 / raw deflate / gzip / -bxor / hex / octal decoded with the
    standard library) and must give back the intended string;
  * every character pick that is meant to spell iex is recomputed from the real
    values of $ShellId, $PSHome, $env:ComSpec, $VerbosePreference and the
    MaximumDriveCount variable; picks meant to fail must not spell a command;
  * every Get-Command / GetCommandName wildcard is matched against the built-in
    command and alias names below: positives must match Enter-PSSession only;
  * no two scripts are equal, and none repeats a script of remote_sessions.jsonl.

Usage: python3 scripts/make_obfuscated_corpus.py [--check]
  --check  generate in memory and compare with the file on disk (exit 1 if stale)
"""

import base64
import gzip
import json
import os
import random
import re
import sys
import unicodedata
import zlib

SEED = 0x4104
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "corpus", "obfuscated.jsonl")
EXISTING = os.path.join(ROOT, "tests", "data", "corpus", "remote_sessions.jsonl")

LAYERS = [
    "concat", "format-operator", "join", "replace", "reverse", "char-codes",
    "substring-index", "case", "char-pick-iex", "get-command", "get-alias",
    "execution-context", "scriptblock-create", "base64-utf16le", "base64-utf8",
    "base64-ascii", "deflate", "gzip", "bxor", "hex", "octal", "encoded-command",
    "function-shadow", "alias-redefinition", "default-parameter-values", "splatting",
    "control-flow", "tokenizer",
]
CATEGORIES = ["obf-name", "obf-object", "obf-encoded", "definitions", "splatting",
              "control-flow", "tokenizer", "nested"]

# Per category: (remote, local, none).
PLAN = {
    "obf-name": (22, 6, 16),
    "obf-object": (16, 5, 14),
    "obf-encoded": (18, 5, 15),
    "definitions": (13, 5, 16),
    "splatting": (14, 6, 10),
    "control-flow": (14, 4, 19),
    "tokenizer": (16, 5, 14),
    "nested": (22, 9, 16),
}

# ---------------------------------------------------------------------------
# The real values the character picks read (Windows PowerShell 5.1 on Windows 10/11).
SHELLID = "Microsoft.PowerShell"
PSHOME_51 = "C:\\Windows\\System32\\WindowsPowerShell\\v1.0"
PSHOME_7 = "C:\\Program Files\\PowerShell\\7"
COMSPEC = "C:\\WINDOWS\\system32\\cmd.exe"
VERBOSE_PREFERENCE = "SilentlyContinue"
# The variables of a fresh Windows PowerShell 5.1 session (Get-Variable | % Name).
DEFAULT_VARIABLES_51 = """$ ? ^ _ args ConfirmPreference ConsoleFileName DebugPreference Error
ErrorActionPreference ErrorView ExecutionContext false FormatEnumerationLimit HOME Host
InformationPreference input MaximumAliasCount MaximumDriveCount MaximumErrorCount
MaximumFunctionCount MaximumHistoryCount MaximumVariableCount MyInvocation NestedPromptLevel
null OutputEncoding PID PROFILE ProgressPreference PSBoundParameters PSCommandPath PSCulture
PSDefaultParameterValues PSEmailServer PSHOME PSScriptRoot PSSessionApplicationName
PSSessionConfigurationName PSSessionOption PSUICulture PSVersionTable PWD ShellId StackTrace
true VerbosePreference WarningPreference WhatIfPreference""".split()
# PowerShell 7 has no MaximumXxxCount variables.
DEFAULT_VARIABLES_7 = [v for v in DEFAULT_VARIABLES_51 if not v.startswith("Maximum")]

# Built-in command names (cmdlets of PowerShell 7's source tree, the Windows PowerShell
# 5.1 additions, the shipped functions) and aliases, for the wildcard checks.
BUILTIN_COMMANDS = """Add-Content Add-History Add-Member Add-Type Clear-Content Clear-History Clear-Item
Clear-ItemProperty Clear-RecycleBin Clear-Variable Compare-Object Connect-PSSession Connect-WSMan
Convert-Path ConvertFrom-CliXml ConvertFrom-Csv ConvertFrom-Json ConvertFrom-SddlString
ConvertFrom-SecureString ConvertFrom-StringData ConvertTo-CliXml ConvertTo-Csv ConvertTo-Html
ConvertTo-Json ConvertTo-SecureString ConvertTo-Xml Copy-Item Copy-ItemProperty Debug-Job
Debug-Process Debug-Runspace Disable-ExperimentalFeature Disable-PSBreakpoint Disable-RunspaceDebug
Disable-WSManCredSSP Disconnect-PSSession Disconnect-WSMan Enable-ExperimentalFeature
Enable-PSBreakpoint Enable-RunspaceDebug Enable-WSManCredSSP Enter-PSHostProcess Enter-PSSession
Exit-PSHostProcess Exit-PSSession Export-Alias Export-Clixml Export-Csv Export-FormatData
Export-ModuleMember Export-PSSession Format-Custom Format-Hex Format-List Format-Table
Format-Wide Get-Acl Get-Alias Get-AuthenticodeSignature Get-ChildItem Get-CimInstance Get-CimSession
Get-CimClass Get-CimAssociatedInstance Get-Clipboard Get-CmsMessage Get-Command Get-ComputerInfo
Get-Content Get-Counter Get-Credential Get-Culture Get-Date Get-Error Get-Event Get-EventSubscriber
Get-ExecutionPolicy Get-ExperimentalFeature Get-FileHash Get-FormatData Get-Help Get-History Get-Host
Get-HotFix Get-Item Get-ItemProperty Get-ItemPropertyValue Get-Job Get-Location Get-Member Get-Module
Get-PSBreakpoint Get-PSCallStack Get-PSDrive Get-PSHostProcessInfo Get-PSProvider Get-PSSession
Get-PSSessionCapability Get-PSSessionConfiguration Get-PSSubsystem Get-PfxCertificate Get-Process
Get-Random Get-Runspace Get-RunspaceDebug Get-SecureRandom Get-Service Get-TimeZone Get-TraceSource
Get-TypeData Get-UICulture Get-Unique Get-Uptime Get-Variable Get-Verb Get-WSManCredSSP
Get-WSManInstance Get-WinEvent Group-Object Import-Alias Import-Clixml Import-Csv
Import-LocalizedData Import-Module Import-PSSession Import-PowerShellDataFile Invoke-CimMethod
Invoke-Command Invoke-Expression Invoke-History Invoke-Item Invoke-RestMethod Invoke-WSManAction
Invoke-WebRequest Join-Path Join-String Measure-Command Measure-Object Move-Item Move-ItemProperty
New-Alias New-CimInstance New-CimSession New-CimSessionOption New-Event New-FileCatalog New-Guid
New-Item New-ItemProperty New-Module New-ModuleManifest New-Object New-PSDrive
New-PSRoleCapabilityFile New-PSSession New-PSSessionConfigurationFile New-PSSessionOption
New-PSTransportOption New-Service New-TemporaryFile New-TimeSpan New-Variable New-WSManInstance
New-WSManSessionOption New-WinEvent Out-Default Out-File Out-GridView Out-Host Out-Null
Out-Printer Out-String Pop-Location Protect-CmsMessage Push-Location Read-Host Receive-Job
Receive-PSSession Register-ArgumentCompleter Register-CimIndicationEvent Register-EngineEvent
Register-ObjectEvent Register-PSSessionConfiguration Remove-Alias Remove-CimInstance
Remove-CimSession Remove-Event Remove-Item Remove-ItemProperty Remove-Job Remove-Module
Remove-PSBreakpoint Remove-PSDrive Remove-PSSession Remove-Service Remove-TypeData Remove-Variable
Remove-WSManInstance Rename-Computer Rename-Item Rename-ItemProperty Resolve-Path Restart-Computer
Restart-Service Resume-Service Save-Help Select-Object Select-String Select-Xml Send-MailMessage
Set-Acl Set-Alias Set-AuthenticodeSignature Set-CimInstance Set-Clipboard Set-Content Set-Date
Set-ExecutionPolicy Set-Item Set-ItemProperty Set-Location Set-PSBreakpoint Set-PSDebug
Set-PSSessionConfiguration Set-Service Set-StrictMode Set-TimeZone Set-TraceSource Set-Variable
Set-WSManInstance Set-WSManQuickConfig Show-Command Sort-Object Split-Path Start-Job Start-Process
Start-Service Start-Sleep Start-Transcript Stop-Computer Stop-Job Stop-Process Stop-Service
Stop-Transcript Suspend-Service Switch-Process Tee-Object Test-Connection Test-FileCatalog Test-Json
Test-ModuleManifest Test-PSSessionConfigurationFile Test-Path Test-WSMan Trace-Command Unblock-File
Unprotect-CmsMessage Unregister-Event Unregister-PSSessionConfiguration Update-FormatData
Update-Help Update-List Update-TypeData Wait-Debugger Wait-Event Wait-Job Wait-Process Where-Object
ForEach-Object Write-Debug Write-Error Write-Host Write-Information Write-Output Write-Progress
Write-Verbose Write-Warning Enable-PSRemoting Disable-PSRemoting Enable-PSSessionConfiguration
Disable-PSSessionConfiguration Add-PSSnapin Get-PSSnapin Remove-PSSnapin Export-Console
Get-WmiObject Invoke-WmiMethod Register-WmiEvent Remove-WmiObject Set-WmiInstance Get-EventLog
New-EventLog Clear-EventLog Write-EventLog Limit-EventLog Show-EventLog Remove-EventLog
New-WebServiceProxy Get-Transaction Start-Transaction Complete-Transaction Undo-Transaction
Use-Transaction Resume-Job Suspend-Job Checkpoint-Computer Restore-Computer Add-Computer
Remove-Computer Test-ComputerSecureChannel Reset-ComputerMachinePassword Enable-ComputerRestore
Disable-ComputerRestore Get-ComputerRestorePoint ConvertFrom-String Convert-String
Get-ControlPanelItem Show-ControlPanelItem Import-Counter Export-Counter Register-ScheduledJob
Get-ScheduledJob Unregister-ScheduledJob New-JobTrigger New-PSWorkflowExecutionOption
New-PSWorkflowSession Invoke-AsWorkflow Find-Module Install-Module Register-PSRepository
Unregister-PSRepository Get-PSRepository Set-PSRepository Publish-Module Save-Module Update-Module
Uninstall-Module Find-Script Install-Script Get-PSReadLineOption Set-PSReadLineOption
Get-PSReadLineKeyHandler Set-PSReadLineKeyHandler Remove-PSReadLineKeyHandler
PSConsoleHostReadLine Get-LocalUser New-LocalUser Get-LocalGroup Get-LocalGroupMember
Get-DscResource Invoke-DscResource Start-DscConfiguration Get-VM Start-VM Stop-VM Enter-VMConsole
Get-VMIntegrationService Clear-Host TabExpansion2 help mkdir more prompt oss Pause
ImportSystemModules New-TemporaryDirectory Get-NetAdapter Get-NetIPAddress Test-NetConnection
Get-ScheduledTask Register-ScheduledTask New-ScheduledTaskAction New-ScheduledTaskTrigger
Get-SmbShare New-SmbShare Get-Disk Initialize-Disk Get-Volume Get-WindowsFeature
Install-WindowsFeature Get-ADUser Get-ADComputer Unlock-ADAccount Get-ADGroupMember""".split()
BUILTIN_ALIASES = """% ? ac asnp cat cd chdir clc clear clhy cli clp cls clv cnsn compare copy cp cpi
cpp curl cvpa dbp del diff dir dnsn ebp echo epal epcsv epsn erase etsn exsn fc fl foreach ft
fw gal gbp gc gci gcm gcs gdr gerr ghy gi gjb gl gm gmo gp gps gpv group gsn gsnp gsv gu gv gwmi
h history icm iex ihy ii ipal ipcsv ipmo ipsn irm ise iwmi iwr kill lp ls man md measure mi mount
move mp mv nal ndr ni nmo npssc nsn nv ogv oh popd ps pushd pwd r rbp rcjb rcsn rd rdr ren ri
rjb rm rmdir rmo rni rnp rp rsn rsnp rujb rv rvpa rwmi sajb sal saps sasv sbp sc select set
shcm si sl sleep sls sort sp spjb spps spsv start sujb sv swmi tee trcm type wget where wjb
write gcb scb gin gtz stz""".split()
ALL_NAMES = BUILTIN_COMMANDS + BUILTIN_ALIASES
assert len(set(n.lower() for n in ALL_NAMES)) == len(ALL_NAMES), "duplicate built-in name"

# Hosts the corpus treats as this computer (the eval harness runs as WS01.corp.contoso.com).
LOCAL_NAMES = {"localhost", ".", "127.0.0.1", "::1", "ws01", "ws01.corp.contoso.com"}

# Quote, dash and space characters of the PowerShell tokenizer (CharTraits.cs).
DASHES = {"\u2013": "en dash", "\u2014": "em dash", "\u2015": "horizontal bar"}
NOT_DASHES = {"\u2212": "minus sign U+2212", "\u2010": "hyphen U+2010"}
SQ_OPEN = ["\u2018", "\u201a", "\u201b"]
SQ_CLOSE = ["\u2019", "'", "\u2018"]
DQ_OPEN = ["\u201c", "\u201e"]
DQ_CLOSE = ["\u201d", "\u201c", '"']
SINGLE_QUOTES = "'\u2018\u2019\u201a\u201b"
DOUBLE_QUOTES = '"\u201c\u201d\u201e'


# ---------------------------------------------------------------------------
# Small helpers.

def ps_wildcard_match(pattern, name):
    """PowerShell WildcardPattern (IgnoreCase): * ? [abc] [a-c], whole name."""
    rx = ""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            rx += ".*"
        elif c == "?":
            rx += "."
        elif c == "[":
            j = pattern.index("]", i)
            rx += "[" + pattern[i + 1:j] + "]"
            i = j
        else:
            rx += re.escape(c)
        i += 1
    return re.fullmatch(rx, name, re.IGNORECASE) is not None


def wildcard_hits(pattern, names=ALL_NAMES):
    return [n for n in names if ps_wildcard_match(pattern, n)]


def sq(s):
    """A single-quoted PowerShell literal of s."""
    for ch in SINGLE_QUOTES[1:]:
        assert ch not in s, "typographic quote inside a wrapped literal: %r" % s
    return "'" + s.replace("'", "''") + "'"


def sq_literals(text):
    """The values of the single-quoted literals of an emitted expression, in order.
    Double-quoted literals are skipped (they only hold -f templates here)."""
    out = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == "'":
            j = i + 1
            buf = []
            while True:
                assert j < n, "unterminated literal in %r" % text[:80]
                if text[j] == "'":
                    if j + 1 < n and text[j + 1] == "'":
                        buf.append("'")
                        j += 2
                        continue
                    break
                buf.append(text[j])
                j += 1
            out.append("".join(buf))
            i = j + 1
        elif c == '"':
            i = text.index('"', i + 1) + 1
        else:
            i += 1
    return out


def dq_literals(text):
    """Double-quoted literals outside single-quoted ones."""
    out = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "'":
            j = i + 1
            while True:
                if text[j] == "'":
                    if j + 1 < len(text) and text[j + 1] == "'":
                        j += 2
                        continue
                    break
                j += 1
            i = j + 1
        elif c == '"':
            j = text.index('"', i + 1)
            out.append(text[i + 1:j])
            i = j + 1
        else:
            i += 1
    return out


def ps_structure_check(text):
    """A light lexer with PowerShell's quote, escape and comment rules (typographic
    quotes included): strings and block comments must close and (), {}, [] must
    balance outside them. Also rejects shapes that do not parse the way they look."""
    stack = []
    pairs = {")": "(", "}": "{", "]": "["}
    i = 0
    n = len(text)
    at_token_start = True
    while i < n:
        c = text[i]
        if c == "`":
            i += 2
            at_token_start = False
            continue
        if c in SINGLE_QUOTES:
            j = i + 1
            while True:
                assert j < n, "unterminated single-quoted string in %r" % text[i:i + 60]
                if text[j] in SINGLE_QUOTES:
                    if j + 1 < n and text[j + 1] in SINGLE_QUOTES:
                        j += 2
                        continue
                    break
                j += 1
            i = j + 1
            at_token_start = False
            continue
        if c in DOUBLE_QUOTES:
            j = i + 1
            while True:
                assert j < n, "unterminated double-quoted string in %r" % text[i:i + 60]
                if text[j] == "`":
                    j += 2
                    continue
                if text[j] == "$" and j + 1 < n and text[j + 1] == "(":
                    raise AssertionError("$( ) inside a double-quoted string is not modelled: %r" % text[i:j + 20])
                if text[j] in DOUBLE_QUOTES:
                    if j + 1 < n and text[j + 1] in DOUBLE_QUOTES:
                        j += 2
                        continue
                    break
                j += 1
            i = j + 1
            at_token_start = False
            continue
        if c == "<" and text.startswith("<#", i):
            j = text.find("#>", i + 2)
            assert j >= 0, "unterminated block comment"
            i = j + 2
            continue
        if c == "#" and at_token_start:
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if c in "({[":
            stack.append(c)
        elif c in ")}]":
            assert stack and stack[-1] == pairs[c], "unbalanced %r at %d in %r" % (c, i, text[max(0, i - 60):i + 20])
            stack.pop()
        at_token_start = c.isspace() or c in "({[;|=,"
        i += 1
    assert not stack, "unclosed %r in %r" % (stack, text[:120])
    low = text.lower()
    assert not re.search(r"\{\s*;", text), "'{;' in %r" % text[:120]
    assert not re.search(r"\}\s*;\s*(catch|finally|else|elseif)\b", low), "'}; catch' in %r" % text[:120]
    # argument mode: a leading [ makes a bare word, so iex [Text.Encoding]::... would not decode
    assert not re.search(r"(\biex|invoke-expression|'x'\)|-join''\)|\)\s*\))\s+\[(system\.|text\.|convert|string|char)", low), \
        "type expression in argument mode: %r" % text[:160]
    return True


def is_known_command(name):
    return any(n.lower() == name.lower() for n in ALL_NAMES) or name.lower() == "enter-pssession"


class Ctx:
    """Per-script random state: rng, used variable names, style."""

    def __init__(self, rng, obf=0.5):
        self.rng = rng
        self.used = set()
        self.obf = obf  # how strongly to randomise case

    def r(self):
        return self.rng.random()

    def choice(self, seq):
        return self.rng.choice(seq)

    def var(self, *cands):
        free = [c for c in cands if c.lower() not in self.used]
        if not free:
            base = cands[0]
            k = 2
            while (base + str(k)).lower() in self.used:
                k += 1
            free = [base + str(k)]
        name = self.rng.choice(free)
        self.used.add(name.lower())
        assert "mdr" not in name.lower()
        return "$" + name

    def case(self, s, p=None):
        """Invoke-Obfuscation style random case (letters only)."""
        p = self.obf if p is None else p
        out = []
        for ch in s:
            if ch.isalpha() and self.rng.random() < p:
                out.append(ch.upper() if self.rng.random() < 0.5 else ch.lower())
            else:
                out.append(ch)
        return "".join(out)

    def sp(self):
        return self.rng.choice(["", "", "", " "])


def split_pieces(rng, s, k):
    k = max(2, min(k, len(s)))
    cuts = sorted(rng.sample(range(1, len(s)), k - 1))
    pieces = []
    prev = 0
    for c in cuts + [len(s)]:
        pieces.append(s[prev:c])
        prev = c
    assert "".join(pieces) == s
    return pieces


def n_pieces(rng, s):
    if len(s) <= 16:
        return rng.randint(2, 4)
    if len(s) <= 80:
        return rng.randint(3, 6)
    return rng.randint(4, 9)


# ---------------------------------------------------------------------------
# String-expression builders: S -> (pre statements, expression, layers).
# Each has a decoder that reads the emitted text back to S (independent check).

def check_roundtrip(kind, pre, expr, want, got, ci=False):
    ok = (got.lower() == want.lower()) if ci else (got == want)
    assert ok, "%s round trip failed:\n want %r\n got  %r\n expr %r %r" % (kind, want, got, pre, expr[:200])


def b_concat(ctx, s):
    pieces = split_pieces(ctx.rng, s, n_pieces(ctx.rng, s))
    expr = "(" + "+".join(ctx.sp() + sq(p) + ctx.sp() for p in pieces) + ")"
    check_roundtrip("concat", [], expr, s, "".join(sq_literals(expr)))
    return [], expr, ["concat"]


def b_format(ctx, s):
    pieces = split_pieces(ctx.rng, s, n_pieces(ctx.rng, s))
    order = list(range(len(pieces)))
    while order == sorted(order):
        ctx.rng.shuffle(order)
    args = [pieces[i] for i in order]
    pos = {orig: j for j, orig in enumerate(order)}
    template = "".join("{%d}" % pos[i] for i in range(len(pieces)))
    expr = '(%s"%s"%s-%s %s)' % (ctx.sp(), template, ctx.sp() or " ", ctx.case("f"),
                                 ",".join(sq(a) for a in args))
    # decode: apply the template to the literal arguments
    tmpl = dq_literals(expr)[0]
    lits = sq_literals(expr)
    got = re.sub(r"\{(\d+)\}", lambda m: lits[int(m.group(1))], tmpl)
    check_roundtrip("format", [], expr, s, got)
    return [], expr, ["format-operator"]


def b_join(ctx, s):
    pieces = split_pieces(ctx.rng, s, n_pieces(ctx.rng, s))
    lits = ",".join(sq(p) for p in pieces)
    v = ctx.rng.randrange(3)
    if v == 0:
        expr = "(-%s (%s))" % (ctx.case("join"), lits)
    elif v == 1:
        expr = "((%s) -%s '')" % (lits, ctx.case("join"))
    else:
        expr = "(%s::%s('', (%s)))" % (ctx.case("[string]"), ctx.case("Join"), lits)
    check_roundtrip("join", [], expr, s, "".join(sq_literals(expr)))
    return [], expr, ["join"]


REPLACE_MARKERS = ["~~", "QZ", "_x_", "@@", "%%", "##", "vq", "Jk", "~0~", "=="]


def b_replace(ctx, s, variant=None):
    v = ctx.rng.randrange(4) if variant is None else variant
    if v == 3 and "$" in s:
        v = 0
    markers = [m for m in REPLACE_MARKERS if m.lower() not in s.lower()]
    mk = ctx.choice(markers)
    if v in (0, 1, 2):
        # insert the marker 1-4 times and delete it again
        k = ctx.rng.randint(1, min(4, len(s) - 1))
        cuts = sorted(ctx.rng.sample(range(1, len(s)), k))
        lit = ""
        prev = 0
        for c in cuts:
            m = ctx.case(mk, 1.0) if v == 0 else mk  # -replace ignores case
            lit += s[prev:c] + m
            prev = c
        lit += s[prev:]
        if v == 0:
            expr = "(%s -%s %s,'')" % (sq(lit), ctx.case("replace"), sq(mk.lower()))
        elif v == 1:
            expr = "(%s -%s %s,'')" % (sq(lit), ctx.case("creplace"), sq(mk))
        else:
            expr = "(%s).%s(%s,'')" % (sq(lit), ctx.case("Replace"), sq(mk))
    else:
        # a chunk of s stands in for a marker and is put back with -replace
        cands = [s[i:i + n] for n in (2, 3, 4) for i in range(len(s) - n + 1)]
        cands = [c for c in cands if re.fullmatch(r"[A-Za-z0-9 -]+", c)]
        chunk = ctx.choice(cands)
        lit = s.replace(chunk, mk)
        assert lit.lower().count(mk.lower()) == s.count(chunk)
        expr = "(%s -%s %s,%s)" % (sq(lit), ctx.case("replace"), sq(mk), sq(chunk))
    check_roundtrip("replace", [], expr, s, decode_replace(expr))
    return [], expr, ["replace"]


def decode_replace(expr):
    lit, pat, rep = sq_literals(expr)[:3]
    low = expr.lower()
    if "-creplace" in low:
        return re.sub(pat, lambda m: rep, lit)
    if "-replace" in low:
        return re.sub(pat, lambda m: rep, lit, flags=re.IGNORECASE)
    assert ".replace(" in low
    return lit.replace(pat, rep)


def b_reverse(ctx, s, variant=None, drop=0):
    v = ctx.rng.randrange(3) if variant is None else variant
    if v == 1 and "\n" in s:
        v = 0
    rev = s[::-1]
    pre = []
    n = len(s) - drop
    if v == 0:
        expr = "(-%s (%s)[-1..-%d])" % (ctx.case("join"), sq(rev), n)
        lit = sq_literals(expr)[0]
        m = int(re.search(r"\[-1\.\.-(\d+)\]", expr).group(1))
        got = "".join(lit[-i] for i in range(1, m + 1))
    elif v == 1:
        assert drop == 0
        expr = "(-%s (%s::%s(%s,'.','RightToLeft') | %s {$_.%s}))" % (
            ctx.case("join"), ctx.case("[regex]"), ctx.case("Matches"), sq(rev),
            ctx.case(ctx.choice(["ForEach-Object", "ForEach-Object", "%"])), ctx.case("Value"))
        lit, dot, opt = sq_literals(expr)[:3]
        assert dot == "." and opt == "RightToLeft"
        got = "".join(reversed(re.findall(".", lit)))
    else:
        assert drop == 0
        var = ctx.var("chars", "arr", "buf", "r", "cc", "ch")
        pre = ["%s = %s.%s()" % (var, sq(rev), ctx.case("ToCharArray")),
               "%s::%s(%s)" % (ctx.case("[array]"), ctx.case("Reverse"), var)]
        expr = "(-%s %s)" % (ctx.case("join"), var)
        got = sq_literals(pre[0])[0][::-1]
    want = s[:n] if drop else s
    check_roundtrip("reverse", pre, expr, want, got)
    return pre, expr, ["reverse"]


def b_chars(ctx, s, variant=None, typo=None):
    v = ctx.rng.randrange(3) if variant is None else variant
    codes = [ord(c) for c in s]
    if typo is not None:
        codes[typo] += 1

    def num(c):
        return ("0x%x" % c) if ctx.r() < 0.3 else str(c)
    if v == 0:
        expr = "(" + "+".join("%s%s" % (ctx.case("[char]"), num(c)) for c in codes) + ")"
        got = "".join(chr(int(x, 0)) for x in re.findall(r"\[char\](0x[0-9a-f]+|\d+)", expr, re.I))
    else:
        body = ",".join(num(c) for c in codes)
        if v == 1:
            expr = "(-%s (%s(%s)))" % (ctx.case("join"), ctx.case("[char[]]"), body)
        else:
            expr = "(%s::%s(%s(%s)))" % (ctx.case("[string]"), ctx.case("new"), ctx.case("[char[]]"), body)
        inner = re.search(r"\[char\[\]\]\(([^)]*)\)", expr, re.I).group(1)
        got = "".join(chr(int(x, 0)) for x in inner.split(","))
    want = "".join(chr(c) for c in codes)
    check_roundtrip("char-codes", [], expr, want, got)
    return [], expr, ["char-codes"]


JUNK = "qwxzjkvbyQWXZJKVBY0123456789#~_"


def b_substring(ctx, s, variant=None, off=0):
    v = ctx.rng.randrange(3) if variant is None else variant
    pre = []
    if v == 0:
        a = "".join(ctx.choice(JUNK) for _ in range(ctx.rng.randint(2, 9)))
        b = "".join(ctx.choice(JUNK) for _ in range(ctx.rng.randint(1, 7)))
        lit = a + s + b
        expr = "(%s).%s(%d,%d)" % (sq(lit), ctx.case("Substring"), len(a) + off, len(s))
        m = re.search(r"\((\d+),(\d+)\)$", expr)
        start, length = int(m.group(1)), int(m.group(2))
        assert start + length <= len(lit)
        got = sq_literals(expr)[0][start:start + length]
        want = lit[len(a) + off:len(a) + off + len(s)]
        if not off:
            assert want == s
        check_roundtrip("substring", pre, expr, want, got)
    elif v == 1:
        pool = list(set(s) | set(ctx.choice(JUNK) for _ in range(6)))
        pool.sort()
        ctx.rng.shuffle(pool)
        pool = "".join(pool)
        idx = [pool.index(c) for c in s]
        var = ctx.var("alpha", "pool", "tbl", "map", "abc", "keyspace")
        pre = ["%s = %s" % (var, sq(pool))]
        expr = "(%s[%s] -%s '')" % (var, ",".join(str(i) for i in idx), ctx.case("join"))
        lit = sq_literals(pre[0])[0]
        ii = [int(x) for x in re.search(r"\[([\d,]+)\]", expr).group(1).split(",")]
        check_roundtrip("substring-index", pre, expr, s, "".join(lit[i] for i in ii))
    else:
        up = ctx.r() < 0.5
        lit = s.lower() if up else s.upper()
        lit = "".join(c if ctx.r() < 0.6 else c.swapcase() for c in lit)
        meth = "ToUpper" if up else "ToLower"
        expr = "(%s).%s()" % (sq(lit), ctx.case(meth))
        got = sq_literals(expr)[0]
        got = got.upper() if up else got.lower()
        check_roundtrip("substring-index", pre, expr, s, got, ci=True)
    return pre, expr, ["substring-index"]


def b_case(ctx, s):
    lit = ctx.case(s, 1.0)
    if lit == s:
        lit = lit.swapcase()
    expr = sq(lit)
    check_roundtrip("case", [], expr, s, sq_literals(expr)[0], ci=True)
    return [], expr, ["case"]


NAME_BUILDERS = [b_concat, b_format, b_join, b_replace, b_reverse, b_chars, b_substring, b_case]
PAYLOAD_BUILDERS = [b_concat, b_format, b_join, b_replace, b_reverse]


# ---------------------------------------------------------------------------
# Encoders for whole payloads: P -> expression whose value is P. Decoded back.

def e_base64(ctx, p, enc):
    codec, name, tag = {
        "unicode": ("utf-16-le", "Unicode", "base64-utf16le"),
        "utf8": ("utf-8", "UTF8", "base64-utf8"),
        "ascii": ("ascii", "ASCII", "base64-ascii"),
    }[enc]
    b64 = base64.b64encode(p.encode(codec)).decode()
    expr = "%s::%s.%s(%s::%s(%s))" % (
        ctx.case(ctx.choice(["[Text.Encoding]", "[System.Text.Encoding]"])), ctx.case(name),
        ctx.case("GetString"), ctx.case(ctx.choice(["[Convert]", "[System.Convert]"])),
        ctx.case("FromBase64String"), sq(b64))
    # decode
    ename = re.search(r"Encoding\]::(\w+)\.GetString", expr, re.I).group(1).lower()
    dcodec = {"unicode": "utf-16-le", "utf8": "utf-8", "ascii": "ascii"}[ename]
    got = base64.b64decode(sq_literals(expr)[0], validate=True).decode(dcodec)
    check_roundtrip(tag, [], expr, p, got)
    return [], expr, [tag]


def e_compressed(ctx, p, kind):
    raw = p.encode("ascii")
    if kind == "deflate":
        co = zlib.compressobj(9, zlib.DEFLATED, -15)
        data = co.compress(raw) + co.flush()
        stream = "IO.Compression.DeflateStream"
    else:
        data = gzip.compress(raw, compresslevel=9, mtime=0)
        stream = "IO.Compression.GZipStream"
    b64 = base64.b64encode(data).decode()
    expr = "(%s %s((%s %s(%s%s::%s(%s),%s::%s)),%s::%s)).%s()" % (
        ctx.case("New-Object"), ctx.case("IO.StreamReader"), ctx.case("New-Object"), ctx.case(stream),
        ctx.case("[IO.MemoryStream]"), ctx.case("[Convert]"), ctx.case("FromBase64String"), sq(b64),
        ctx.case("[IO.Compression.CompressionMode]"), ctx.case("Decompress"),
        ctx.case("[Text.Encoding]"), ctx.case("ASCII"), ctx.case("ReadToEnd"))
    blob = base64.b64decode(sq_literals(expr)[0], validate=True)
    if "deflatestream" in expr.lower():
        got = zlib.decompressobj(-15).decompress(blob).decode("ascii")
    else:
        assert "gzipstream" in expr.lower()
        got = gzip.decompress(blob).decode("ascii")
    check_roundtrip(kind, [], expr, p, got)
    return [], expr, [kind]


def e_bxor(ctx, p):
    key = ctx.rng.randint(0x11, 0x7e)
    codes = [ord(c) ^ key for c in p]
    assert all(0 <= c < 0x10000 for c in codes)
    keytxt = ("0x%02X" % key) if ctx.r() < 0.5 else str(key)
    pre = []
    if ctx.r() < 0.5:
        kv = ctx.var("k", "key", "x0", "kk")
        pre = ["%s = %s" % (kv, keytxt)]
        keyref = kv
    else:
        keyref = keytxt
    expr = "(-%s ((%s) | %s { %s($_ -%s %s) }))" % (
        ctx.case("join"), ",".join(str(c) for c in codes),
        ctx.case(ctx.choice(["ForEach-Object", "%", "foreach"])), ctx.case("[char]"), ctx.case("bxor"), keyref)
    # decode
    k = int(re.search(r"=\s*(0x[0-9A-Fa-f]+|\d+)", pre[0]).group(1), 0) if pre else \
        int(re.search(r"-bxor\s+(0x[0-9A-Fa-f]+|\d+)", expr, re.I).group(1), 0)
    lst = re.search(r"\(\(([\d,]+)\)", expr).group(1)
    got = "".join(chr(int(x) ^ k) for x in lst.split(","))
    check_roundtrip("bxor", pre, expr, p, got)
    return pre, expr, ["bxor"]


def e_hex(ctx, p):
    sep = ctx.choice([",", "-", ":", " ", "|"])
    lit = sep.join("%02x" % ord(c) if ctx.r() < 0.5 else "%02X" % ord(c) for c in p)
    if ctx.r() < 0.5:
        split = "%s.%s(%s)" % (sq(lit), ctx.case("Split"), sq(sep))
    else:
        split = "(%s -%s %s)" % (sq(lit), ctx.case("split"), sq(re.escape(sep) if sep == "|" else sep))
    expr = "(-%s (%s | %s { %s%s::%s($_,16) }))" % (
        ctx.case("join"), split, ctx.case(ctx.choice(["ForEach-Object", "%"])), ctx.case("[char]"),
        ctx.case("[convert]"), ctx.case("ToInt16"))
    lits = sq_literals(expr)
    s = lits[1] if "-split" not in expr.lower() else lits[1].replace("\\", "")
    got = "".join(chr(int(h, 16)) for h in lits[0].split(s))
    check_roundtrip("hex", [], expr, p, got)
    return [], expr, ["hex"]


def e_octal(ctx, p):
    lit = ",".join("%o" % ord(c) for c in p)
    expr = "(-%s (%s -%s ',' | %s { %s%s::%s($_,8) }))" % (
        ctx.case("join"), sq(lit), ctx.case("split"), ctx.case(ctx.choice(["ForEach-Object", "%"])),
        ctx.case("[char]"), ctx.case("[convert]"), ctx.case("ToInt32"))
    got = "".join(chr(int(o, 8)) for o in sq_literals(expr)[0].split(","))
    check_roundtrip("octal", [], expr, p, got)
    return [], expr, ["octal"]


def encode_payload(ctx, p, tag):
    if tag == "base64-utf16le":
        return e_base64(ctx, p, "unicode")
    if tag == "base64-utf8":
        return e_base64(ctx, p, "utf8")
    if tag == "base64-ascii":
        return e_base64(ctx, p, "ascii")
    if tag in ("deflate", "gzip"):
        return e_compressed(ctx, p, tag)
    if tag == "bxor":
        return e_bxor(ctx, p)
    if tag == "hex":
        return e_hex(ctx, p)
    if tag == "octal":
        return e_octal(ctx, p)
    if tag == "char-codes":
        return b_chars(ctx, p, variant=ctx.choice([1, 2]))
    if tag == "substring-index":
        return b_substring(ctx, p, variant=ctx.choice([0, 1]))
    return {"concat": b_concat, "format-operator": b_format, "join": b_join, "replace": b_replace,
            "reverse": b_reverse}[tag](ctx, p)


# ---------------------------------------------------------------------------
# Invoke-Expression by picking characters out of automatic variables.

def pick(value, idx):
    return "".join(value[i] if 0 <= i < len(value) or -len(value) <= i < 0 else "" for i in idx)


IEX_PICKS = [
    # (template with {}, the value per PS version, indices, suffix, note)
    ("($ShellId[1]+$ShellId[13]+'x')", SHELLID, SHELLID, [1, 13], "x"),
    ("($PSHome[4]+$PSHome[30]+'x')", PSHOME_51, PSHOME_7, [4, 30], "x"),
    ("($PSHome[21]+$PSHome[30]+'x')", PSHOME_51, PSHOME_7, [21, 30], "x"),
    ("($env:ComSpec[4,15,25]-join'')", COMSPEC, COMSPEC, [4, 15, 25], ""),
    ("($VerbosePreference.ToString()[1,3]+'x'-join'')", VERBOSE_PREFERENCE, VERBOSE_PREFERENCE, [1, 3], "x"),
    ("((gv '*mdr*').Name[3,11,2]-join'')", "MaximumDriveCount", "", [3, 11, 2], ""),
]


def verify_picks():
    for tmpl, v51, v7, idx, suffix in IEX_PICKS:
        got = pick(v51, idx) + suffix
        assert got.lower() == "iex", (tmpl, got)
    # gv '*mdr*' matches exactly one default variable in 5.1, none in 7
    assert [v for v in DEFAULT_VARIABLES_51 if ps_wildcard_match("*mdr*", v)] == ["MaximumDriveCount"]
    assert [v for v in DEFAULT_VARIABLES_7 if ps_wildcard_match("*mdr*", v)] == []


def pick_works_in_7(entry):
    tmpl, v51, v7, idx, suffix = entry
    return bool(v7) and (pick(v7, idx) + suffix).lower() == "iex"


def iex_pick(ctx):
    """A verified character pick spelling iex, and a note on PowerShell 7."""
    entry = ctx.choice(IEX_PICKS)
    tmpl = entry[0]
    expr = ctx.case(tmpl.replace("'x'", "'X'") if ctx.r() < 0.3 else tmpl, ctx.obf)
    # re-verify from the emitted (case-randomised) text
    low = expr.lower()
    if "$shellid" in low:
        val = SHELLID
    elif "$pshome" in low:
        val = PSHOME_51
    elif "comspec" in low:
        val = COMSPEC
    elif "verbosepreference" in low:
        val = VERBOSE_PREFERENCE
    else:
        val = "MaximumDriveCount"
    idx = [int(x) for x in re.findall(r"\[([\d,]+)\]", expr)[-1].split(",")] if "[1,3]" in expr or "[4,15,25]" in expr or "[3,11,2]" in expr else \
        [int(x) for x in re.findall(r"\[(\d+)\]", expr)]
    suffix = "x" if "'x'" in low else ""
    assert (pick(val, idx) + suffix).lower() == "iex", expr
    note = ""
    if not pick_works_in_7(entry):
        note = ("%s spells iex only in Windows PowerShell 5.1 (%s); in PowerShell 7 it does not, "
                "so the 5.1 reading, which opens the session, is the label"
                % (tmpl, "$PSHome is C:\\Windows\\System32\\WindowsPowerShell\\v1.0" if "PSHome" in tmpl
                   else "MaximumDriveCount is gone in 7"))
    return expr, note


def bad_pick(ctx):
    """A character pick that looks like the iex idiom but spells something else."""
    cands = [
        ("($ShellId[1]+$ShellId[12]+'x')", SHELLID, [1, 12], "x"),
        ("($PSHome[4]+$PSHome[26]+'x')", PSHOME_51, [4, 26], "x"),
        ("($env:ComSpec[4,15,24]-join'')", COMSPEC, [4, 15, 24], ""),
        ("($VerbosePreference.ToString()[1,2]+'x'-join'')", VERBOSE_PREFERENCE, [1, 2], "x"),
        ("($PSHome[21]+$PSHome[29]+'x')", PSHOME_51, [21, 29], "x"),
    ]
    tmpl, val, idx, suffix = ctx.choice(cands)
    spelled = pick(val, idx) + suffix
    assert spelled.lower() != "iex" and not is_known_command(spelled), spelled
    return ctx.case(tmpl), spelled


# ---------------------------------------------------------------------------
# Invokers: run a string expression E as code. Return (statement, layers, note).

IEX_GCM = ["*ke-Exp*", "Invoke-Ex*", "I?voke-Expression", "Inv*-Expr*"]


def verify_iex_wildcards():
    for pat in IEX_GCM:
        assert wildcard_hits(pat) == ["Invoke-Expression"], (pat, wildcard_hits(pat))


def as_arg(expr):
    """An expression as a command argument: in argument mode only ( $ @ quotes and
    numbers start an expression; a leading [ would make a bare word (Parser.cs
    GetCommandArgument), so such expressions are parenthesised."""
    if expr[0] in "($'@":
        return expr
    return "(%s)" % expr


def invoke(ctx, expr, kind=None):
    arg = as_arg(expr)
    kinds = ["iex", "iex-pipe", "pick", "pick-pipe", "gcm", "invokescript", "sb-amp", "sb-invoke",
             "sb-icm", "newsb"]
    k = kind or ctx.choice(kinds)
    note = ""
    if k == "iex":
        return "%s %s" % (ctx.case(ctx.choice(["iex", "Invoke-Expression", "IEX"])), arg), [], note
    if k == "iex-pipe":
        return "%s | %s" % (expr, ctx.case(ctx.choice(["iex", "Invoke-Expression"]))), [], note
    if k in ("pick", "pick-pipe"):
        p, note = iex_pick(ctx)
        op = ctx.choice(["&", ".", "& ", ". "])
        if k == "pick":
            return "%s%s %s" % (op, p, arg), ["char-pick-iex"], note
        return "%s | %s%s" % (expr, op, p), ["char-pick-iex"], note
    if k == "gcm":
        pat = ctx.choice(IEX_GCM)
        assert wildcard_hits(pat) == ["Invoke-Expression"]
        return "& (%s %s) %s" % (ctx.case(ctx.choice(["gcm", "Get-Command"])), pat, arg), ["get-command"], note
    if k == "invokescript":
        return "$%s.%s.%s(%s)" % (ctx.case("ExecutionContext"), ctx.case("InvokeCommand"),
                                  ctx.case("InvokeScript"), expr), ["execution-context"], note
    if k == "newsb":
        return "$%s.%s.%s(%s).%s()" % (ctx.case("ExecutionContext"), ctx.case("InvokeCommand"),
                                       ctx.case("NewScriptBlock"), expr, ctx.case("Invoke")), \
            ["execution-context"], note
    sbc = "%s::%s(%s)" % (ctx.case(ctx.choice(["[scriptblock]", "[ScriptBlock]", "[System.Management.Automation.ScriptBlock]"])),
                          ctx.case("Create"), expr)
    if k == "sb-amp":
        return "%s (%s)" % (ctx.choice(["&", "."]), sbc), ["scriptblock-create"], note
    if k == "sb-invoke":
        return "(%s).%s()" % (sbc, ctx.case(ctx.choice(["Invoke", "InvokeReturnAsIs"]))), ["scriptblock-create"], note
    if k == "sb-icm":
        return "%s -%s (%s)" % (ctx.case(ctx.choice(["Invoke-Command", "icm"])), ctx.case("ScriptBlock"), sbc), \
            ["scriptblock-create"], "Invoke-Command without -ComputerName runs the block here"
    raise ValueError(k)


def sink(ctx, expr):
    """Statements that decode a payload but never run it."""
    v = ctx.var("decoded", "plain", "stage", "txt", "cmdText", "out")
    forms = [
        ["%s = %s" % (v, expr), "Write-Output %s" % v],
        ["%s = %s" % (v, expr), "Set-Content -Path (Join-Path $env:TEMP 'stage2.txt') -Value %s" % v],
        ["%s = %s" % (v, expr), "if (%s -match 'PSSession') { Write-Warning \"blocked payload: %s\" }" % (v, v)],
        ["Write-Verbose (%s) -Verbose" % expr],
        ["%s = %s" % (v, expr), "%s | Out-File -FilePath .\\decoded.txt -Encoding ascii" % v],
        ["[void](%s)" % expr],
    ]
    return ctx.choice(forms)


# ---------------------------------------------------------------------------
# Hosts and targets.

SHORT = ["web", "app", "sql", "db", "dc", "fs", "file", "jump", "mgmt", "rds", "ctx", "bkp", "hv",
         "exch", "print", "sccm", "wsus", "ca", "adfs", "build", "ops", "log", "mon", "erp", "pay",
         "crm", "hr-app", "vpn", "sftp", "iis", "citrix", "veeam", "nas"]
DOMAINS = ["corp.contoso.com", "ad.fabrikam.local", "lab.tailspin.net", "emea.northwind.corp",
           "prod.woodgrove.lan"]


def remote_host(ctx):
    r = ctx.r()
    if r < 0.45:
        base = ctx.choice(SHORT)
        h = ctx.choice(["%s%02d" % (base, ctx.rng.randint(1, 24)),
                        "%s-prod-%02d" % (base, ctx.rng.randint(1, 9)),
                        "%s-stg-%02d" % (base, ctx.rng.randint(1, 9)),
                        "%s%d" % (base, ctx.rng.randint(1, 9))])
    elif r < 0.72:
        h = "%s%02d.%s" % (ctx.choice(SHORT), ctx.rng.randint(1, 30), ctx.choice(DOMAINS))
    else:
        net = ctx.choice(["10.%d.%d.%d" % (ctx.rng.randint(0, 254), ctx.rng.randint(0, 254), ctx.rng.randint(2, 254)),
                          "172.%d.%d.%d" % (ctx.rng.randint(16, 31), ctx.rng.randint(0, 254), ctx.rng.randint(2, 254)),
                          "192.168.%d.%d" % (ctx.rng.randint(0, 254), ctx.rng.randint(2, 254))])
        h = net
    assert h.lower() not in LOCAL_NAMES and not h.lower().startswith("ws01")
    return h


# (PowerShell argument text, canonical text, note)
LOCAL_CN = [
    ("localhost", "localhost", "localhost"),
    ("LOCALHOST", "LOCALHOST", "localhost"),
    (".", ".", "the dot is this computer"),
    ("127.0.0.1", "127.0.0.1", "IPv4 loopback"),
    ("::1", "::1", "IPv6 loopback"),
    ("$env:COMPUTERNAME", "$env:COMPUTERNAME", "this computer's name"),
    ("WS01", "WS01", "WS01 is the computer the script runs on"),
    ("ws01.corp.contoso.com", "ws01.corp.contoso.com", "this computer's FQDN"),
    ("([Environment]::MachineName)", "[Environment]::MachineName", "this computer's name"),
    ("(hostname)", "(hostname)", "hostname.exe prints this computer's name"),
]


class Target:
    def __init__(self, kind, local, pre, args, canon, host, note, ps7_only=False):
        self.kind = kind
        self.local = local
        self.pre = pre
        self.args = args
        self.canon = canon
        self.host = host
        self.note = note
        self.ps7_only = ps7_only


CRED_USERS = ["CORP\\svc_ops", "CORP\\adm_jdoe", "FABRIKAM\\svc_backup", "CORP\\helpdesk2",
              "NORTHWIND\\it-admin", "WOODGROVE\\svc_deploy", ".\\Administrator"]
PASSWORDS = ["Autumn2024!", "P@ssw0rd123", "Welcome#2025", "Spring!2024", "Tr0ub4dor&3", "Zxcv!9876"]


def cred_lines(ctx):
    pw = ctx.var("pw", "sec", "pass", "secpw", "ss")
    cr = ctx.var("cred", "c", "creds", "pscred", "acct")
    lines = ["%s = %s %s -%s -%s" % (pw, ctx.case("ConvertTo-SecureString", ctx.obf * 0.5), sq(ctx.choice(PASSWORDS)),
                                    ctx.case("AsPlainText", ctx.obf * 0.5), ctx.case("Force", ctx.obf * 0.5)),
             "%s = %s %s (%s, %s)" % (cr, ctx.case("New-Object", ctx.obf * 0.5),
                                     ctx.choice(["System.Management.Automation.PSCredential", "PSCredential"]),
                                     sq(ctx.choice(CRED_USERS)), pw)]
    return lines, cr


def cn_param(ctx):
    """(text, canonical) for naming the ComputerName parameter, or positional."""
    return ctx.choice([("-ComputerName", "-ComputerName")] * 4 + [("-Cn", "-ComputerName")] * 3 +
                      [("-Comp", "-ComputerName"), ("-ComputerN", "-ComputerName"), ("", "-ComputerName")] + [("-cn", "-ComputerName")])


def quote_host(ctx, h):
    r = ctx.r()
    if r < 0.6 or h.startswith("(") or h.startswith("$"):
        return h
    if r < 0.85:
        return sq(h)
    return '"%s"' % h


def make_target(ctx, local, kinds=None, extras=True):
    """A session target. kinds limits the parameter sets."""
    if kinds is None:
        kinds = (["cn"] * 9 + ["uri", "ssh", "session", "session", "name"]) if not local else \
            (["cn"] * 9 + ["vm", "vm", "vmid", "container", "container", "session", "uri", "ssh"])
    kind = ctx.choice(kinds)
    pre = []
    extra_txt = ""
    extra_canon = ""
    note = ""
    ps7 = False

    def add_cred():
        nonlocal extra_txt, extra_canon
        lines, cr = cred_lines(ctx)
        pre.extend(lines)
        p = ctx.choice(["-Credential", "-Cred", "-Credential"])
        extra_txt += " %s %s" % (ctx.case(p), cr)
        extra_canon += " -Credential %s" % cr

    if kind == "cn":
        if local:
            h, hc, note = ctx.choice(LOCAL_CN)
        else:
            h = remote_host(ctx)
            hc = h
        ptxt, pcanon = cn_param(ctx)
        hv = quote_host(ctx, h)
        if ptxt:
            args = "%s %s" % (ctx.case(ptxt), hv)
        else:
            args = hv
            note = (note + "; " if note else "") + "the first positional argument binds to -ComputerName"
        canon = "Enter-PSSession -ComputerName %s" % hc
        if extras and ctx.r() < 0.35:
            add_cred()
        if extras and ctx.r() < 0.2:
            txt, canon_x = ctx.choice([("-UseSSL", "-UseSSL"), ("-Port 5986 -UseSSL", "-Port 5986 -UseSSL"),
                                       ("-Authentication Negotiate", "-Authentication Negotiate"),
                                       ("-Auth Kerberos", "-Authentication Kerberos")])
            extra_txt += " " + ctx.case(txt)
            extra_canon += " " + canon_x
        host = hc
    elif kind == "uri":
        if local:
            host = "localhost"
            uri = ctx.choice(["http://localhost:5985/wsman", "https://localhost:5986/wsman", "http://127.0.0.1:5985/wsman"])
            note = "ConnectionUri to this computer"
        else:
            host = remote_host(ctx)
            uri = ctx.choice(["https://%s:5986/wsman" % host, "http://%s:5985/wsman" % host, "https://%s/wsman" % host])
        p = ctx.choice(["-ConnectionUri", "-Uri", "-CU", "-ConnectionUri"])
        args = "%s %s" % (ctx.case(p), uri)
        canon = "Enter-PSSession -ConnectionUri %s" % uri
        if extras and ctx.r() < 0.4:
            add_cred()
    elif kind == "ssh":
        ps7 = True
        host = "localhost" if local else remote_host(ctx)
        user = ctx.choice(["admin", "root", "svc_ops", "jdoe", "deploy"])
        hv = ctx.choice(["%s@%s" % (user, host), host])
        args = "%s %s" % (ctx.case("-HostName"), hv)
        canon = "Enter-PSSession -HostName %s" % hv
        if "@" not in hv:
            args += " %s %s" % (ctx.case("-UserName"), user)
            canon += " -UserName %s" % user
        if ctx.r() < 0.5:
            args += " %s ~/.ssh/id_ed25519" % ctx.case("-KeyFilePath")
            canon += " -KeyFilePath ~/.ssh/id_ed25519"
        note = "-HostName (SSH transport) exists only in PowerShell 7; there it opens the session"
        if local:
            note = "SSH transport to localhost (PowerShell 7)"
    elif kind in ("session", "name"):
        if local:
            h, hc, _ = ctx.choice(LOCAL_CN[:5])
        else:
            h = remote_host(ctx)
            hc = h
        sv = ctx.var("s", "sess", "session", "rs", "pss", "conn", "link")
        newp = ctx.choice(["-ComputerName", "-Cn", ""])
        if kind == "session":
            newcmd = ctx.case(ctx.choice(["New-PSSession", "nsn"]), ctx.obf * 0.5)
            hv = quote_host(ctx, h)
            pre.append("%s = %s %s" % (sv, newcmd, (ctx.case(newp) + " " + hv) if newp else hv))
            args = "%s %s" % (ctx.case("-Session"), sv)
            canon = "Enter-PSSession -Session %s" % sv
            note = "the entered session was made by New-PSSession to %s" % hc
        else:
            nm = ctx.choice(["maint", "ops", "tmp1", "dbfix", "patch", "x"])
            pre.append("%s %s %s -Name %s | Out-Null" % (ctx.case("New-PSSession", ctx.obf * 0.5),
                                                           ctx.case("-ComputerName"), quote_host(ctx, h), nm))
            args = "%s %s" % (ctx.case("-Name"), nm)
            canon = "Enter-PSSession -Name %s" % nm
            note = "the named session was made by New-PSSession to %s" % hc
        host = hc
    elif kind == "vm":
        vmn = ctx.choice(["Lab-DC01", "Web-Lab", "SQL-Test", "Win11-Dev", "Build-Agent02"])
        args = "%s %s" % (ctx.case("-VMName"), quote_host(ctx, vmn))
        canon = "Enter-PSSession -VMName %s" % vmn
        note = "PowerShell Direct into a VM on this Hyper-V host (local)"
        lines, cr = cred_lines(ctx)
        pre.extend(lines)
        args += " %s %s" % (ctx.case("-Credential"), cr)
        canon += " -Credential %s" % cr
        host = vmn
    elif kind == "vmid":
        vmn = ctx.choice(["Lab-DC01", "SQL-Test", "Win11-Dev"])
        idv = ctx.var("vmid", "guid", "id")
        pre.append("%s = (Get-VM -Name %s).VMId" % (idv, sq(vmn)))
        lines, cr = cred_lines(ctx)
        pre.extend(lines)
        args = "%s %s %s %s" % (ctx.case("-VMId"), idv, ctx.case("-Credential"), cr)
        canon = "Enter-PSSession -VMId %s -Credential %s" % (idv, cr)
        note = "PowerShell Direct by VM id (local)"
        host = vmn
    elif kind == "container":
        cname = ctx.choice(["iis01", "build-agent", "api-test", "sqlexpress"])
        idv = ctx.var("cid", "containerId", "ctr")
        pre.append("%s = docker inspect --format '{{.Id}}' %s" % (idv, cname))
        args = "%s %s" % (ctx.case("-ContainerId"), idv)
        canon = "Enter-PSSession -ContainerId %s" % idv
        if ctx.r() < 0.5:
            args += " " + ctx.case("-RunAsAdministrator")
            canon += " -RunAsAdministrator"
        note = "session into a local container (local)"
        host = cname
    else:
        raise ValueError(kind)
    return Target(kind, local, pre, args + extra_txt, canon + extra_canon, host, note, ps7)


# ---------------------------------------------------------------------------
# Benign admin lines around the interesting part.

def benign_lines(ctx, host_hint=None):
    h = host_hint or remote_host(ctx)
    lv = ctx.var("log", "logFile", "logPath", "transcriptPath")
    pool = [
        "$ProgressPreference = 'SilentlyContinue'",
        "[Net.ServicePointManager]::SecurityProtocol = [Net.SecurityProtocolType]::Tls12",
        "%s = Join-Path $env:TEMP ('ops-{0:yyyyMMdd}.log' -f (Get-Date))" % lv,
        "Write-Verbose ('[{0}] pre-checks' -f (Get-Date -Format T)) -Verbose",
        "$null = Get-Service -Name WinRM -ErrorAction SilentlyContinue",
        "Get-Process -Name explorer -ErrorAction SilentlyContinue | Out-Null",
        "%s = [Diagnostics.Stopwatch]::StartNew()" % ctx.var("sw", "timer", "clock"),
        "%s = [Security.Principal.WindowsIdentity]::GetCurrent().Name" % ctx.var("who", "me", "runAs"),
        "Write-Host 'Checking prerequisites...' -ForegroundColor Cyan",
        "Test-Connection -ComputerName %s -Count 1 -Quiet | Out-Null" % h,
        "%s = Get-Date" % ctx.var("started", "t0", "begin"),
        "Import-Module Microsoft.PowerShell.Management",
        "%s = $PSVersionTable.PSVersion.Major" % ctx.var("major", "psv", "ver"),
        "Get-Service -Name WinRM | Select-Object Status, StartType",
        "%s = Get-CimInstance -ClassName Win32_OperatingSystem | Select-Object -ExpandProperty Caption" % ctx.var("os", "osName"),
        "# change ticket CHG%07d" % ctx.rng.randint(1, 9999999),
        "Write-Output \"Running as $env:USERNAME on $env:COMPUTERNAME\"",
        "Add-Type -AssemblyName System.Web",
    ]
    k = ctx.rng.randint(0, 3)
    return ctx.rng.sample(pool, k)


def trailing_lines(ctx):
    pool = ["Write-Host 'done'", "Exit-PSSession", "Write-Verbose 'finished' -Verbose",
            "Get-Date -Format o", "# end"]
    k = ctx.choice([0, 0, 1])
    return ctx.rng.sample(pool, k)


def block(*lines):
    """One statement written over several lines (function, try/catch, switch)."""
    return "\n".join(lines)


def assemble(ctx, body, host_hint=None, pre=None, realistic=True):
    """Statements -> script. Each item is one complete statement (it may span lines),
    so joining them with '; ' on one line is as valid as joining with newlines."""
    stmts = []
    if realistic:
        stmts += benign_lines(ctx, host_hint)
    stmts += (pre or [])
    stmts += body
    if realistic:
        stmts += trailing_lines(ctx)
    stmts = [x.rstrip() for x in stmts]
    for x in stmts:
        assert x and not x.endswith(";"), x
    one_line = ctx.r() < 0.15 and not any(x.lstrip().startswith("#") for x in stmts)
    return ("; " if one_line else "\n").join(stmts)


# ---------------------------------------------------------------------------
# Samples.

# Note fragments that say PowerShell 5.1 and 7 read the script differently (each is
# written by one builder below): such a sample is not scored.
VERSIONS_DIFFER = (
    "only in Windows PowerShell 5.1",
    "exists only in PowerShell 7",
    "SSH transport to localhost (PowerShell 7)",
    "PowerShell 7 only",
    "PowerShell 7.1+",
    "plain e in Windows PowerShell 5.1",
    "the built-in etsn is AllScope",
)


def sample(label, category, note, script, layers, expect=""):
    assert label in ("remote", "local", "none")
    assert category in CATEGORIES
    assert layers and all(l in LAYERS for l in layers), layers
    if label == "none":
        assert expect == ""
    else:
        assert expect.startswith("Enter-PSSession"), expect
    # note fragments may repeat when layers repeat
    parts = []
    for part in note.split("; "):
        if part and part not in parts:
            parts.append(part)
    rec = {"label": label, "category": category, "note": "; ".join(parts), "script": script,
           "layers": list(layers), "expect_command": expect}
    if any(p in rec["note"] for p in VERSIONS_DIFFER):
        rec["scored"] = False
    return rec


def want_local(label):
    return label == "local"


# ---- obf-name ---------------------------------------------------------------

def build_name(ctx, name, builder=None):
    b = builder or ctx.choice(NAME_BUILDERS)
    pre, expr, layers = b(ctx, name)
    return pre, expr, layers


def obf_name_positive(ctx, label, i):
    t = make_target(ctx, want_local(label))
    name = ctx.choice(["Enter-PSSession"] * 5 + ["etsn", "Microsoft.PowerShell.Core\\Enter-PSSession"])
    builder = NAME_BUILDERS[i % len(NAME_BUILDERS)]
    notes = []
    if builder is b_case and ctx.r() < 0.5 and "\\" not in name:
        # a bare word in random case, no call operator
        cmd = ctx.case(name, 1.0)
        body = ["%s %s" % (cmd, t.args)]
        layers = ["case"]
        notes.append("command lookup ignores case")
    else:
        pre, expr, layers = build_name(ctx, name, builder)
        op = ctx.choice(["&", ".", "& ", ". "])
        body = pre + ["%s%s %s" % (op, expr, t.args)]
        notes.append("the name is built at run time (%s) and invoked with %s" % (layers[0], op.strip()))
        if op.strip() == ".":
            notes.append("dot-sourcing a cmdlet just runs it")
    if "\\" in name:
        notes.append("module-qualified name of the cmdlet")
    # argument obfuscation (Invoke-Obfuscation TOKEN\ARGUMENT) on a literal host
    if t.kind == "cn" and ctx.r() < 0.3 and not t.host.startswith(("(", "$")) and t.host != ".":
        hp, hexpr, hl = ctx.choice([b_concat, b_format])(ctx, t.host)
        old = body[-1]
        hv_forms = [t.host, sq(t.host), '"%s"' % t.host]
        for form in hv_forms:
            if old.endswith(" " + form) or (" " + form + " ") in old:
                body[-1] = old.replace(" " + form, " " + hexpr, 1)
                layers = layers + hl
                notes.append("host name also built at run time")
                break
    if t.note:
        notes.append(t.note)
    script = assemble(ctx, body, t.host if not t.local else None, pre=t.pre)
    return sample(label, "obf-name", "; ".join(notes), script, layers, t.canon)


BENIGN_CMDS = [
    ("Get-Process", "-Name %s" % "lsass", "Get-Process"),
    ("Get-Service", "-Name WinRM", "Get-Service"),
    ("Get-Service", "-ComputerName {h} -Name Spooler", "Get-Service of a remote host is not a session"),
    ("Exit-PSSession", "", "Exit-PSSession outside a session does nothing"),
    ("Get-PSSession", "", "Get-PSSession only lists sessions"),
    ("Test-WSMan", "-ComputerName {h}", "Test-WSMan only probes WinRM"),
    ("Get-WinEvent", "-ComputerName {h} -LogName System -MaxEvents 20", "remote event log read, no session"),
    ("Enter-PSHostProcess", "-Name w3wp", "Enter-PSHostProcess attaches to a local process, not a PSSession"),
    ("Get-Help", "Enter-PSSession -Examples", "help text only"),
    ("Get-Command", "Enter-PSSession -Syntax", "syntax listing only"),
]


NEAR_MISS_COUNTER = [0]


def obf_name_negative(ctx, i):
    kind = i % 6
    h = remote_host(ctx)
    if kind in (0, 1):
        # same obfuscation around a benign command
        name, args, why = BENIGN_CMDS[(i // 2) % len(BENIGN_CMDS)]
        builder = NAME_BUILDERS[i % len(NAME_BUILDERS)]
        pre, expr, layers = build_name(ctx, name, builder)
        body = pre + ["%s%s %s" % (ctx.choice(["&", ".", "& "]), expr, args.format(h=h))]
        note = "the run-time name is %s: %s" % (name, why)
    elif kind == 2:
        # Invoke-Command -ComputerName / New-PSSession + Invoke-Command behind an obfuscated name
        builder = NAME_BUILDERS[(i + 3) % len(NAME_BUILDERS)]
        if ctx.r() < 0.5:
            pre, expr, layers = build_name(ctx, "Invoke-Command", builder)
            body = pre + ["& %s -ComputerName %s -ScriptBlock { Get-Service W3SVC | Restart-Service -PassThru }" % (expr, h)]
            note = "Invoke-Command -ComputerName runs one block remotely; it is not an interactive session"
        else:
            pre, expr, layers = build_name(ctx, "New-PSSession", builder)
            sv = ctx.var("s", "sess", "rs")
            body = pre + ["%s = & %s -ComputerName %s" % (sv, expr, h),
                          "Invoke-Command -Session %s -ScriptBlock { Get-HotFix | Select-Object -Last 5 }" % sv,
                          "Remove-PSSession %s" % sv]
            note = "the session made by the obfuscated New-PSSession is only used by Invoke-Command"
    elif kind == 3:
        # the cmdlet name is built but only printed or logged
        builder = NAME_BUILDERS[i % len(NAME_BUILDERS)]
        pre, expr, layers = build_name(ctx, ctx.choice(["Enter-PSSession", "etsn"]), builder)
        v = ctx.var("n", "name", "cmd", "verbNoun")
        body = pre + ["%s = %s" % (v, expr),
                      ctx.choice(["Write-Host \"next step: %s -ComputerName %s\"" % (v, h),
                                  "Add-Content -Path .\\runbook.txt -Value (\"{0} {1}\" -f %s, '%s')" % (v, h),
                                  "Write-Output (%s + ' -cn %s')" % (v, h)])]
        note = "the name Enter-PSSession is assembled and printed, never invoked"
    else:
        # near miss: the computation does not give Enter-PSSession
        name = "Enter-PSSession"
        w = NEAR_MISS_COUNTER[0] % 5
        NEAR_MISS_COUNTER[0] += 1
        if w == 0:
            pre, expr, layers = b_reverse(ctx, name, variant=0, drop=1)
            got = name[:-1]
            why = "[-1..-%d] takes one character too few" % (len(name) - 1)
        elif w == 1:
            lit = "Enter-PSSessionQ"
            mk = "q"
            expr = "(%s).%s(%s,'')" % (sq(lit), ctx.case("Replace"), sq(mk))
            got = decode_replace(expr)
            layers = ["replace"]
            pre = []
            why = ".Replace() is case-sensitive, so the Q stays"
        elif w == 2:
            pre, expr, layers = b_substring(ctx, name, variant=0, off=1)
            got = None
            why = "Substring starts one character late"
        elif w == 3:
            pos = ctx.rng.randrange(len(name))
            if name[pos] in "-":
                pos = 0
            pre, expr, layers = b_chars(ctx, name, variant=ctx.rng.randrange(3), typo=pos)
            got = None
            why = "one character code is off by one"
        else:
            lit = "Enter-PSSession"
            expr = "(%s -%s 'S+e','Se')" % (sq("Enter-PSSSSession"), ctx.case("creplace"))
            pre = []
            layers = ["replace"]
            got = decode_replace(expr)
            why = "-creplace 'S+e' turns SSSSe into Se, leaving Enter-PSession"
        if got is not None:
            assert got.lower() not in ("enter-pssession", "etsn") and not is_known_command(got), got
        body = pre + ["& %s -ComputerName %s" % (expr, h)]
        note = "near miss: %s; the name is not a command, so the call fails" % why
    script = assemble(ctx, body, h)
    return sample("none", "obf-name", note, script, layers)


# ---- obf-object ---------------------------------------------------------------

POS_GCM = ["E?ter-PSSess?on", "*ter-PSSess?on", "En*-PSSession", "?nter-PSS*", "Enter-PS[S]ession",
           "*ter-PSSession", "Ent?r-PSSess*"]
NEG_GCM = [("*ter-PSS*", "matches Enter-PSSession, Register-PSSessionConfiguration and Unregister-PSSessionConfiguration"),
           ("En*-PSSess*n", "matches Enter-PSSession and Enable-PSSessionConfiguration"),
           ("Ex*-PSSession", "matches Exit-PSSession and Export-PSSession")]


def verify_gcm():
    for p in POS_GCM:
        assert wildcard_hits(p) == ["Enter-PSSession"], (p, wildcard_hits(p))
    for p, _ in NEG_GCM:
        assert len(wildcard_hits(p)) >= 2, (p, wildcard_hits(p))
    assert wildcard_hits("Exi*-PSSess*") == ["Exit-PSSession"]
    assert wildcard_hits("et?n") == ["etsn"]
    assert [n for n in BUILTIN_ALIASES if n.lower() == "etsn"] == ["etsn"]


def obf_object_positive(ctx, label, i):
    t = make_target(ctx, want_local(label))
    k = i % 12
    notes = []
    pre = []
    if k == 0:
        pat = POS_GCM[(i // 12) % len(POS_GCM)]
        assert wildcard_hits(pat) == ["Enter-PSSession"]
        line = "& (%s %s) %s" % (ctx.case(ctx.choice(["gcm", "Get-Command"])), ctx.choice([pat, sq(pat)]), t.args)
        layers = ["get-command"]
        notes.append("wildcard %s matches only Enter-PSSession among the built-in commands" % pat)
    elif k == 1:
        p2, expr, l2 = build_name(ctx, "Enter-PSSession", ctx.choice([b_concat, b_format, b_join]))
        cv = ctx.var("c", "cmd", "ci", "fn")
        pre = p2 + ["%s = %s -%s %s -%s Cmdlet" % (cv, ctx.case("Get-Command"), ctx.case("Name"), expr, ctx.case("CommandType"))]
        line = "& %s %s" % (cv, t.args)
        layers = ["get-command"] + l2
        notes.append("CmdletInfo from Get-Command invoked with &")
    elif k == 2:
        line = "& (%s -%s Enter -%s PSSession) %s" % (ctx.case("Get-Command"), ctx.case("Verb"), ctx.case("Noun"), t.args)
        layers = ["get-command"]
        notes.append("-Verb Enter -Noun PSSession finds only Enter-PSSession")
    elif k == 3:
        line = "& (%s %s) %s" % (ctx.case(ctx.choice(["Get-Alias", "gal"])), ctx.choice(["etsn", "et?n", "'etsn'"]), t.args)
        layers = ["get-alias"]
        notes.append("the AliasInfo of etsn resolves to Enter-PSSession")
    elif k == 4:
        line = "& (%s -%s Enter-PSSession).%s %s" % (ctx.case("Get-Alias"), ctx.case("Definition"),
                                                     ctx.case(ctx.choice(["ReferencedCommand", "ResolvedCommand", "Definition"])), t.args)
        layers = ["get-alias"]
        notes.append("the alias for Enter-PSSession, followed back to the cmdlet")
    elif k == 5:
        p2, expr, l2 = build_name(ctx, "Enter-PSSession", ctx.choice([b_concat, b_reverse, b_chars]))
        pre = p2
        line = "& $%s.%s.%s(%s, %s) %s" % (ctx.case("ExecutionContext"), ctx.case("InvokeCommand"), ctx.case("GetCommand"),
                                          expr, sq(ctx.case("Cmdlet")), t.args)
        layers = ["execution-context"] + l2
        notes.append("$ExecutionContext.InvokeCommand.GetCommand returns the CmdletInfo")
    elif k == 6:
        p2, expr, l2 = build_name(ctx, "Enter-PSSession", ctx.choice([b_format, b_replace, b_join, b_substring]))
        pre = p2
        line = ". $%s.%s.%s(%s) %s" % (ctx.case("ExecutionContext"), ctx.case("InvokeCommand"), ctx.case("GetCmdlet"), expr, t.args)
        layers = ["execution-context"] + l2
        notes.append("GetCmdlet returns the CmdletInfo")
    elif k == 7:
        pat = ctx.choice(POS_GCM)
        line = "& $%s.%s.%s(%s, $true, $false) %s" % (ctx.case("ExecutionContext"), ctx.case("InvokeCommand"),
                                                      ctx.case("GetCommandName"), sq(pat), t.args)
        layers = ["execution-context"]
        notes.append("GetCommandName returns a one-element list of names; & turns it into the string Enter-PSSession")
    elif k == 8:
        pv, expr, l2 = ctx.choice([b_concat, b_join])(ctx, "Enter-PSSession %s" % t.args)
        pre = pv
        line = "$%s.%s.%s(%s)" % (ctx.case("ExecutionContext"), ctx.case("InvokeCommand"), ctx.case("InvokeScript"), expr)
        layers = ["execution-context"] + l2
        notes.append("InvokeScript runs the string")
    elif k == 9:
        body = "%s %s" % (ctx.case("etsn"), t.args)
        line = "$%s.%s.%s(%s)" % (ctx.case("ExecutionContext"), ctx.case("InvokeCommand"), ctx.case("ExpandString"),
                                  sq("$(%s)" % body))
        layers = ["execution-context"]
        notes.append("ExpandString evaluates the $( ) subexpression, which runs etsn")
    elif k == 10:
        sv = ctx.var("sb", "block", "code", "job", "task")
        p2, expr, l2 = ctx.choice([b_concat, b_format])(ctx, "Enter-PSSession %s" % t.args)
        how = ctx.choice(["& %s", ". %s", "%s.Invoke()", "Invoke-Command -ScriptBlock %s", "Invoke-Command %s -NoNewScope",
                          "%s.InvokeReturnAsIs()"])
        pre = p2 + ["%s = %s::%s(%s)" % (sv, ctx.case("[scriptblock]"), ctx.case("Create"), expr)]
        line = how % sv
        layers = ["scriptblock-create"] + l2
        notes.append("scriptblock created from a string and run (%s)" % (how % "$sb"))
        if "Invoke-Command" in how:
            notes.append("Invoke-Command without -ComputerName runs it here")
    else:
        sv = ctx.var("sb", "blk", "step")
        line_sb = "%s = $%s.%s.%s(%s)" % (sv, ctx.case("ExecutionContext"), ctx.case("InvokeCommand"),
                                         ctx.case("NewScriptBlock"), sq("%s %s" % (ctx.case("etsn", 1.0), t.args)))
        pre = [line_sb]
        line = ctx.choice(["& %s", "%s.Invoke()"]) % sv
        layers = ["execution-context"]
        notes.append("NewScriptBlock from a string, then invoked")
    if t.note:
        notes.append(t.note)
    script = assemble(ctx, pre + [line], t.host if not t.local else None, pre=t.pre)
    return sample(label, "obf-object", "; ".join(notes), script, layers, t.canon)


def obf_object_negative(ctx, i):
    h = remote_host(ctx)
    k = i % 14
    if k == 0:
        pat, why = NEG_GCM[(i // 10) % len(NEG_GCM)]
        line = "& (%s %s) -ComputerName %s" % (ctx.case("Get-Command"), pat, h)
        layers = ["get-command"]
        note = ("wildcard %s %s; & turns the array into one name with spaces, which is no command, so nothing runs"
                % (pat, why))
        body = [line]
    elif k == 1:
        body = ["& (%s Exi*-PSSess*)" % ctx.case("gcm")]
        layers = ["get-command"]
        note = "the wildcard matches only Exit-PSSession, which does nothing outside a session"
    elif k == 2:
        p2, expr, l2 = build_name(ctx, "Enter-PSSession", ctx.choice([b_concat, b_format]))
        body = p2 + ["(%s %s).Parameters.Keys | Sort-Object" % (ctx.case("Get-Command"), expr)]
        layers = ["get-command"] + l2
        note = "the command object is only inspected"
    elif k == 3:
        cv = ctx.var("c", "cmdInfo")
        body = ["%s = $ExecutionContext.InvokeCommand.GetCmdlet('Enter-PSSession')" % cv,
                "%s | Format-List Name, ModuleName, ImplementingType" % cv]
        layers = ["execution-context"]
        note = "the CmdletInfo is fetched and formatted, never invoked"
    elif k == 4:
        sv = ctx.var("sb", "block")
        body = ["%s = [scriptblock]::Create(%s)" % (sv, sq("etsn %s" % h)),
                "%s.ToString() | Out-File -FilePath .\\pending.ps1" % sv]
        layers = ["scriptblock-create"]
        note = "the scriptblock is created and saved as text, never invoked"
    elif k == 5:
        p2, expr, l2 = b_concat(ctx, "Get-Service -Name WinRM, W32Time")
        body = p2 + ["Invoke-Command -ComputerName %s -ScriptBlock ([scriptblock]::Create(%s))" % (h, expr)]
        layers = ["scriptblock-create"] + l2
        note = "Invoke-Command -ComputerName runs a Get-Service block remotely; no interactive session"
    elif k == 6:
        body = ["$ExecutionContext.InvokeCommand.ExpandString(%s)" % sq("etsn %s" % h)]
        layers = ["execution-context"]
        note = "ExpandString of text without $( ) only returns the text"
    elif k == 7:
        body = ["(%s etsn).Definition | Write-Host" % ctx.case("Get-Alias")]
        layers = ["get-alias"]
        note = "the alias definition is printed"
    elif k == 8:
        body = ["& (%s exsn)" % ctx.case("Get-Alias")]
        layers = ["get-alias"]
        note = "exsn is Exit-PSSession"
    elif k == 9:
        p2, expr, l2 = b_format(ctx, "Get-PSSession | Remove-PSSession")
        body = p2 + ["$ExecutionContext.InvokeCommand.InvokeScript(%s)" % expr]
        layers = ["execution-context"] + l2
        note = "InvokeScript runs Get-PSSession | Remove-PSSession"
    elif k == 10:
        pat = ctx.choice(POS_GCM)
        body = ["& (%s %s) -ComputerName %s -?" % (ctx.case("Get-Command"), pat, h)]
        layers = ["get-command"]
        note = "-? anywhere in the call makes PowerShell show help instead of running the cmdlet"
    elif k == 11:
        pat = NEG_GCM[(i // 14) % len(NEG_GCM)][0]
        assert len(wildcard_hits(pat)) >= 2
        body = ["& $ExecutionContext.InvokeCommand.GetCommandName(%s, $true, $false) %s" % (sq(pat), h)]
        layers = ["execution-context"]
        note = ("GetCommandName(%s) returns several names; & joins them with spaces into one name that is no command"
                % pat)
    elif k == 12:
        sv = ctx.var("s", "sess", "rs")
        p2, expr, l2 = b_reverse(ctx, "Get-Process -Name w3wp | Stop-Process -WhatIf", variant=0)
        body = p2 + ["%s = New-PSSession -ComputerName %s" % (sv, h),
                     "Invoke-Command -Session %s -ScriptBlock ([scriptblock]::Create(%s))" % (sv, expr),
                     "Remove-PSSession %s" % sv]
        layers = ["scriptblock-create"] + l2
        note = "the created scriptblock runs in a PSSession through Invoke-Command; nothing enters the session"
    else:
        body = ["$ExecutionContext.InvokeCommand.GetCommand('Enter-PSSession', 'Cmdlet').Parameters['ComputerName'].ParameterType.FullName"]
        layers = ["execution-context"]
        note = "the CmdletInfo is only inspected (ComputerName is a System.String)"
    script = assemble(ctx, body, h)
    return sample("none", "obf-object", note, script, layers)


# ---- obf-encoded ---------------------------------------------------------------

ENCODERS = ["base64-utf16le", "base64-utf8", "base64-ascii", "deflate", "gzip", "bxor", "hex", "octal"]


def payload_for(ctx, t, name=None):
    name = name or ctx.choice(["Enter-PSSession", "Enter-PSSession", "etsn"])
    cmd = "%s %s" % (ctx.case(name, ctx.obf * 0.6), t.args)
    return "; ".join(t.pre + [cmd])


def encoded_command_line(ctx, p):
    """powershell -EncodedCommand with the base64 built at run time from constants."""
    b64 = base64.b64encode(p.encode("utf-16-le")).decode()
    assert base64.b64decode(b64).decode("utf-16-le") == p
    exe = ctx.case(ctx.choice(["powershell", "powershell.exe", "PowerShell.exe"]), ctx.obf * 0.5)
    flag = ctx.choice(["-EncodedCommand", "-enc", "-ec", "-e"])
    opts = ctx.choice(["-NoP -W Hidden -NoExit", "-NoProfile", "-nop -w hidden", "-NoLogo -NoProfile", "-NoExit", ""])
    v = ctx.var("e", "b", "blob", "enc", "arg")
    r = ctx.rng.randrange(3)
    if r == 0:
        pre, expr, layers = b_concat(ctx, b64)
    elif r == 1:
        pre, expr, layers = b_join(ctx, b64)
    else:
        pre, expr, layers = b_format(ctx, b64)
    lines = pre + ["%s = %s" % (v, expr), " ".join(x for x in [exe, opts, flag, v] if x)]
    return lines, ["encoded-command"] + layers


def obf_encoded_positive(ctx, label, i):
    t = make_target(ctx, want_local(label), extras=True)
    p = payload_for(ctx, t)
    notes = []
    if i % 6 == 5:
        lines, layers = encoded_command_line(ctx, p)
        notes.append("powershell -EncodedCommand of a base64 string joined at run time; the child runs %s" % t.canon)
    else:
        tag = ENCODERS[i % len(ENCODERS)]
        pre, expr, layers = encode_payload(ctx, p, tag)
        stmt, il, n2 = invoke(ctx, expr)
        lines = pre + [stmt]
        layers = layers + il
        notes.append("%s payload decoded and run" % tag)
        if n2:
            notes.append(n2)
    if t.note:
        notes.append(t.note)
    script = assemble(ctx, lines, t.host if not t.local else None)
    return sample(label, "obf-encoded", "; ".join(notes), script, layers, t.canon)


def benign_payload(ctx, h):
    return ctx.choice([
        "Get-Service -Name WinRM, W32Time | Select-Object Name, Status",
        "Invoke-Command -ComputerName %s -ScriptBlock { Get-Process | Sort-Object CPU -Descending | Select-Object -First 5 }" % h,
        "$s = New-PSSession -ComputerName %s; Invoke-Command -Session $s -ScriptBlock { ipconfig /all }; Remove-PSSession $s" % h,
        "Write-Host 'Enter-PSSession -ComputerName %s'" % h,
        "function Connect-Target { Enter-PSSession -ComputerName %s }" % h,
        "# Enter-PSSession -ComputerName %s" % h,
        "Get-Help Enter-PSSession -Parameter ComputerName",
        "New-PSSession -ComputerName %s -Name nightly | Out-Null" % h,
        "Test-WSMan -ComputerName %s -ErrorAction SilentlyContinue" % h,
        "Get-ChildItem -Path C:\\Windows\\Temp -Filter *.tmp | Remove-Item -WhatIf",
    ])


def benign_payload_note(p):
    if p.startswith("Write-Host"):
        return "the decoded script only prints the command text"
    if p.startswith("function"):
        return "the decoded script only defines a function that is never called"
    if p.startswith("#"):
        return "the decoded script is a comment"
    if p.startswith("Invoke-Command"):
        return "the decoded script runs Invoke-Command -ComputerName, not an interactive session"
    if p.startswith("$s = New-PSSession"):
        return "the decoded script uses a PSSession only with Invoke-Command"
    if p.startswith("New-PSSession"):
        return "the decoded script only creates a session"
    return "the decoded script is a benign command"


def obf_encoded_negative(ctx, i):
    h = remote_host(ctx)
    k = i % 3
    tag = ENCODERS[i % len(ENCODERS)]
    if k == 0:
        # decodes the real Enter-PSSession payload but never runs it
        t = make_target(ctx, False, kinds=["cn"], extras=False)
        p = payload_for(ctx, t)
        pre, expr, layers = encode_payload(ctx, p, tag)
        lines = pre + sink(ctx, expr)
        note = "the %s payload (%s) is decoded but only printed, logged or saved" % (tag, t.canon)
    elif k == 1:
        p = benign_payload(ctx, h)
        if tag in ("deflate", "gzip", "base64-ascii"):
            assert all(ord(c) < 128 for c in p)
        if i % 4 == 1:
            lines, layers = encoded_command_line(ctx, p)
            note = "powershell -EncodedCommand; " + benign_payload_note(p)
        else:
            pre, expr, layers = encode_payload(ctx, p, tag)
            stmt, il, _ = invoke(ctx, expr)
            lines = pre + [stmt]
            layers = layers + il
            note = benign_payload_note(p)
    else:
        # the Enter-PSSession payload, run through a character pick that does not spell iex
        t = make_target(ctx, False, kinds=["cn"], extras=False)
        p = payload_for(ctx, t)
        pre, expr, layers = encode_payload(ctx, p, tag)
        bp, spelled = bad_pick(ctx)
        lines = pre + ["& %s %s" % (bp, as_arg(expr))]
        layers = layers + ["char-pick-iex"]
        note = "the character pick spells %r, not iex, so the decoded payload is never run" % spelled
    script = assemble(ctx, lines, h)
    return sample("none", "obf-encoded", note, script, layers)


# ---- definitions ---------------------------------------------------------------

def definitions_positive(ctx, label, i):
    t = make_target(ctx, want_local(label), kinds=["cn"] * 4 + (["vm"] if label == "local" else ["uri"]), extras=False)
    k = i % 9
    fn_body = ctx.choice(["Write-Host \"[audit] $env:USERNAME -> $ComputerName\"",
                          "Add-Content -Path $env:TEMP\\remoting.log -Value (\"{0} {1}\" -f (Get-Date -Format s), $ComputerName)",
                          "Write-Verbose \"connecting to $ComputerName\" -Verbose"])
    if k == 0:
        # proxy function that forwards to the module-qualified cmdlet
        body = [block("function Enter-PSSession {",
                      "    [CmdletBinding()]",
                      "    param(",
                      "        [Parameter(Position = 0)][Alias('Cn')][string]$ComputerName,",
                      "        [Alias('URI', 'CU')][string]$ConnectionUri,",
                      "        [pscredential]$Credential,",
                      "        [string]$VMName",
                      "    )",
                      "    " + fn_body,
                      "    Microsoft.PowerShell.Core\\Enter-PSSession @PSBoundParameters",
                      "}"),
                "Enter-PSSession %s" % t.args]
        layers = ["function-shadow"]
        note = "a proxy function shadows the cmdlet but calls Microsoft.PowerShell.Core\\Enter-PSSession with the same parameters"
    elif k == 1:
        body = ["function etsn { param($x) Write-Host \"etsn disabled ($x)\" }",
                "%s %s" % (ctx.case("etsn"), t.args)]
        layers = ["function-shadow"]
        note = "an alias is found before a function of the same name, so etsn is still the built-in alias of Enter-PSSession"
    elif k == 2:
        an = ctx.choice(["ls2", "gsvc", "ping2", "rcon", "Get-Status", "x1"])
        p2, expr, l2 = build_name(ctx, "Enter-PSSession", ctx.choice([b_concat, b_format, b_reverse]))
        body = p2 + ["%s -%s %s -%s %s" % (ctx.case(ctx.choice(["Set-Alias", "New-Alias", "sal", "nal"])), ctx.case("Name"), an,
                                           ctx.case("Value"), expr),
                     "%s %s" % (an, t.args)]
        layers = ["alias-redefinition"] + l2
        note = "an alias named %s is pointed at Enter-PSSession (name built at run time) and used" % an
    elif k == 3:
        an = ctx.choice(["jump", "go2", "hop"])
        body = ["New-Alias -Name %s -Value etsn" % an, "%s %s" % (an, t.args)]
        layers = ["alias-redefinition"]
        note = "an alias of the alias etsn resolves to Enter-PSSession"
    elif k in (4, 5):
        key_cmd = ctx.choice(["Enter-PSSession", "etsn", "Enter-PS*"])
        if t.kind == "vm":
            return definitions_positive(ctx, label, i + 2)
        h = t.host
        key_par = ctx.choice(["ComputerName", "Cn"])
        hexpr = sq(h) if not h.startswith(("$", "(")) else h.strip("()")
        if k == 4:
            body = ["$PSDefaultParameterValues[%s] = %s" % (sq("%s:%s" % (key_cmd, key_par)), hexpr),
                    ctx.case("Enter-PSSession", ctx.obf * 0.5)]
        else:
            pre2, expr, l2 = b_concat(ctx, "%s:%s" % (key_cmd, key_par))
            body = ["$PSDefaultParameterValues = @{ %s = %s; 'Enter-PSSession:Authentication' = 'Negotiate' }" % (expr, hexpr),
                    ctx.case("Enter-PSSession", ctx.obf * 0.5)]
        layers = ["default-parameter-values"] + ([] if k == 4 else ["concat"])
        note = ("$PSDefaultParameterValues supplies -ComputerName %s to the bare Enter-PSSession (keys may use the alias etsn, "
                "the parameter alias Cn and wildcards)" % h)
        script = assemble(ctx, body, None)
        # the dictionary's other default applies too
        also = "" if k == 4 else " -Authentication Negotiate"
        return sample(label, "definitions", note + ("; " + t.note if t.note else ""), script, layers,
                      "Enter-PSSession -ComputerName %s%s" % (h.strip("()"), also))
    elif k == 6:
        body = ["function Enter-PSSession { param($ComputerName) Write-Warning \"blocked: $ComputerName\" }",
                "Remove-Item -Path Function:\\Enter-PSSession",
                "Enter-PSSession %s" % t.args]
        layers = ["function-shadow"]
        note = "the shadowing function is removed again before the call, so the cmdlet runs"
    elif k == 7:
        body = [block("function Initialize-Guard {",
                      "    function Enter-PSSession { Write-Warning 'remoting disabled' }",
                      "    Write-Verbose 'guard loaded'",
                      "}"),
                "Initialize-Guard",
                "Enter-PSSession %s" % t.args]
        layers = ["function-shadow"]
        note = "the shadowing function is defined inside Initialize-Guard's scope and is gone when it returns"
    else:
        body = ["function Disable-Remoting { Set-Alias -Name etsn -Value Write-Host }",
                "Disable-Remoting",
                "etsn %s" % t.args]
        layers = ["alias-redefinition"]
        note = ("Set-Alias inside a function sets the alias in the function's scope only (PowerShell 7: etsn has no "
                "AllScope option). In Windows PowerShell 5.1 the built-in etsn is AllScope and the change may reach the "
                "script scope; the PowerShell 7 reading opens the session")
    if t.note:
        note += "; " + t.note
    script = assemble(ctx, body, None, pre=t.pre)
    return sample(label, "definitions", note, script, layers, t.canon)


def definitions_negative(ctx, i):
    h = remote_host(ctx)
    k = i % 8
    if k == 0:
        body = [block("function Enter-PSSession {",
                      "    param([string]$ComputerName)",
                      "    Write-Host \"Would open a session to $ComputerName (dry run)\"",
                      "}"),
                "Enter-PSSession -ComputerName %s" % h]
        layers = ["function-shadow"]
        note = "the script's own function Enter-PSSession runs instead of the cmdlet (functions come before cmdlets)"
    elif k == 1:
        body = ["filter Enter-PSSession { \"queued: $_\" | Out-File -Append .\\queue.txt }",
                "'%s' | Enter-PSSession" % h]
        layers = ["function-shadow"]
        note = "a filter named Enter-PSSession shadows the cmdlet"
    elif k == 2:
        body = ["function Enter-PSSession { param($ComputerName) Test-WSMan -ComputerName $ComputerName }",
                "%s %s" % (ctx.case("etsn"), h)]
        layers = ["function-shadow"]
        note = "etsn resolves to the name Enter-PSSession, which is the script's function (Test-WSMan only)"
    elif k == 3:
        tgt = ctx.choice(["Test-Connection", "Get-Date", "Write-Host", "Resolve-DnsName", "Test-WSMan"])
        body = ["%s -%s etsn -%s %s" % (ctx.case(ctx.choice(["Set-Alias", "sal"])), ctx.case("Name"), ctx.case("Value"), tgt),
                "etsn %s" % h]
        layers = ["alias-redefinition"]
        note = "etsn is re-pointed at %s before it is used (etsn is not ReadOnly, so Set-Alias succeeds)" % tgt
    elif k == 4:
        p2, expr, l2 = b_concat(ctx, "Get-Service")
        body = p2 + ["New-Alias -Name etsn -Value %s -Force" % expr, "etsn -ComputerName %s" % h]
        layers = ["alias-redefinition", "concat"]
        note = "etsn is redefined to Get-Service (name built at run time); Get-Service -ComputerName is no session"
    elif k == 5:
        body = ["$PSDefaultParameterValues['Invoke-Command:ComputerName'] = '%s'" % h,
                "Invoke-Command -ScriptBlock { Get-Service Spooler }"]
        layers = ["default-parameter-values"]
        note = "the default ComputerName is for Invoke-Command, which runs one block remotely"
    elif k == 6:
        body = ["$PSDefaultParameterValues['Enter-PSSession:ComputerName'] = '%s'" % h,
                "$PSDefaultParameterValues['Enter-PSSession:Credential'] = $null",
                "Write-Host 'Defaults ready; run Enter-PSSession when needed'"]
        layers = ["default-parameter-values"]
        note = "defaults for Enter-PSSession are set but it is never called"
    else:
        body = [block("function Connect-Jump {",
                      "    param([string]$Target = '%s')" % h,
                      "    Microsoft.PowerShell.Core\\Enter-PSSession -ComputerName $Target",
                      "}"),
                "Set-Alias -Name jump -Value Connect-Jump",
                "Write-Host \"type 'jump' to connect\""]
        layers = ["alias-redefinition", "function-shadow"]
        note = "a function and an alias to it are defined, neither is called"
    script = assemble(ctx, body, h)
    return sample("none", "definitions", note, script, layers)


def definitions_local(ctx, i):
    k = i % 3
    h, hc, why = ctx.choice(LOCAL_CN[:6])
    if k == 0:
        r = remote_host(ctx)
        body = ["$PSDefaultParameterValues['Enter-PSSession:ComputerName'] = '%s'" % r,
                "Enter-PSSession -ComputerName %s" % h]
        note = "an explicit -ComputerName %s wins over the default value %s" % (hc, r)
        layers = ["default-parameter-values"]
        expect = "Enter-PSSession -ComputerName %s" % hc
    elif k == 1:
        body = ["function Enter-PSSession { param($ComputerName) Microsoft.PowerShell.Core\\Enter-PSSession -ComputerName $ComputerName -EnableNetworkAccess }",
                "etsn %s" % h]
        note = "proxy function (reached through etsn) enters %s (%s)" % (hc, why)
        layers = ["function-shadow"]
        expect = "Enter-PSSession -ComputerName %s -EnableNetworkAccess" % hc
    else:
        lines, cr = cred_lines(ctx)
        body = lines + ["Set-Alias -Name lab -Value ('Enter-'+'PSSession')", "lab -VMName Lab-DC01 -Credential %s" % cr]
        note = "alias to Enter-PSSession used for PowerShell Direct into a local VM"
        layers = ["alias-redefinition", "concat"]
        expect = "Enter-PSSession -VMName Lab-DC01 -Credential %s" % cr
    script = assemble(ctx, body, None)
    return sample("local", "definitions", note, script, layers, expect)


# ---- splatting ---------------------------------------------------------------

def splat_positive(ctx, label, i):
    local = want_local(label)
    k = i % 10
    pv = ctx.var("p", "params", "splat", "conn", "opts", "args2")
    if local:
        h, hc, why = ctx.choice(LOCAL_CN[:7])
        hl = sq(h) if not h.startswith("$") else h
    else:
        h = remote_host(ctx)
        hc = h
        hl = sq(h)
        why = ""
    lines = []
    layers = ["splatting"]
    note = ""
    if k == 0:
        lines = ["%s = @{ ComputerName = %s }" % (pv, hl), "Enter-PSSession @%s" % pv[1:]]
        expect = "Enter-PSSession -ComputerName %s" % hc
        note = "hashtable splatting"
    elif k == 1:
        lc, cr = cred_lines(ctx)
        lines = lc + ["%s = @{}" % pv, "%s.ComputerName = %s" % (pv, hl), "%s.Credential = %s" % (pv, cr),
                      "%s @%s" % (ctx.case("etsn"), pv[1:])]
        expect = "Enter-PSSession -ComputerName %s -Credential %s" % (hc, cr)
        note = "hashtable filled key by key with property syntax, splatted into etsn"
    elif k == 2:
        user = ctx.choice(["admin", "ops", "deploy"])
        lines = ["%s = @{}" % pv, "%s['HostName'] = %s" % (pv, hl if not local else "'localhost'"),
                 "%s['UserName'] = '%s'" % (pv, user), "Enter-PSSession @%s" % pv[1:]]
        if local:
            hc = "localhost"
            why = "SSH to localhost"
        expect = "Enter-PSSession -HostName %s -UserName %s" % (hc, user)
        note = "HostName/UserName splatted (SSH transport, PowerShell 7 only; that reading opens the session)"
    elif k == 3:
        if local:
            uri = "http://localhost:5985/wsman"
            why = "ConnectionUri to localhost"
        else:
            uri = "https://%s:5986/wsman" % h
        lines = ["%s = @{ ConnectionUri = '%s'; Authentication = 'Negotiate' }" % (pv, uri),
                 "Enter-PSSession @%s -SessionOption (New-PSSessionOption -SkipCACheck)" % pv[1:]]
        expect = "Enter-PSSession -ConnectionUri %s -Authentication Negotiate -SessionOption (New-PSSessionOption -SkipCACheck)" % uri
        note = "splatted ConnectionUri merged with an explicit parameter"
    elif k == 4:
        sv = ctx.var("s", "sess", "rs")
        lines = ["%s = New-PSSession -ComputerName %s" % (sv, hl), "%s = @{ Session = %s }" % (pv, sv),
                 "Enter-PSSession @%s" % pv[1:]]
        expect = "Enter-PSSession -Session %s" % sv
        note = "the splatted Session was made by New-PSSession to %s" % hc
    elif k == 5:
        nm = ctx.choice(["maint", "hotfix", "ops1"])
        lines = ["New-PSSession -ComputerName %s -Name %s | Out-Null" % (hl, nm), "%s = @{ Name = '%s' }" % (pv, nm),
                 "& ('Enter-'+'PSSession') @%s" % pv[1:]]
        layers.append("concat")
        expect = "Enter-PSSession -Name %s" % nm
        note = "splatted -Name of a session to %s, command name built at run time" % hc
    elif k == 6:
        lines = ["%s = @(%s)" % (pv, hl), "Enter-PSSession @%s" % pv[1:]]
        expect = "Enter-PSSession -ComputerName %s" % hc
        note = "array splatting: the element is the first positional argument (-ComputerName)"
    elif k == 7:
        kp, kexpr, kl = ctx.choice([b_concat, b_format])(ctx, "ComputerName")
        lines = ["%s = @{ %s = %s; Port = 5985 }" % (pv, kexpr, hl), "Enter-PSSession @%s" % pv[1:]]
        layers += kl
        expect = "Enter-PSSession -ComputerName %s -Port 5985" % hc
        note = "the hashtable key is computed at run time"
    elif k == 8:
        other = remote_host(ctx) if local else ctx.choice(["localhost", "127.0.0.1"])
        lines = ["%s = @{ ComputerName = '%s'; Authentication = 'Kerberos' }" % (pv, other),
                 "Enter-PSSession @%s -ComputerName %s" % (pv[1:], h)]
        expect = "Enter-PSSession -ComputerName %s -Authentication Kerberos" % hc
        note = ("PowerShell 7.1+ lets the explicit -ComputerName %s override the splatted %s; Windows PowerShell 5.1 "
                "stops with 'parameter specified more than once'" % (hc, other))
        if not local:
            note += "; the 7.1 reading opens the session"
        else:
            note += "; no version opens a remote session, 7.1 opens a local one"
    else:
        kp = ctx.choice(["Cn", "Comp"])
        lines = ["%s = @{ %s = %s }" % (pv, kp, hl), "%s.Add('UseSSL', $true)" % pv, "etsn @%s" % pv[1:]]
        expect = "Enter-PSSession -ComputerName %s -UseSSL" % hc
        note = "splat keys may be a parameter alias (Cn) or a unique prefix (Comp)"
    if why:
        note += "; " + why
    script = assemble(ctx, lines, None if local else h)
    return sample(label, "splatting", note, script, layers, expect)


def splat_negative(ctx, i):
    h = remote_host(ctx)
    pv = ctx.var("p", "params", "splat", "common")
    k = i % 7
    layers = ["splatting"]
    if k == 0:
        lines = ["%s = @{ ComputerName = '%s'; ErrorAction = 'Stop' }" % (pv, h),
                 "Invoke-Command @%s -ScriptBlock { Get-Volume | Where-Object SizeRemaining -lt 5GB }" % pv[1:]]
        note = "the same splat style feeds Invoke-Command, not an interactive session"
    elif k == 1:
        h2 = remote_host(ctx)
        lines = ["%s = @{ ComputerName = '%s', '%s' }" % (pv, h, h2), "Enter-PSSession @%s" % pv[1:]]
        note = ("ComputerName of Enter-PSSession is a single [string]; binding an array to it fails "
                "('Cannot convert System.Object[] to System.String'), so the cmdlet never runs")
    elif k == 2:
        lines = ["%s = @{ ComputerName = '%s'; VMName = 'Lab-DC01' }" % (pv, h), "Enter-PSSession @%s" % pv[1:]]
        note = "ComputerName and VMName belong to different parameter sets: 'Parameter set cannot be resolved'"
    elif k == 3:
        lines = ["%s = @{ ComputerNames = '%s' }" % (pv, h), "Enter-PSSession @%s" % pv[1:]]
        note = "ComputerNames is not a parameter of Enter-PSSession, so binding fails"
    elif k == 4:
        sv = ctx.var("s", "sess")
        lines = ["%s = @{ ComputerName = '%s'; Name = 'patch' }" % (pv, h), "%s = New-PSSession @%s" % (sv, pv[1:]),
                 "Invoke-Command -Session %s -ScriptBlock { Install-WindowsUpdate -AcceptAll -WhatIf }" % sv,
                 "Remove-PSSession %s" % sv]
        note = "splatted New-PSSession used only with Invoke-Command"
    elif k == 5:
        lines = ["%s = @{ ComputerName = '%s' }" % (pv, h),
                 "Test-WSMan @%s; Get-CimInstance @%s -ClassName Win32_BIOS" % (pv[1:], pv[1:])]
        note = "splat used for Test-WSMan and Get-CimInstance"
    else:
        lines = ["%s = @{ ComputerName = ,'%s' }" % (pv, h), "Enter-PSSession @%s" % pv[1:]]
        note = "the unary comma makes a one-element array; an array does not bind to the [string] ComputerName"
    script = assemble(ctx, lines, h)
    return sample("none", "splatting", note, script, layers)


# ---- control-flow ---------------------------------------------------------------

def cf_call(ctx, t, obf=True):
    """The Enter-PSSession line, sometimes with an obfuscated name."""
    if obf and ctx.r() < 0.4:
        pre, expr, layers = build_name(ctx, "Enter-PSSession", ctx.choice([b_concat, b_format, b_join, b_reverse]))
        if pre:
            return ["; ".join(pre + ["& %s %s" % (expr, t.args)])], layers
        return ["& %s %s" % (expr, t.args)], layers
    return ["%s %s" % (ctx.case(ctx.choice(["Enter-PSSession", "etsn"]), ctx.obf * 0.5), t.args)], []


def missing_path(ctx):
    return "C:\\ProgramData\\%s\\%s.cfg" % (ctx.choice(["Contoso", "OpsAgent", "Tanium"]),
                                            "%08x-%04x" % (ctx.rng.getrandbits(32), ctx.rng.getrandbits(16)))


def cf_positive(ctx, label, i):
    t = make_target(ctx, want_local(label), kinds=["cn"] * 5 + ["session", "uri"], extras=False)
    call, lay = cf_call(ctx, t)
    c = call[0]
    k = i % 16
    if k == 0:
        body = ["function Test-Gate { param($n) if (-not $n) { return }; Write-Verbose \"gate $n\" }",
                "Test-Gate -n $null", c]
        note = "return only leaves Test-Gate; the call after it runs"
    elif k == 1:
        body = [block("try {", "    throw 'pre-check failed'", "}", "catch {", "    Write-Warning $_", "    " + c, "}")]
        note = "throw jumps to catch, which opens the session"
    elif k == 2:
        body = [block("try {", "    Get-Item -Path '%s'" % missing_path(ctx), "    " + c, "}",
                      "catch { Write-Warning 'not reached' }")]
        note = "Get-Item's missing-path error is non-terminating: catch is not entered and the next line runs"
    elif k == 3:
        body = ["trap { Write-Warning \"ignored: $_\"; continue }", "throw 'no baseline'", c]
        note = "trap { continue } resumes after the throw"
    elif k == 4:
        body = ["trap { continue }", "function Get-Baseline { throw 'missing baseline' }", "Get-Baseline", c]
        note = "the error from Get-Baseline is trapped in script scope; continue resumes at the next statement"
    elif k == 5:
        body = [block("try {", "    Write-Host 'collecting logs'", "}", "finally {", "    " + c, "}")]
        note = "finally always runs"
    elif k == 6:
        hv = ctx.var("ops", "steps", "actions", "menu")
        key = ctx.choice(["go", "connect", "b"])
        keyexpr = ctx.choice([sq(key), "(%s)" % "+".join(sq(x) for x in split_pieces(ctx.rng, key, 2))] if len(key) > 1 else [sq(key)])
        body = ["%s = @{ check = { Get-Service WinRM }; %s = { %s }; clean = { Remove-Item $env:TEMP\\*.tmp -WhatIf } }" % (hv, key, c),
                "& %s[%s]" % (hv, keyexpr)]
        note = "the scriptblock under key '%s' is the one invoked" % key
    elif k == 7:
        hv = ctx.var("steps", "blocks", "queue")
        body = ["%s = @({ Get-Date }, { %s }, { Get-Process -Id $PID })" % (hv, c), "& %s[-2]" % hv]
        note = "index -2 of a three-element array is element 1, the Enter-PSSession block"
    elif k == 8:
        body = [block("switch ('b') {", "    'a' { Get-Date }", "    'b' { %s }" % c, "    default { Write-Host 'nothing' }", "}")]
        note = "switch on the constant 'b' runs its branch"
    elif k == 9:
        body = ["$null | ForEach-Object { %s }" % c]
        note = "piping $null sends one $null object, so the block runs once"
    elif k == 10:
        body = ["foreach ($i in 1..0) { %s; break }" % c]
        note = "1..0 is the two-element range 1,0 (it counts down), so the loop body runs"
    elif k == 11:
        body = ["do { %s } while ($false)" % c]
        note = "a do/while body runs once before the condition is tested"
    elif k == 12:
        body = ["if ('False') { %s }" % c]
        note = "a non-empty string is true, even 'False'"
    elif k == 13:
        body = ["if (@(0, 0)) { %s }" % c]
        note = "an array of two or more elements is true whatever its elements"
    elif k == 14:
        body = ["$bail = { exit 1 }", "if ($false) { & $bail }", c]
        note = "the exit block is never invoked"
    else:
        sv = ctx.var("old", "stale", "prev")
        body = ["%s = New-PSSession -ComputerName %s" % (sv, remote_host(ctx)), "Remove-PSSession %s" % sv, c]
        note = "an unrelated session is removed; the entered target is still live"
    if t.note:
        note += "; " + t.note
    script = assemble(ctx, body, None if t.local else t.host, pre=t.pre)
    return sample(label, "control-flow", note, script, ["control-flow"] + lay, t.canon)


def cf_negative(ctx, i):
    t = make_target(ctx, False, kinds=["cn"] * 5 + ["uri"], extras=False)
    call, lay = cf_call(ctx, t)
    c = call[0]
    k = i % 19
    pre = t.pre
    if k == 0:
        body = ["function Stop-Early { Write-Warning 'maintenance window closed'; exit 0 }", "Stop-Early", c]
        note = "exit inside a called function ends the whole script"
    elif k == 1:
        body = ["Write-Host 'remote access disabled'", "exit", c]
        note = "code after exit never runs"
    elif k == 2:
        body = [block("function Connect-Ops {", "    param([switch]$Force)", "    if ($Force) { %s }" % c, "}"),
                "Write-Host 'Connect-Ops loaded'"]
        note = "the branch is in a function that is never called"
    elif k == 3:
        body = [block("try {", "    throw 'precondition failed'", "    " + c, "}", "catch { Write-Warning $_.Exception.Message }")]
        note = "throw skips the rest of the try block; catch only warns"
    elif k == 4:
        body = [block("try {", "    $n = [int]'abc'", "    " + c, "}", "catch { Write-Warning 'bad config value' }")]
        note = "the failed [int] conversion is a terminating error inside try, so the rest of the block is skipped"
    elif k == 5:
        body = [block("try {", "    Get-Item -Path '%s' -ErrorAction Stop" % missing_path(ctx), "    " + c, "}",
                      "catch { Write-Warning 'config missing' }")]
        note = "-ErrorAction Stop makes the missing path terminating; the call after it is skipped"
    elif k == 6:
        body = ["trap { Write-Warning $_; break }", "throw 'abort'", c]
        note = "trap { break } stops the script"
    elif k == 7:
        body = ["$ErrorActionPreference = 'Stop'", "Write-Error 'pre-flight check failed'", c]
        note = "with ErrorActionPreference Stop, Write-Error ends the script"
    elif k == 8:
        hv = ctx.var("ops", "menu")
        body = ["%s = @{ check = { Get-Service WinRM }; go = { %s } }" % (hv, c), "& %s['check']" % hv]
        note = "only the 'check' scriptblock is invoked"
    elif k == 9:
        hv = ctx.var("steps", "blocks")
        body = ["%s = @({ Get-Date }, { %s }, { Get-Process -Id $PID })" % (hv, c), "& %s[-1]" % hv]
        note = "index -1 is the last block (Get-Process)"
    elif k == 10:
        body = [block("switch ('a') {", "    'a' { Get-Date }", "    'b' { %s }" % c, "}")]
        note = "switch on the constant 'a' never reaches the Enter-PSSession branch"
    elif k == 11:
        body = ["@() | ForEach-Object { %s }" % c]
        note = "an empty array sends nothing down the pipeline"
    elif k == 12:
        body = ["foreach ($t in $null) { %s }" % c]
        note = "foreach over $null runs zero times (PowerShell 3+)"
    elif k == 13:
        body = ["if (@(0)) { %s }" % c]
        note = "a one-element array is as true as its element; 0 is false"
    elif k == 14:
        body = ["while ($false) { %s }" % c]
        note = "while tests first"
    elif k == 15:
        sv = ctx.var("s", "sess")
        pre = []
        body = ["%s = New-PSSession -ComputerName %s" % (sv, t.host), "Invoke-Command -Session %s { hostname }" % sv,
                "Remove-PSSession %s" % sv, "Enter-PSSession -Session %s" % sv]
        note = "the session is removed (Closed) before Enter-PSSession -Session, which then fails"
        lay = []
    elif k == 16:
        sv = ctx.var("s", "sess")
        pre = []
        body = ["%s = New-PSSession -ComputerName %s -Name ops" % (sv, t.host), "Get-PSSession | Remove-PSSession",
                "etsn -Session %s" % sv]
        note = "every session, this one included, is removed before it is entered"
        lay = []
    elif k == 17:
        body = ["if (1) { return }", c]
        note = "return at script level ends the script"
    else:
        body = ["for ($i = 0; $i -lt 0; $i++) { %s }" % c]
        note = "the for condition is false from the start"
    script = assemble(ctx, body, t.host, pre=pre)
    return sample("none", "control-flow", note, script, ["control-flow"] + lay)


# ---- tokenizer ---------------------------------------------------------------

NO_ESCAPE_LOWER = set("0abefnrtuv")  # backtick escapes of the tokenizer (PS7; `e and `u are PS6+)


def backtick_word(ctx, word, k=None):
    """Insert backticks only before characters that are not escapes (case-sensitive)."""
    idx = [i for i, ch in enumerate(word) if ch not in NO_ESCAPE_LOWER and i > 0]
    k = k or ctx.rng.randint(2, min(5, len(idx)))
    chosen = set(ctx.rng.sample(idx, k))
    out = "".join(("`" + ch) if i in chosen else ch for i, ch in enumerate(word))
    assert tokenize_bareword(out) == word
    return out


def tokenize_bareword(s):
    """What the tokenizer makes of a bare word with backticks (PowerShell 7 escapes)."""
    esc = {"0": "\0", "a": "\a", "b": "\b", "e": "\x1b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
    out = []
    i = 0
    while i < len(s):
        if s[i] == "`" and i + 1 < len(s):
            out.append(esc.get(s[i + 1], s[i + 1]))
            i += 2
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def tokenize_bareword_51(s):
    esc = {"0": "\0", "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
    out = []
    i = 0
    while i < len(s):
        if s[i] == "`" and i + 1 < len(s):
            out.append(esc.get(s[i + 1], s[i + 1]))
            i += 2
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def is_ps_whitespace(ch):
    if ord(ch) < 128:
        return ch in " \t\f\v"
    if ord(ch) <= 256:
        return ch in "\u00a0\u0085"
    return unicodedata.category(ch) in ("Zs", "Zl", "Zp")


def tok_positive(ctx, label, i):
    local = want_local(label)
    h = (ctx.choice(LOCAL_CN[:5])[0]) if local else remote_host(ctx)
    hc = h
    k = i % 12
    layers = ["tokenizer"]
    if k == 0:
        d = ctx.choice(list(DASHES))
        cmd = "%s %s%s %s" % (ctx.case("Enter-PSSession", ctx.obf * 0.5), d, ctx.choice(["ComputerName", "Cn", "ComputerName"]), h)
        if ctx.r() < 0.5:
            lc, cr = cred_lines(ctx)
            cmd = "\n".join(lc + ["%s %sCredential %s" % (cmd, d, cr)])
            expect = "Enter-PSSession -ComputerName %s -Credential %s" % (hc, cr)
        else:
            expect = "Enter-PSSession -ComputerName %s" % hc
        note = "%s (U+%04X) is a parameter dash for the tokenizer" % (DASHES[d], ord(d))
    elif k == 1:
        o, cq = ctx.choice(SQ_OPEN), ctx.choice(SQ_CLOSE)
        cmd = "& %sEnter-PSSession%s %sComputerName %s%s%s" % (o, cq, ctx.choice(list(DASHES) + ["-"]), ctx.choice(SQ_OPEN), h, ctx.choice(SQ_CLOSE))
        expect = "Enter-PSSession -ComputerName %s" % hc
        note = "typographic single quotes (any of ' \u2018 \u2019 \u201a \u201b opens or closes) around the name and the host"
    elif k == 2:
        o, cq = ctx.choice(DQ_OPEN), ctx.choice(DQ_CLOSE)
        cmd = "%s %setsn %s%s" % (ctx.case("iex"), o, h, cq)
        expect = "Enter-PSSession -ComputerName %s" % hc
        note = "typographic double quotes around the string given to iex"
    elif k == 3:
        w = backtick_word(ctx, "Enter-PSSession")
        cmd = "%s %s %s" % (w, ctx.case("-ComputerName"), h)
        expect = "Enter-PSSession -ComputerName %s" % hc
        note = "backticks before characters with no escape meaning are dropped from a bare word"
    elif k == 4:
        # uppercase letters are never escapes: `N `T `R are plain N T R
        w = "E`NTE`R-PSSession" if ctx.r() < 0.5 else "`E`N`T`E`R-`P`S`S`E`S`S`I`O`N"
        assert tokenize_bareword(w).lower() == "enter-pssession"
        cmd = "%s -cn %s" % (w, h)
        expect = "Enter-PSSession -ComputerName %s" % hc
        note = "escapes are case-sensitive: `N `T `R `E are just the letters (only lower-case `n `t `r `e are escapes)"
    elif k == 5:
        sp = ctx.choice(["\u00a0", "\u2003", "\u3000", "\u2009"])
        assert is_ps_whitespace(sp)
        cmd = "Enter-PSSession%s-ComputerName%s%s" % (sp, sp, h)
        expect = "Enter-PSSession -ComputerName %s" % hc
        note = "U+%04X is whitespace to the tokenizer (no-break space or a Unicode space separator)" % ord(sp)
    elif k == 6:
        w = "Ent`er-PSSession"
        assert tokenize_bareword_51(w) == "Enter-PSSession" and tokenize_bareword(w) != "Enter-PSSession"
        cmd = "%s -ComputerName %s" % (w, h)
        expect = "Enter-PSSession -ComputerName %s" % hc
        note = ("`e is a plain e in Windows PowerShell 5.1 but ESC in PowerShell 7 (where the name is wrong); "
                "the 5.1 reading opens the session")
    elif k == 7:
        cmd = "Enter-PSSession <# %s #> %sComputerName:%s" % (ctx.choice(["audit", "CHG123", "ok"]), ctx.choice(list(DASHES)), h)
        expect = "Enter-PSSession -ComputerName %s" % hc
        note = "inline comment and -Param:value with a typographic dash"
    elif k == 8:
        cmd = "Enter-PSSession -ComputerName: %s" % h
        if ctx.r() < 0.5:
            cmd = "Enter-PSSession `\n    -ComputerName: %s `\n    -Port 5985" % h
            expect = "Enter-PSSession -ComputerName %s -Port 5985" % hc
        else:
            expect = "Enter-PSSession -ComputerName %s" % hc
        note = "a colon after the parameter name and a space before the value still bind"
    elif k == 9:
        cmd = "Enter-PSSession -ComputerName ('%s')" % h
        expect = "Enter-PSSession -ComputerName %s" % hc
        note = "a parenthesised single string is a scalar and binds"
    elif k == 10:
        cmd = "%s | Enter-PSSession" % ", ".join(sq(x) for x in ([h, remote_host(ctx)] if not local else [h]))
        expect = "Enter-PSSession -ComputerName %s" % hc
        note = "piped strings bind one at a time by value to ComputerName (unlike -ComputerName a,b)"
    else:
        o, cq = ctx.choice(DQ_OPEN), ctx.choice(DQ_CLOSE)
        cmd = "%sEnter-PSSession %sComputerName %s%s | %s" % (o, ctx.choice(list(DASHES)), h, cq,
                                                               ctx.case(ctx.choice(["Invoke-Expression", "iex"])))
        expect = "Enter-PSSession -ComputerName %s" % hc
        note = "typographic double quotes and dash inside the string piped to Invoke-Expression"
    if local:
        note += "; %s is this computer" % h
    script = assemble(ctx, [cmd], None if local else h)
    return sample(label, "tokenizer", note, script, layers, expect)


def tok_negative(ctx, i):
    h = remote_host(ctx)
    k = i % 10
    layers = ["tokenizer"]
    if k == 0:
        d = ctx.choice(list(NOT_DASHES))
        lc, cr = cred_lines(ctx)
        cmd = "\n".join(lc + ["Enter-PSSession %sComputerName %s %sCredential %s" % (d, h, d, cr)])
        note = ("%s is not a dash: the four words are positional arguments, and Enter-PSSession takes at most two "
                "(position 0 and 1), so binding fails" % NOT_DASHES[d])
    elif k == 1:
        d = ctx.choice(list(NOT_DASHES))
        cmd = "etsn %sCn %s %sUseSSL" % (d, h, d)
        note = "%s is not a dash: three positional arguments cannot bind, nothing runs" % NOT_DASHES[d]
    elif k == 2:
        w = ["en`ter-pssession", "Ente`r-PSSession", "E`nter-PSSession", "Enter-PSSessio`n", "Enter-PS`Sess`ion`t"][(i // 10) % 5]
        got = tokenize_bareword(w)
        assert got.lower() != "enter-pssession" and tokenize_bareword_51(w).lower() != "enter-pssession"
        cmd = "%s -ComputerName %s" % (w, h)
        esc = re.findall(r"`([ntr])", w)
        note = "`%s is an escape (%s), so the command name is %r, which does not exist" % (
            esc[0], {"n": "newline", "t": "TAB", "r": "carriage return"}[esc[0]], got)
    elif k == 3:
        cmd = "Enter-PSSession\u200b -ComputerName %s" % h
        assert not is_ps_whitespace("\u200b")
        note = "U+200B zero-width space is not whitespace; it becomes part of the name, which does not exist"
    elif k == 4:
        cmd = "Enter-PSS\u0435ssion -ComputerName %s" % h
        note = "the second e is Cyrillic U+0435; no such command"
    elif k == 5:
        cmd = "Enter-PSSession -ComputerName %s,%s" % (h, remote_host(ctx))
        note = ("ComputerName is a single [string]: an array argument fails to bind "
                "('Cannot convert System.Object[] to System.String'), so no session opens")
    elif k == 6:
        cmd = "etsn -ComputerName @('%s')" % h
        note = "even a one-element array does not bind to the [string] ComputerName"
    elif k == 7:
        o, cq = ctx.choice(DQ_OPEN), ctx.choice(DQ_CLOSE)
        cmd = "Write-Host %sEnter-PSSession %sComputerName %s%s" % (o, ctx.choice(list(DASHES)), h, cq)
        note = "the command is inside typographic double quotes given to Write-Host"
    elif k == 8:
        cmd = "etsn %sC`n %s" % (ctx.choice(list(DASHES)), h)
        note = "a backtick inside a parameter name is kept literally; -C`n matches no parameter"
    else:
        o, cq = ctx.choice(SQ_OPEN), ctx.choice(SQ_CLOSE)
        cmd = "%sEnter-PSSession %sComputerName %s%s | Out-File -FilePath .\\todo.txt" % (o, ctx.choice(list(DASHES)), h, cq)
        note = "a string in typographic single quotes written to a file"
    script = assemble(ctx, [cmd], h)
    return sample("none", "tokenizer", note, script, layers)


# ---- nested ---------------------------------------------------------------

HEAVY = {"base64-utf16le", "base64-utf8", "base64-ascii", "deflate", "gzip", "bxor", "hex", "octal", "encoded-command"}
STRING_LAYERS = ["concat", "format-operator", "join", "replace", "reverse", "substring-index"]


def token_layer(ctx, t, name="Enter-PSSession"):
    """Innermost layer (Invoke-Obfuscation TOKEN): the call with an obfuscated name."""
    r = ctx.rng.randrange(4)
    if r == 0:
        pre, expr, layers = build_name(ctx, name, ctx.choice([b_concat, b_format, b_join, b_replace, b_chars, b_substring]))
        cmd = "; ".join(pre + ["%s%s %s" % (ctx.choice(["&", "."]), expr, t.args)])
    elif r == 1:
        cmd = "%s %s" % (ctx.case(name, 1.0), t.args)
        layers = ["case"]
    elif r == 2:
        cmd = "%s %s" % (backtick_word(ctx, ctx.case(name, 1.0), 3), t.args)
        layers = ["tokenizer"]
    else:
        cmd = "%s %s" % (ctx.case(ctx.choice(["etsn", name]), 0.3), t.args)
        layers = []
    return "; ".join(t.pre + [cmd]), layers


def wrap(ctx, p, tag):
    """One layer: a statement list that runs p."""
    ps_structure_check(p)
    notes = []
    if tag == "encoded-command":
        lines, layers = encoded_command_line(ctx, p)
        return "; ".join(lines), layers, notes
    pre, expr, layers = encode_payload(ctx, p, tag)
    stmt, il, n = invoke(ctx, expr)
    if n:
        notes.append(n)
    return "; ".join(pre + [stmt]), layers + il, notes


def choose_stack(ctx, depth):
    stack = []
    heavy = 0
    for _ in range(depth):
        pool = STRING_LAYERS + ["base64-utf16le", "base64-utf8", "base64-ascii", "deflate", "gzip", "bxor", "hex",
                                "octal", "encoded-command", "char-codes"]
        if heavy >= 2:
            pool = STRING_LAYERS
        tag = ctx.choice(pool)
        if tag == "encoded-command" and "encoded-command" in stack:
            tag = "base64-utf8"
        if tag == "char-codes" and stack:
            tag = "concat"
        if tag in HEAVY:
            heavy += 1
        stack.append(tag)
    return stack


def nested_sample(ctx, label, i):
    local = want_local(label)
    depth = 2 + i % 3  # wrappers on top of the token layer
    notes = []
    if label == "none":
        mode = i % 4
        h = remote_host(ctx)
        if mode == 0:
            t = make_target(ctx, False, kinds=["cn"], extras=False)
            p, layers = token_layer(ctx, t)
            stack = choose_stack(ctx, max(1, depth - 2))
            for tag in stack:
                p, l2, n2 = wrap(ctx, p, tag)
                layers += l2
            pre, expr, l3 = encode_payload(ctx, p, ctx.choice(["base64-utf16le", "deflate", "reverse", "concat"]))
            lines = pre + sink(ctx, expr)
            layers += l3
            note = ("%s is wrapped in %s and encoded once more, but the outermost decode is only written out, never run"
                    % (t.canon, " > ".join(stack)))
            script = assemble(ctx, lines, h)
            return sample("none", "nested", note, script, layers)
        if mode == 1:
            p = benign_payload(ctx, h)
            layers = []
            note = benign_payload_note(p)
            for tag in choose_stack(ctx, depth):
                p, l2, n2 = wrap(ctx, p, tag)
                layers += l2
            script = assemble(ctx, [p], h)
            return sample("none", "nested", "every layer runs, but " + note, script, layers)
        if mode == 2:
            t = make_target(ctx, False, kinds=["cn"], extras=False)
            p, layers = token_layer(ctx, t)
            for tag in choose_stack(ctx, depth - 1):
                p, l2, n2 = wrap(ctx, p, tag)
                layers += l2
            pre, expr, l3 = encode_payload(ctx, p, ctx.choice(["base64-utf16le", "gzip", "format-operator"]))
            bp, spelled = bad_pick(ctx)
            lines = pre + ["%s | & %s" % (expr, bp)]
            layers += l3 + ["char-pick-iex"]
            note = "the outermost character pick spells %r, not iex, so the decoded layers never run" % spelled
            script = assemble(ctx, lines, h)
            return sample("none", "nested", note, script, layers)
        # payload that defines Enter-PSSession as a function first
        t = make_target(ctx, False, kinds=["cn"], extras=False)
        p = ("function Enter-PSSession { param($ComputerName) Write-Host \"[dry-run] $ComputerName\" }; "
             "Enter-PSSession %s" % t.args)
        layers = ["function-shadow"]
        for tag in choose_stack(ctx, depth - 1):
            p, l2, n2 = wrap(ctx, p, tag)
            layers += l2
        note = "the innermost script defines its own Enter-PSSession function (a dry run) and calls it"
        script = assemble(ctx, [p], h)
        return sample("none", "nested", note, script, layers)
    t = make_target(ctx, local, kinds=(["cn"] * 6 + ["uri", "session"]) if not local else None, extras=True)
    p, layers = token_layer(ctx, t)
    token_obf = 1 if layers else 0
    stack = choose_stack(ctx, depth - token_obf)
    for tag in stack:
        p, l2, n2 = wrap(ctx, p, tag)
        layers += l2
        notes += n2
    total = len(stack) + token_obf
    assert 2 <= total <= 4, (total, stack)
    notes.insert(0, "%s wrapped inside out in %s (%d layers)" % (
        t.canon, " > ".join(([layers[0]] if token_obf else []) + stack), total))
    if t.note:
        notes.append(t.note)
    if t.ps7_only:
        notes.append("PowerShell 7 reading")
    script = assemble(ctx, [p], None if local else t.host)
    return sample(label, "nested", "; ".join(notes), script, layers, t.canon)


# ---------------------------------------------------------------------------

def generate():
    NEAR_MISS_COUNTER[0] = 0
    verify_picks()
    verify_gcm()
    verify_iex_wildcards()
    rng = random.Random(SEED)
    out = []
    makers = {
        "obf-name": (obf_name_positive, obf_name_negative),
        "obf-object": (obf_object_positive, obf_object_negative),
        "obf-encoded": (obf_encoded_positive, obf_encoded_negative),
        "definitions": (definitions_positive, definitions_negative),
        "splatting": (splat_positive, splat_negative),
        "control-flow": (cf_positive, cf_negative),
        "tokenizer": (tok_positive, tok_negative),
        "nested": (None, None),
    }
    for cat in CATEGORIES:
        n_remote, n_local, n_none = PLAN[cat]
        pos, neg = makers[cat]
        for label, n in (("remote", n_remote), ("local", n_local), ("none", n_none)):
            for i in range(n):
                ctx = Ctx(random.Random(rng.getrandbits(64)), obf=rng.choice([0.0, 0.3, 0.6, 1.0]))
                if cat == "nested":
                    s = nested_sample(ctx, label, i)
                elif cat == "definitions" and label == "local" and i % 2 == 0:
                    s = definitions_local(ctx, i)
                elif label == "none":
                    s = neg(ctx, i)
                else:
                    s = pos(ctx, label, i)
                assert s["label"] == label, (cat, label, s)
                out.append(s)
    # global checks
    scripts = set()
    existing = set()
    if os.path.exists(EXISTING):
        with open(EXISTING, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    existing.add(json.loads(line)["script"])
    for s in out:
        ps_structure_check(s["script"])
        assert s["script"] not in scripts, "duplicate script: %r" % s["script"][:120]
        assert s["script"] not in existing, "script repeats remote_sessions.jsonl: %r" % s["script"][:120]
        scripts.add(s["script"])
        assert "mdr" not in re.sub(r"'\*mdr\*'", "", s["script"]).lower() or "*mdr*" in s["script"].lower()
    recs = []
    for n, s in enumerate(out, 1):
        rec = {"id": "o%03d" % n, "label": s["label"], "category": s["category"], "note": s["note"],
               "script": s["script"], "layers": s["layers"], "expect_command": s["expect_command"]}
        if "scored" in s:
            rec["scored"] = s["scored"]
        recs.append(rec)
    return recs


def render(recs):
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs)


def main():
    recs = generate()
    text = render(recs)
    if "--check" in sys.argv[1:]:
        with open(OUT, encoding="utf-8") as f:
            if f.read() != text:
                print("%s is stale: run python3 scripts/make_obfuscated_corpus.py" % OUT, file=sys.stderr)
                return 1
        print("ok: %d scripts" % len(recs))
        return 0
    with open(OUT, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    counts = {}
    for r in recs:
        counts.setdefault(r["category"], {}).setdefault(r["label"], 0)
        counts[r["category"]][r["label"]] += 1
    tot = {}
    for r in recs:
        tot[r["label"]] = tot.get(r["label"], 0) + 1
    print("wrote %d scripts to %s" % (len(recs), os.path.relpath(OUT, ROOT)))
    print("labels: " + ", ".join("%s %d" % kv for kv in sorted(tot.items())))
    for c in CATEGORIES:
        print("  %-13s %s" % (c, ", ".join("%s %d" % kv for kv in sorted(counts.get(c, {}).items()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
