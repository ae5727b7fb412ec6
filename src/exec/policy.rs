//! Whether a command runs, is refused, or needs a person's decision,
//! from the agent's exec policy.

use crate::protocol::types::{ExecConfigAsk, ExecConfigSecurity};

#[derive(Debug, PartialEq)]
pub enum Verdict {
    Run,
    Ask,
    Deny(&'static str),
}

/// `allowlisted`: whether the command matches the agent's allowlist
/// (configured patterns or commands allowed for good).
pub fn verdict(security: ExecConfigSecurity, ask: ExecConfigAsk, allowlisted: bool) -> Verdict {
    match (security, ask) {
        (ExecConfigSecurity::Deny, _) => {
            Verdict::Deny("this agent may not run commands (exec.security = deny)")
        }
        (_, ExecConfigAsk::Always) => Verdict::Ask,
        (ExecConfigSecurity::Full, _) => Verdict::Run,
        (ExecConfigSecurity::Allowlist, _) if allowlisted => Verdict::Run,
        (ExecConfigSecurity::Allowlist, ExecConfigAsk::OnMiss) => Verdict::Ask,
        (ExecConfigSecurity::Allowlist, ExecConfigAsk::Off) => {
            Verdict::Deny("the command is not in this agent's exec allowlist (and exec.ask = off)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ExecConfigAsk::*;
    use ExecConfigSecurity::*;

    #[test]
    fn every_combination() {
        let cases = [
            (Deny, Always, true, "deny"),
            (Deny, Off, true, "deny"),
            (Full, Off, false, "run"),
            (Full, OnMiss, false, "run"),
            (Full, Always, true, "ask"),
            (Allowlist, Off, true, "run"),
            (Allowlist, Off, false, "deny"),
            (Allowlist, OnMiss, true, "run"),
            (Allowlist, OnMiss, false, "ask"),
            (Allowlist, Always, true, "ask"),
        ];
        for (security, ask, listed, expected) in cases {
            let got = match verdict(security, ask, listed) {
                Verdict::Run => "run",
                Verdict::Ask => "ask",
                Verdict::Deny(_) => "deny",
            };
            assert_eq!(got, expected, "{security:?} {ask:?} listed={listed}");
        }
    }
}
