//! The strict TOML definition format: engine settings, allowlist, playbooks.

use std::net::IpAddr;
use std::time::Duration;

use palisade_core_traits::{EventKind, IpNetwork, Severity};
use serde::{Deserialize, Deserializer, Serialize};

use crate::Error;

/// The playbook set shipped with the crate (see `playbooks/default.toml`).
pub const DEFAULT_PLAYBOOKS: &str = include_str!("../playbooks/default.toml");

/// A duration written with an explicit unit: `"90s"`, `"15m"`, `"2h"`, `"7d"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(into = "String")]
pub struct Span(pub Duration);

impl Span {
    /// Parses `<digits><unit>` with unit `ms`, `s`, `m`, `h` or `d`; zero is refused.
    pub fn parse(s: &str) -> Result<Self, String> {
        let split = s
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("duration {s:?} has no unit (use ms, s, m, h or d)"))?;
        let (digits, unit) = s.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("duration {s:?} does not start with a number"))?;
        let per = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => {
                return Err(format!(
                    "duration {s:?}: unknown unit {unit:?} (use ms, s, m, h or d)"
                ));
            }
        };
        let ms = n
            .checked_mul(per)
            .ok_or_else(|| format!("duration {s:?} is too long"))?;
        if ms == 0 {
            return Err(format!("duration {s:?} must be positive"));
        }
        Ok(Span(Duration::from_millis(ms)))
    }
}

impl From<Span> for String {
    fn from(s: Span) -> String {
        format!("{}ms", s.0.as_millis())
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Span::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Whether actions are carried out or only recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Plans are executed.
    #[default]
    Enforce,
    /// Plans are recorded and audited, never executed.
    DryRun,
}

/// The whole definition file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Definition {
    /// Engine-wide settings.
    #[serde(default)]
    pub engine: EngineSettings,
    /// Subjects that are never acted on.
    #[serde(default)]
    pub allowlist: AllowlistDef,
    /// The playbooks, evaluated in file order.
    #[serde(default, rename = "playbook")]
    pub playbooks: Vec<Playbook>,
}

/// `[engine]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct EngineSettings {
    /// Default mode of every playbook.
    #[serde(default)]
    pub mode: Mode,
    /// At most this many actions of one kind per rolling minute, for each of: actions
    /// in force, those awaiting approval, dry runs. A candidate counts the kept
    /// actions that bind at least as far as it would (dry run < awaiting approval <
    /// in force), so a trial or a pending approval never spends what enforcement may
    /// do, and a trial meets at least the suppression it would meet if it were
    /// enforced (pending approvals count for it, not for enforcement). Each
    /// action kind has its own budget, so a flood of cheap actions (blocks) cannot
    /// starve rare severe ones (ending a taken-over account's sessions);
    /// notifications of high or critical severity are never budgeted.
    #[serde(default = "default_budget")]
    pub max_actions_per_minute: u32,
    /// The longest step-up that evidence from an unauthenticated attempt may require
    /// (default 1 h): anyone who knows a username can fail a login on it, so what they
    /// can impose on its owner is bounded.
    #[serde(default = "default_unauthenticated_step_up")]
    pub max_unauthenticated_step_up: Span,
}

fn default_budget() -> u32 {
    60
}

fn default_unauthenticated_step_up() -> Span {
    Span(Duration::from_secs(3_600))
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            mode: Mode::Enforce,
            max_actions_per_minute: default_budget(),
            max_unauthenticated_step_up: default_unauthenticated_step_up(),
        }
    }
}

/// `[allowlist]`: never act on these.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AllowlistDef {
    /// Single addresses.
    #[serde(default)]
    pub ips: Vec<IpAddr>,
    /// CIDR networks, e.g. `"10.0.0.0/8"` (IPv4-mapped addresses match IPv4 networks).
    #[serde(default)]
    pub networks: Vec<IpNetwork>,
    /// User ids, compared after normalization
    /// ([`palisade_core_traits::normalize_user_id`]): `Admin` protects `admin`.
    #[serde(default)]
    pub users: Vec<String>,
}

/// Which subject type a playbook acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectType {
    /// `Subject::Ip`.
    Ip,
    /// `Subject::User`.
    User,
    /// `Subject::Token`.
    Token,
    /// `Subject::Device`.
    Device,
    /// `Subject::Domain`.
    Domain,
}

/// What identifies "the same incident" for cool-downs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// One group per subject (the default).
    #[default]
    Subject,
    /// One group per subject and event kind.
    SubjectAndKind,
    /// One group for the whole playbook.
    Playbook,
}

/// One `[[playbook]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Playbook {
    /// Unique name.
    pub name: String,
    /// Event kinds that trigger it (at least one).
    pub kinds: Vec<EventKind>,
    /// The subject type it acts on; events about other subjects do not match.
    pub subject: SubjectType,
    /// Minimum severity.
    #[serde(default = "default_severity")]
    pub min_severity: Severity,
    /// Minimum score in `[0, 1]`; an event without a score does not match if set.
    #[serde(default)]
    pub min_score: Option<f64>,
    /// Only these subject values (user ids, addresses as text, token ids) match, if set.
    #[serde(default)]
    pub subject_values: Option<Vec<String>>,
    /// After the playbook fires for a group, it stays quiet for the group this long.
    pub cooldown: Span,
    /// What a group is.
    #[serde(default)]
    pub group_by: GroupBy,
    /// Overrides `[engine] mode`.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// The actions, in order (at least one).
    #[serde(rename = "action")]
    pub actions: Vec<toml::Spanned<ActionDef>>,
}

fn default_severity() -> Severity {
    Severity::Info
}

/// Repeat-offender escalation of a block.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Escalation {
    /// Each repeat multiplies the previous duration by this (2 doubles), at least 1.
    pub factor: u32,
    /// Never longer than this.
    pub max: Span,
    /// After this long without an offence the next ban starts from the base again.
    pub decay_after: Span,
}

/// One `[[playbook.action]]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum ActionDef {
    /// Block the event's IP address.
    BlockIp {
        /// Base duration.
        duration: Span,
        /// Optional escalation for repeat offenders.
        #[serde(default)]
        escalation: Option<Escalation>,
        /// If set, the block waits for a human approval valid this long.
        #[serde(default)]
        approval: Option<Span>,
    },
    /// Revoke every token of the event's user.
    RevokeUserTokens {
        /// The issuer whose tokens are revoked.
        issuer: String,
        /// If set, waits for approval valid this long.
        #[serde(default)]
        approval: Option<Span>,
    },
    /// Revoke the event's token.
    RevokeToken {
        /// The longest lifetime a token of this issuer has (its revocation is kept that long).
        max_lifetime: Span,
        /// If set, waits for approval valid this long.
        #[serde(default)]
        approval: Option<Span>,
    },
    /// Require step-up for the event's user.
    RequireStepUp {
        /// How long the requirement holds.
        valid_for: Span,
        /// If set, waits for approval valid this long.
        #[serde(default)]
        approval: Option<Span>,
    },
    /// Terminate the event's user's sessions.
    TerminateSessions {
        /// If set, waits for approval valid this long.
        #[serde(default)]
        approval: Option<Span>,
    },
    /// Notify humans.
    Notify {
        /// Severity of the notification (default: the event's).
        #[serde(default)]
        severity: Option<Severity>,
    },
}

impl ActionDef {
    /// The subject types the action can act on (`None`: any).
    fn needs(&self) -> Option<SubjectType> {
        match self {
            ActionDef::BlockIp { .. } => Some(SubjectType::Ip),
            ActionDef::RevokeUserTokens { .. }
            | ActionDef::RequireStepUp { .. }
            | ActionDef::TerminateSessions { .. } => Some(SubjectType::User),
            ActionDef::RevokeToken { .. } => Some(SubjectType::Token),
            ActionDef::Notify { .. } => None,
        }
    }

    /// The kind of action it resolves to.
    pub fn kind(&self) -> crate::ActionKind {
        use crate::ActionKind as K;
        match self {
            ActionDef::BlockIp { .. } => K::BlockIp,
            ActionDef::RevokeUserTokens { .. } => K::RevokeUserTokens,
            ActionDef::RevokeToken { .. } => K::RevokeToken,
            ActionDef::RequireStepUp { .. } => K::RequireStepUp,
            ActionDef::TerminateSessions { .. } => K::TerminateSessions,
            ActionDef::Notify { .. } => K::Notify,
        }
    }

    /// The approval window, if the action needs approval.
    pub fn approval(&self) -> Option<Span> {
        match self {
            ActionDef::BlockIp { approval, .. }
            | ActionDef::RevokeUserTokens { approval, .. }
            | ActionDef::RevokeToken { approval, .. }
            | ActionDef::RequireStepUp { approval, .. }
            | ActionDef::TerminateSessions { approval } => *approval,
            ActionDef::Notify { .. } => None,
        }
    }
}

/// Errors inside an action table are reported by toml at the table (serde buffers
/// tagged enums), so look for the quoted value the message names inside the span and
/// point at it; the field is the key on that line.
fn refine(src: &str, span: std::ops::Range<usize>, message: &str) -> (usize, Option<String>) {
    let start = span.start.min(src.len());
    let table_end = src[start..]
        .get(1..)
        .and_then(|rest| rest.find("\n["))
        .map_or(src.len(), |i| start + 1 + i);
    let end = span.end.min(src.len()).max(table_end);
    let quoted = ['"', '`']
        .iter()
        .find_map(|q| message.split(*q).nth(1).filter(|v| !v.is_empty()));
    let at = quoted
        .and_then(|v| src.get(start..end)?.find(v).map(|i| start + i))
        .map(|i| {
            if i > 0 && src.as_bytes()[i - 1] == b'"' {
                i - 1
            } else {
                i
            }
        })
        .unwrap_or(start);
    let line_start = src[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = &src[line_start..];
    let line = &line[..line.find('\n').unwrap_or(line.len())];
    let field = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_owned())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    (at, field)
}

/// 1-based line and column of a byte offset.
fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let before = &src.as_bytes()[..offset.min(src.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let col = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
    (line, col)
}

impl Definition {
    /// Parses and validates a definition. `origin` names the file in errors.
    ///
    /// Errors carry `origin:line:column` and the message names the offending field.
    pub fn from_toml(origin: &str, src: &str) -> Result<Self, Error> {
        let def: Definition = toml::from_str(src).map_err(|e| {
            let message = e.message().trim().to_owned();
            let (line, column, message) = match e.span() {
                Some(span) => {
                    let (at, field) = refine(src, span, &message);
                    let (line, column) = line_col(src, at);
                    let message = match field {
                        Some(f) if !message.contains(&format!("`{f}`")) => {
                            format!("field `{f}`: {message}")
                        }
                        _ => message,
                    };
                    (line, column, message)
                }
                None => (0, 0, message),
            };
            Error::Definition {
                origin: origin.to_owned(),
                line,
                column,
                message,
            }
        })?;
        def.validate(origin, src)?;
        Ok(def)
    }

    /// The default playbook set shipped with the crate.
    pub fn default_set() -> Result<Self, Error> {
        Definition::from_toml("playbooks/default.toml", DEFAULT_PLAYBOOKS)
    }

    fn validate(&self, origin: &str, src: &str) -> Result<(), Error> {
        // Semantic errors without a span point at the start of the playbook by name.
        let at = |needle: &str, message: String| {
            let offset = src.find(needle).unwrap_or(0);
            let (line, column) = line_col(src, offset);
            Error::Definition {
                origin: origin.to_owned(),
                line,
                column,
                message,
            }
        };
        if self.engine.max_actions_per_minute == 0 {
            return Err(at(
                "max_actions_per_minute",
                "engine.max_actions_per_minute must be at least 1".into(),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for p in &self.playbooks {
            let here = format!("\"{}\"", p.name);
            if p.name.is_empty() || !names.insert(p.name.as_str()) {
                return Err(at(
                    &here,
                    format!("playbook.name {here} is empty or repeated"),
                ));
            }
            if p.kinds.is_empty() {
                return Err(at(
                    &here,
                    format!("playbook {here}: kinds must not be empty"),
                ));
            }
            if let Some(s) = p.min_score
                && !(0.0..=1.0).contains(&s)
            {
                return Err(at(
                    &here,
                    format!("playbook {here}: min_score {s} is not in [0, 1]"),
                ));
            }
            if p.actions.is_empty() {
                return Err(at(&here, format!("playbook {here}: no action")));
            }
            for a in &p.actions {
                let span = a.span();
                let (line, column) = line_col(src, span.start);
                let err = |message: String| Error::Definition {
                    origin: origin.to_owned(),
                    line,
                    column,
                    message,
                };
                if let Some(need) = a.get_ref().needs()
                    && need != p.subject
                {
                    return Err(err(format!(
                        "playbook {here}: action.type needs subject {need:?}, the playbook's subject is {:?}",
                        p.subject
                    )));
                }
                if let ActionDef::BlockIp {
                    escalation: Some(e),
                    duration,
                    ..
                } = a.get_ref()
                    && (e.factor == 0 || e.max < *duration)
                {
                    return Err(err(format!(
                        "playbook {here}: action.escalation needs factor >= 1 and max >= duration"
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
