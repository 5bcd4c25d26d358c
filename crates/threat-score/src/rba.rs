//! Reader for the RBA data set of Wiefling et al. (das-group/rba-dataset, CC BY 4.0:
//! 33M login attempts of 3.3M users, synthesized from a Norwegian SSO service), and
//! its replay through [`crate::synth::evaluate_with`].
//!
//! The CSV is read by column name (`Login Timestamp`, `User ID`, `Round-Trip Time [ms]`,
//! `IP Address`, `Country`, `ASN`, `User Agent String`, `Browser Name and Version`,
//! `OS Name and Version`, `Device Type`, `Login Successful`, `Is Attack IP`,
//! `Is Account Takeover`); other columns (`index`, `Region`, `City`) are ignored.
//! Quoted fields follow RFC 4180 (user agents contain commas).
//!
//! Rows become [`SynthLogin`]s in file order (the data set is sorted by time):
//! confirmed takeovers → [`Actor::Takeover`], other rows from known attack IPs →
//! [`Actor::AttackIp`], other successful logins → [`Actor::Legit`]; failed logins of
//! non-attack IPs are skipped (the model learns from successes only). Like the
//! reference notebook, the browser, OS and device levels come from the CSV's columns
//! (see [`TableUaParser`]), not from our parser.
//!
//! Optionally ([`RbaOptions::targeted_every`]) a targeted attacker in Wiefling's sense is
//! simulated against every n-th owner login with enough history: the victim's latest
//! user agent, from the latest login of another user in the victim's country on an ASN
//! the victim did not use last.

use std::collections::HashMap;
use std::io::BufRead;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use crate::synth::{Actor, SynthLogin};
use palisade_core_traits::RequestContext;

use crate::{Error, GeoInfo, Signals, SimpleUaParser, UaInfo, UaParser};

/// One row of the RBA data set.
#[derive(Debug, Clone, PartialEq)]
pub struct RbaRow {
    /// Unix seconds.
    pub at_secs: u64,
    /// The user id (a pseudonym).
    pub user: String,
    /// Round-trip time in ms, when measured.
    pub rtt_ms: Option<f64>,
    /// Client address.
    pub ip: IpAddr,
    /// Country code (empty/`-` → `None`).
    pub country: Option<String>,
    /// Autonomous system number.
    pub asn: Option<u32>,
    /// The user agent string.
    pub user_agent: String,
    /// Browser, OS and device type as the data set derived them.
    pub ua: UaInfo,
    /// Whether the login succeeded.
    pub success: bool,
    /// Whether the IP is in the known attacker data.
    pub attack_ip: bool,
    /// Whether incident response confirmed an account takeover.
    pub takeover: bool,
}

const COLUMNS: [&str; 13] = [
    "Login Timestamp",
    "User ID",
    "Round-Trip Time [ms]",
    "IP Address",
    "Country",
    "ASN",
    "User Agent String",
    "Browser Name and Version",
    "OS Name and Version",
    "Device Type",
    "Login Successful",
    "Is Attack IP",
    "Is Account Takeover",
];

/// Splits one CSV record (RFC 4180 quoting); `None` while a quoted field is open.
fn split_record(line: &str) -> Option<Vec<String>> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => fields.push(std::mem::take(&mut field)),
            (_, c) => field.push(c),
        }
    }
    if quoted {
        return None;
    }
    fields.push(field);
    Some(fields)
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2020-02-03 12:43:30.772` (fraction ignored) or an integer (seconds, or
/// milliseconds when above 10^11).
fn parse_timestamp(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Some(if n > 100_000_000_000 { n / 1000 } else { n });
    }
    let (date, time) = s.split_once([' ', 'T'])?;
    let mut d = date.splitn(3, '-').map(|x| x.parse::<i64>().ok());
    let (y, mo, da) = (d.next()??, d.next()??, d.next()??);
    let time = time.split('.').next()?;
    let mut t = time.splitn(3, ':').map(|x| x.parse::<i64>().ok());
    let (h, mi, se) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let secs = days_from_civil(y, mo, da) * 86_400 + h * 3600 + mi * 60 + se;
    u64::try_from(secs).ok()
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

fn optional(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty() && s != "-").then(|| s.to_owned())
}

/// Streams [`RbaRow`]s from a reader of the CSV.
#[derive(Debug)]
pub struct RbaReader<R> {
    input: R,
    columns: [usize; 13],
    line: u64,
}

impl<R: BufRead> RbaReader<R> {
    /// Reads the header; fails when a needed column is missing.
    pub fn new(mut input: R) -> Result<Self, Error> {
        let mut header = String::new();
        input
            .read_line(&mut header)
            .map_err(|source| Error::DatasetIo { source })?;
        let names = split_record(header.trim_end_matches(['\r', '\n'])).unwrap_or_default();
        let mut columns = [0; 13];
        for (slot, want) in columns.iter_mut().zip(COLUMNS) {
            *slot = names
                .iter()
                .position(|n| n.trim() == want)
                .ok_or(Error::Dataset {
                    line: 1,
                    reason: "header lacks a column of the RBA data set schema",
                })?;
        }
        Ok(RbaReader {
            input,
            columns,
            line: 1,
        })
    }

    fn row(&self, f: &[String]) -> Result<RbaRow, &'static str> {
        let get = |i: usize| f.get(self.columns[i]).map_or("", String::as_str);
        let bad = |what: &'static str| move || what;
        let asn = match get(5).trim() {
            "" | "-" => None,
            s => Some(
                s.parse::<f64>()
                    .ok()
                    .filter(|a| a.is_finite() && *a >= 0.0 && *a <= f64::from(u32::MAX))
                    .ok_or("ASN is not a number")? as u32,
            ),
        };
        Ok(RbaRow {
            at_secs: parse_timestamp(get(0)).ok_or_else(bad("bad Login Timestamp"))?,
            user: optional(get(1)).ok_or_else(bad("empty User ID"))?,
            rtt_ms: get(2).trim().parse::<f64>().ok().filter(|r| r.is_finite()),
            ip: get(3).trim().parse().map_err(|_| "bad IP Address")?,
            country: optional(get(4)),
            asn,
            user_agent: get(6).to_owned(),
            ua: UaInfo {
                browser: get(7).trim().to_owned(),
                os: get(8).trim().to_owned(),
                device: get(9).trim().to_owned(),
            },
            success: parse_bool(get(10)).ok_or_else(bad("bad Login Successful"))?,
            attack_ip: parse_bool(get(11)).ok_or_else(bad("bad Is Attack IP"))?,
            takeover: parse_bool(get(12)).ok_or_else(bad("bad Is Account Takeover"))?,
        })
    }
}

impl<R: BufRead> Iterator for RbaReader<R> {
    type Item = Result<RbaRow, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut record = String::new();
        loop {
            let mut line = String::new();
            match self.input.read_line(&mut line) {
                Err(source) => return Some(Err(Error::DatasetIo { source })),
                Ok(0) if record.is_empty() => return None,
                Ok(0) => {
                    return Some(Err(Error::Dataset {
                        line: self.line,
                        reason: "unterminated quoted field at end of file",
                    }));
                }
                Ok(_) => {}
            }
            self.line += 1;
            record.push_str(&line);
            let text = record.trim_end_matches(['\r', '\n']);
            if text.is_empty() {
                record.clear();
                continue;
            }
            if let Some(fields) = split_record(text) {
                let line = self.line;
                return Some(
                    self.row(&fields)
                        .map_err(|reason| Error::Dataset { line, reason }),
                );
            }
        }
    }
}

/// A [`UaParser`] that answers from a table of known user agents (the data set's own
/// browser/OS/device columns), falling back to [`SimpleUaParser`].
#[derive(Debug, Default)]
pub struct TableUaParser {
    table: RwLock<HashMap<String, UaInfo>>,
}

impl TableUaParser {
    /// Remembers `info` for `ua` (the first answer wins, as a parser is a function).
    pub fn insert(&self, ua: &str, info: &UaInfo) {
        if let Ok(mut t) = self.table.write() {
            t.entry(ua.to_owned()).or_insert_with(|| info.clone());
        }
    }
}

impl UaParser for TableUaParser {
    fn parse(&self, ua: &str) -> UaInfo {
        self.table
            .read()
            .ok()
            .and_then(|t| t.get(ua).cloned())
            .unwrap_or_else(|| SimpleUaParser.parse(ua))
    }
}

/// How [`logins`] turns rows into an evaluation stream.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RbaOptions {
    /// Stop after this many rows (`None`: all). The reference notebook reads 1M.
    pub max_rows: Option<u64>,
    /// Simulate a targeted attack against every n-th owner login made with at least
    /// `min_prior` earlier successful logins (`None`: no simulated attacks).
    pub targeted_every: Option<u64>,
    /// History needed before a login can be a simulated attack's victim.
    pub min_prior: u32,
}

fn login(
    row: &RbaRow,
    user_agent: &str,
    asn: Option<u32>,
    country: Option<String>,
) -> (RequestContext, Signals) {
    let geo = GeoInfo {
        asn,
        country,
        location: None,
    };
    crate::synth::attempt(row.user.clone(), row.ip, user_agent, geo, row.at_secs)
}

/// The rows of `reader` as an evaluation stream (see the module docs); the user-agent
/// facts of every row go into `ua`, which the evaluated scorer must use. Reading stops
/// at the first malformed row, whose error is kept in `error`.
pub fn logins<'a, R: BufRead + 'a>(
    reader: RbaReader<R>,
    opts: RbaOptions,
    ua: Arc<TableUaParser>,
    error: &'a mut Option<Error>,
) -> impl Iterator<Item = SynthLogin> + 'a {
    let mut prior: HashMap<String, u32> = HashMap::new();
    // Per user: latest successful UA string and ASN. Per country: latest (user, ip, asn).
    let mut last: HashMap<String, (String, Option<u32>)> = HashMap::new();
    let mut by_country: HashMap<String, (String, IpAddr, Option<u32>)> = HashMap::new();
    let mut eligible = 0u64;
    let limit = opts.max_rows.unwrap_or(u64::MAX);
    reader
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .map_while(move |r| match r {
            Ok(row) => Some(row),
            Err(e) => {
                *error = Some(e);
                None
            }
        })
        .flat_map(move |row| {
            let mut out = Vec::with_capacity(2);
            ua.insert(&row.user_agent, &row.ua);
            let actor = if row.takeover {
                Actor::Takeover
            } else if row.attack_ip {
                Actor::AttackIp
            } else if row.success {
                Actor::Legit
            } else {
                return out;
            };
            let n = prior.get(&row.user).copied().unwrap_or(0);
            if actor == Actor::Legit && n >= opts.min_prior {
                eligible += 1;
                let victim = last.get(&row.user);
                let other = row.country.as_ref().and_then(|c| by_country.get(c));
                if let (Some(every), Some((victim_ua, victim_asn)), Some((other_user, ip, asn))) =
                    (opts.targeted_every, victim, other)
                    && eligible.is_multiple_of(every.max(1))
                    && other_user != &row.user
                    && asn != victim_asn
                {
                    let attack = RbaRow {
                        ip: *ip,
                        ..row.clone()
                    };
                    let (ctx, signals) = login(&attack, victim_ua, *asn, row.country.clone());
                    out.push(SynthLogin {
                        at_secs: row.at_secs,
                        ctx,
                        signals,
                        actor: Actor::Targeted,
                        prior_logins: n,
                        device: None,
                    });
                }
            }
            let (ctx, signals) = login(&row, &row.user_agent, row.asn, row.country.clone());
            out.push(SynthLogin {
                at_secs: row.at_secs,
                ctx,
                signals,
                actor,
                prior_logins: n,
                device: None,
            });
            if actor == Actor::Legit {
                *prior.entry(row.user.clone()).or_insert(0) += 1;
                last.insert(row.user.clone(), (row.user_agent.clone(), row.asn));
                if let Some(c) = &row.country {
                    by_country.insert(c.clone(), (row.user.clone(), row.ip, row.asn));
                }
            }
            out
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_timestamps() {
        assert_eq!(
            split_record(r#"a,"b, c","say ""hi""",,"#).unwrap(),
            vec!["a", "b, c", r#"say "hi""#, "", ""]
        );
        assert_eq!(split_record(r#"a,"open"#), None);
        // 2020-02-03 12:43:30 UTC = 1580733810 (date -u -d '2020-02-03 12:43:30' +%s).
        assert_eq!(
            parse_timestamp("2020-02-03 12:43:30.772"),
            Some(1_580_733_810)
        );
        assert_eq!(parse_timestamp("1580733810772"), Some(1_580_733_810));
        assert_eq!(parse_timestamp("2020-13-03 12:43:30"), None);
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }
}
