//! A small built-in user-agent parser behind the [`UaParser`] trait.
//!
//! The Freeman hierarchy needs three coarse facts from a user agent: browser name and
//! major version, OS name and major version, and device type. This parser finds the
//! common browsers and systems by substring, in a fixed precedence order (Edge and
//! Opera announce themselves as Chrome too). Anything it does not recognise becomes
//! `"other"`: an unknown user agent is a value like any other, never an error.

/// What the Freeman hierarchy needs from a user agent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UaInfo {
    /// Browser name and major version, e.g. `"Chrome 120"`.
    pub browser: String,
    /// Operating system name and major version, e.g. `"Windows 10"`.
    pub os: String,
    /// Device type: `"desktop"`, `"mobile"`, `"tablet"`, `"bot"` or `"other"`.
    pub device: String,
}

/// Turns a user-agent string into [`UaInfo`]. Must not panic on any input.
pub trait UaParser: Send + Sync + std::fmt::Debug {
    /// Parses `ua`.
    fn parse(&self, ua: &str) -> UaInfo;
}

/// The built-in substring parser (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct SimpleUaParser;

/// The digits (and no more) right after `token` in `s`, if `token` occurs.
fn major_after<'a>(s: &'a str, token: &str) -> Option<&'a str> {
    let at = s.find(token)? + token.len();
    let rest = &s[at..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

fn named(name: &str, version: Option<&str>) -> String {
    match version {
        Some(v) if !v.is_empty() => format!("{name} {v}"),
        _ => name.to_owned(),
    }
}

impl UaParser for SimpleUaParser {
    fn parse(&self, ua: &str) -> UaInfo {
        let lower = ua.to_ascii_lowercase();
        let has = |t: &str| lower.contains(t);
        let bot = has("bot") || has("crawler") || has("spider") || has("curl/") || has("python");
        // Browser: most specific token first.
        let browser = if has("edg/") {
            named("Edge", major_after(&lower, "edg/"))
        } else if has("opr/") {
            named("Opera", major_after(&lower, "opr/"))
        } else if has("firefox/") {
            named("Firefox", major_after(&lower, "firefox/"))
        } else if has("chrome/") {
            named("Chrome", major_after(&lower, "chrome/"))
        } else if has("crios/") {
            named("Chrome Mobile iOS", major_after(&lower, "crios/"))
        } else if has("safari/") && has("version/") {
            named("Safari", major_after(&lower, "version/"))
        } else if has("curl/") {
            named("curl", major_after(&lower, "curl/"))
        } else {
            "other".to_owned()
        };
        let os = if has("windows nt 10") {
            "Windows 10".to_owned()
        } else if has("windows nt 6.1") {
            "Windows 7".to_owned()
        } else if has("windows") {
            "Windows".to_owned()
        } else if has("android") {
            named("Android", major_after(&lower, "android "))
        } else if has("iphone os") || has("cpu os") {
            let v = major_after(&lower, "iphone os ").or_else(|| major_after(&lower, "cpu os "));
            named("iOS", v)
        } else if has("mac os x") {
            let v = major_after(&lower, "mac os x ");
            named("Mac OS X", v)
        } else if has("cros") {
            "Chrome OS".to_owned()
        } else if has("linux") {
            "Linux".to_owned()
        } else {
            "other".to_owned()
        };
        let device = if bot {
            "bot"
        } else if has("ipad") || (has("android") && !has("mobile")) || has("tablet") {
            "tablet"
        } else if has("mobile") || has("iphone") {
            "mobile"
        } else if has("windows") || has("macintosh") || has("x11") || has("cros") {
            "desktop"
        } else {
            "other"
        };
        UaInfo {
            browser,
            os,
            device: device.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_agents() {
        let p = SimpleUaParser;
        let chrome = p.parse("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36");
        assert_eq!(chrome.browser, "Chrome 120");
        assert_eq!(chrome.os, "Windows 10");
        assert_eq!(chrome.device, "desktop");
        let edge = p.parse("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91");
        assert_eq!(edge.browser, "Edge 120");
        let iphone = p.parse("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1");
        assert_eq!(iphone.browser, "Safari 17");
        assert_eq!(iphone.os, "iOS 17");
        assert_eq!(iphone.device, "mobile");
        let ff = p.parse("Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0");
        assert_eq!(ff.browser, "Firefox 121");
        assert_eq!(ff.os, "Linux");
        assert_eq!(ff.device, "desktop");
        let curl = p.parse("curl/8.4.0");
        assert_eq!(curl.browser, "curl 8");
        assert_eq!(curl.device, "bot");
    }

    #[test]
    fn garbage_is_other() {
        let g = SimpleUaParser.parse("\u{0}\u{fffd}ééé chrome/");
        assert_eq!(g.browser, "Chrome");
        let e = SimpleUaParser.parse("");
        assert_eq!(
            e,
            UaInfo {
                browser: "other".into(),
                os: "other".into(),
                device: "other".into()
            }
        );
    }
}
