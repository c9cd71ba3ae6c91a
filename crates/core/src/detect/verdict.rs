//! The verdict on one event view: the reference analytic's search (`mode exact`) followed by
//! the tuning exclusions (the analytic's `_filter` macro).

use crate::analytic::{CHANNELS, EVENT_CODE, NEEDLES};
use crate::config::{Config, Mode};
use crate::shapes::EventView;
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use std::borrow::Cow;

/// What mode extended read in a flagged script.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtendedFinding {
    pub sessions: Vec<crate::pwsh::Session>,
    /// A session to another computer: lateral movement (else only local sessions).
    pub lateral: bool,
    /// The risk score it earns (per transport, or the local one).
    pub risk_score: i64,
}

impl ExtendedFinding {
    /// The sessions that count: the remote ones, or all when none is remote.
    pub fn relevant(&self) -> impl Iterator<Item = &crate::pwsh::Session> {
        let lateral = self.lateral;
        self.sessions.iter().filter(move |s| !lateral || !s.local)
    }
}

/// What the rules said about one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not a PowerShell 4104 event of the right channel, or the text lacks a needle.
    NoMatch,
    /// The analytic matches but a tuning exclusion (user or computer) suppresses it.
    Excluded,
    /// Flag it.
    Flagged,
}

/// The compiled rules of one filter instance.
pub struct Rules {
    needles: AhoCorasick,
}

impl Default for Rules {
    fn default() -> Self {
        Self::new()
    }
}

impl Rules {
    /// The needles' automaton is built once per process and shared (a clone is a reference
    /// count): every instance, reload and fuzz input after the first starts without it.
    pub fn new() -> Rules {
        static NEEDLES_AC: std::sync::OnceLock<AhoCorasick> = std::sync::OnceLock::new();
        let needles = NEEDLES_AC
            .get_or_init(|| {
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::Standard)
                    .build(NEEDLES)
                    .unwrap_or_else(|e| unreachable!("two constant needles always build: {e}"))
            })
            .clone();
        Rules { needles }
    }

    /// Whether an event passes the `powershell` macro and `EventCode=4104`.
    pub fn is_powershell_4104(view: &EventView<'_>) -> bool {
        view.event_code == Some(EVENT_CODE) && channel_ok(view.channel.as_deref())
    }

    /// `Message="*Enter-PSSession*" AND Message="*-ComputerName*"`, case-insensitively.
    /// Overlapping search: the two needles may share a letter ("-ComputerNamEnter-PSSession"
    /// holds both, as two independent wildcard tests would find).
    pub fn text_matches(&self, text: &[u8]) -> bool {
        let mut seen = [false; 2];
        for m in self.needles.find_overlapping_iter(text) {
            seen[m.pattern().as_usize()] = true;
            if seen[0] && seen[1] {
                return true;
            }
        }
        false
    }

    /// The analytic's search on one event, then the exclusions.
    pub fn judge(&self, view: &EventView<'_>, cfg: &Config) -> Verdict {
        if !Self::is_powershell_4104(view) {
            return Verdict::NoMatch;
        }
        self.judge_text(view.script_text(), view, cfg)
    }

    /// Judges a script in the instance's mode: the analytic's needles on `text` (exact),
    /// or the sessions PowerShell would open from `script` (extended); then the exclusions.
    pub fn judge_script(
        &self,
        text: Option<&[u8]>,
        script: Option<&[u8]>,
        view: &EventView<'_>,
        cfg: &Config,
    ) -> (Verdict, Option<ExtendedFinding>) {
        if cfg.mode == Mode::Exact {
            return (self.judge_text(text, view, cfg), None);
        }
        let Some(script) = script else {
            return (Verdict::NoMatch, None);
        };
        let script = String::from_utf8_lossy(script);
        let own = view.computer.as_deref().map(String::from_utf8_lossy);
        let sessions = crate::pwsh::sessions(&script, own.as_deref());
        if sessions.is_empty() {
            return (Verdict::NoMatch, None);
        }
        let lateral = sessions.iter().any(|s| !s.local);
        if !lateral && !cfg.flag_local_sessions {
            return (Verdict::NoMatch, None);
        }
        let risk_score = if lateral {
            sessions
                .iter()
                .filter(|s| !s.local)
                .map(|s| {
                    cfg.transport_risk
                        .iter()
                        .find(|(t, _)| t == s.transport.name())
                        .map_or(cfg.risk_score, |(_, r)| *r)
                })
                .max()
                .unwrap_or(cfg.risk_score)
        } else {
            cfg.local_risk_score
        };
        let finding = ExtendedFinding {
            sessions,
            lateral,
            risk_score,
        };
        if excluded(&cfg.exclude_user, view.user.as_deref())
            || excluded(&cfg.exclude_computer, view.computer.as_deref())
        {
            return (Verdict::Excluded, Some(finding));
        }
        (Verdict::Flagged, Some(finding))
    }

    /// The needles on `text` (a record's text, or a reassembled script), then the
    /// exclusions on the view's user and computer.
    pub fn judge_text(&self, text: Option<&[u8]>, view: &EventView<'_>, cfg: &Config) -> Verdict {
        match text {
            Some(t) if self.text_matches(t) => {}
            _ => return Verdict::NoMatch,
        }
        if excluded(&cfg.exclude_user, view.user.as_deref())
            || excluded(&cfg.exclude_computer, view.computer.as_deref())
        {
            return Verdict::Excluded;
        }
        Verdict::Flagged
    }
}

/// No channel named: judged on the rest. A named channel must be a PowerShell Operational log.
fn channel_ok(channel: Option<&[u8]>) -> bool {
    match channel {
        None => true,
        Some(c) => {
            let c = c.trim_ascii();
            CHANNELS
                .iter()
                .any(|ok| c.eq_ignore_ascii_case(ok.as_bytes()))
        }
    }
}

fn excluded(patterns: &[regex::Regex], value: Option<&[u8]>) -> bool {
    if patterns.is_empty() {
        return false;
    }
    let v: Cow<'_, str> = match value {
        Some(v) => String::from_utf8_lossy(v),
        None => Cow::Borrowed(crate::analytic::UNKNOWN),
    };
    patterns.iter().any(|p| p.is_match(&v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shapes::Shape;

    fn view(text: &'static str, channel: Option<&'static str>, code: i64) -> EventView<'static> {
        EventView {
            shape: Shape::Other,
            event_code: Some(code),
            channel: channel.map(|c| Cow::Borrowed(c.as_bytes())),
            computer: Some(Cow::Borrowed(b"JUMP01")),
            user: Some(Cow::Borrowed(b"CONTOSO\\svc_backup")),
            message: None,
            script_block_text: Some(Cow::Borrowed(text.as_bytes())),
            time: None,
            part: None,
        }
    }

    #[test]
    fn both_needles_any_case_any_order() {
        let r = Rules::new();
        assert!(r.text_matches(b"Enter-PSSession -ComputerName dc01"));
        assert!(r.text_matches(b"-COMPUTERNAME x; enter-pssession"));
        assert!(r.text_matches(b"-ComputerNamEnter-PSSession"));
        assert!(!r.text_matches(b"Enter-PSSession dc01"));
        assert!(!r.text_matches("Enter-PSSession \u{2013}ComputerName dc01".as_bytes()));
        assert!(!r.text_matches(b"Invoke-Command -ComputerName dc01"));
    }

    #[test]
    fn channel_and_event_code_gate() {
        let r = Rules::new();
        let cfg = Config::default();
        let t = "Enter-PSSession -ComputerName dc01";
        assert_eq!(r.judge(&view(t, None, 4104), &cfg), Verdict::Flagged);
        assert_eq!(
            r.judge(
                &view(t, Some("microsoft-windows-powershell/operational"), 4104),
                &cfg
            ),
            Verdict::Flagged
        );
        assert_eq!(
            r.judge(&view(t, Some("PowerShellCore/Operational"), 4104), &cfg),
            Verdict::Flagged
        );
        assert_eq!(
            r.judge(&view(t, Some("Windows PowerShell"), 4104), &cfg),
            Verdict::NoMatch
        );
        assert_eq!(r.judge(&view(t, None, 4103), &cfg), Verdict::NoMatch);
    }

    #[test]
    fn message_is_searched_before_script_block_text() {
        let r = Rules::new();
        let mut v = view("Enter-PSSession -ComputerName dc01", None, 4104);
        v.message = Some(Cow::Borrowed(
            b"Creating Scriptblock text (1 of 1): Get-Date",
        ));
        assert_eq!(r.judge(&v, &Config::default()), Verdict::NoMatch);
    }

    #[test]
    fn exclusions_suppress() {
        let r = Rules::new();
        let mut cfg = Config {
            exclude_user: vec![regex::Regex::new(r"svc_").unwrap()],
            ..Config::default()
        };
        let v = view("Enter-PSSession -ComputerName dc01", None, 4104);
        assert_eq!(r.judge(&v, &cfg), Verdict::Excluded);
        cfg.exclude_user.clear();
        cfg.exclude_computer = vec![regex::Regex::new(r"^WS").unwrap()];
        assert_eq!(r.judge(&v, &cfg), Verdict::Flagged);
    }
}
