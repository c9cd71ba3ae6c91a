//! The reference analytic this filter reproduces: Splunk ESCU "Interactive Session on Remote
//! Endpoint with PowerShell", id a4e8f3a4-48b2-11ec-bcfc-3e22fbd008af, version 1, with its
//! ATT&CK mapping and risk metadata exactly as published.

pub const RULE_ID: &str = "a4e8f3a4-48b2-11ec-bcfc-3e22fbd008af";
pub const RULE_VERSION: u32 = 1;
pub const RULE_NAME: &str = "Interactive Session on Remote Endpoint with PowerShell";
pub const RULE_TYPE: &str = "TTP";
pub const RULE_AUTHOR: &str = "Mauricio Velazco, Splunk";
/// The name Splunk ES gives the correlation search of an ESCU detection.
pub const SEARCH_NAME: &str =
    "ESCU - Interactive Session on Remote Endpoint with PowerShell - Rule";
pub const RULE_DESCRIPTION: &str = "The following analytic utilizes PowerShell Script Block \
Logging (EventCode=4104) to identify the usage of the `Enter-PSSession`. This commandlet can be \
used to open an interactive session on a remote endpoint leveraging the WinRM protocol. Red Teams \
and adversaries alike may abuse WinRM and `Enter-PSSession` for lateral movement and remote code \
execution.";
/// The search, as published (the `powershell` macro selects the PowerShell Operational log).
pub const SEARCH: &str = "`powershell` EventCode=4104 (Message=\"*Enter-PSSession*\" AND \
Message=\"*-ComputerName*\") | stats count min(_time) as firstTime max(_time) as lastTime by \
EventCode Message ComputerName User | `security_content_ctime(firstTime)` | \
`interactive_session_on_remote_endpoint_with_powershell_filter`";

pub const EVENT_CODE: i64 = 4104;
/// The two substrings the analytic requires, matched case-insensitively.
pub const NEEDLES: [&str; 2] = ["Enter-PSSession", "-ComputerName"];
/// Channels the `powershell` macro stands for (compared ASCII case-insensitively).
pub const CHANNELS: [&str; 2] = [
    "Microsoft-Windows-PowerShell/Operational",
    "PowerShellCore/Operational",
];

pub const FRAMEWORK: &str = "MITRE ATT&CK";
pub const TACTIC_ID: &str = "TA0008";
pub const TACTIC_NAME: &str = "Lateral Movement";
pub const TACTIC_REFERENCE: &str = "https://attack.mitre.org/tactics/TA0008/";
pub const TECHNIQUE_ID: &str = "T1021";
pub const TECHNIQUE_NAME: &str = "Remote Services";
pub const TECHNIQUE_REFERENCE: &str = "https://attack.mitre.org/techniques/T1021/";
pub const SUBTECHNIQUE_ID: &str = "T1021.006";
pub const SUBTECHNIQUE_NAME: &str = "Windows Remote Management";
pub const SUBTECHNIQUE_REFERENCE: &str = "https://attack.mitre.org/techniques/T1021/006/";
pub const KILL_CHAIN_PHASE: &str = "Lateral Movement";
pub const ANALYTIC_STORY: &str = "Active Directory Lateral Movement";

pub const RISK_SCORE: i64 = 45;
pub const IMPACT: i64 = 90;
pub const CONFIDENCE: i64 = 50;
/// `$ComputerName` is replaced by the endpoint's name.
pub const RISK_MESSAGE_TEMPLATE: &str =
    "An interactive session was opened on a remote endpoint from $ComputerName";
pub const OBSERVABLE_FIELD: &str = "ComputerName";
pub const OBSERVABLE_TYPE: &str = "Endpoint";
pub const OBSERVABLE_ROLE: &str = "Victim";

pub const REFERENCES: [&str; 2] = [
    "https://attack.mitre.org/techniques/T1021/006/",
    "https://docs.microsoft.com/en-us/powershell/module/microsoft.powershell.core/enter-pssession?view=powershell-7.2",
];

/// The value written for a group-by field the record does not carry (as later versions of
/// the analytic do with `fillnull`).
pub const UNKNOWN: &str = "unknown";

/// The risk message with the endpoint's name substituted.
pub fn risk_message(computer: &str) -> String {
    RISK_MESSAGE_TEMPLATE.replace("$ComputerName", computer)
}

#[cfg(test)]
mod tests {
    #[test]
    fn risk_message_substitutes_the_endpoint() {
        assert_eq!(
            super::risk_message("WS01"),
            "An interactive session was opened on a remote endpoint from WS01"
        );
        assert_eq!(
            super::RISK_SCORE,
            super::IMPACT * super::CONFIDENCE / 100,
            "ESCU risk score = impact x confidence / 100"
        );
    }
}
