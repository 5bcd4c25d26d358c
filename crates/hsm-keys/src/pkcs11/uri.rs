//! Choosing the token: a label, or an RFC 7512 `pkcs11:` URI that never echoes a PIN.

use percent_encoding::percent_decode_str;

use crate::Error;

/// Which token to use: its label, or an RFC 7512 `pkcs11:` URI with `token=`
/// (and optionally `manufacturer=`, `model=`, `serial=`). Never a slot index.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenSelector {
    /// `CKA_LABEL` of the token (`token=` in a URI).
    pub token: Option<String>,
    /// `manufacturerID` of the token.
    pub manufacturer: Option<String>,
    /// `model` of the token.
    pub model: Option<String>,
    /// `serialNumber` of the token.
    pub serial: Option<String>,
}

/// RFC 7512 path attributes. Only these names are ever echoed in an error: a URI may
/// carry a PIN (`pin-value`), so neither values nor unknown names are.
const PATH_ATTRIBUTES: [&str; 13] = [
    "token",
    "manufacturer",
    "serial",
    "model",
    "library-manufacturer",
    "library-description",
    "library-version",
    "object",
    "type",
    "id",
    "slot-description",
    "slot-manufacturer",
    "slot-id",
];
/// RFC 7512 query attributes.
const QUERY_ATTRIBUTES: [&str; 4] = ["pin-source", "pin-value", "module-name", "module-path"];
/// `CK_TOKEN_INFO.label` is 32 bytes: a longer label matches no token.
const MAX_LABEL_BYTES: usize = 32;

fn uri_error(what: String) -> Error {
    Error::config("token", format!("pkcs11 URI refused: {what}"))
}

/// The error for a query attribute (or one misplaced in the path): named only if it
/// is one of RFC 7512's, and never with its value.
fn query_attribute_error(name: &str, position: usize) -> Error {
    uri_error(match QUERY_ATTRIBUTES.iter().find(|n| **n == name) {
        Some(&n @ ("pin-value" | "pin-source")) => format!(
            "attribute {n} is not accepted: give the PIN as a Pin (configuration or \
             environment variable), never in the URI"
        ),
        Some(n) => {
            format!("attribute {n} is not accepted: the module is given to the store builder")
        }
        None => format!("query attribute #{position} is not an RFC 7512 attribute"),
    })
}

impl TokenSelector {
    /// The names of the attributes it selects by (`token, serial`), for errors: never
    /// their values, which may come from a URI.
    pub(crate) fn names(&self) -> String {
        [
            ("token", &self.token),
            ("manufacturer", &self.manufacturer),
            ("model", &self.model),
            ("serial", &self.serial),
        ]
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
    }

    /// Parses a token label, or a `pkcs11:` URI (RFC 7512, scheme in any case).
    ///
    /// Path attributes `object`, `type`, `id` and `library-*` are accepted and
    /// ignored (keys are named by this crate); `slot-*` is refused (slot numbers are
    /// not stable), as are unknown or repeated attributes and any query attribute
    /// (`pin-value`/`pin-source`: the PIN is a [`crate::Pin`]; `module-*`: the module is
    /// given to [`crate::Pkcs11StoreBuilder::module`]). Errors name the attribute only if it is one
    /// of RFC 7512's, or its position, and never a value or the URI: a URI may
    /// carry a PIN.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let Some(rest) = s
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case("pkcs11:"))
            .map(|_| &s[7..])
        else {
            if s.is_empty() {
                return Err(Error::config("token", "empty token label"));
            }
            if s.len() > MAX_LABEL_BYTES {
                return Err(Error::config(
                    "token",
                    format!(
                        "token label of {} bytes: PKCS#11 labels have at most {MAX_LABEL_BYTES}",
                        s.len()
                    ),
                ));
            }
            return Ok(TokenSelector {
                token: Some(s.to_owned()),
                ..Default::default()
            });
        };
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut sel = TokenSelector::default();
        let mut seen: Vec<&'static str> = Vec::new();
        for (i, attr) in path.split(';').enumerate() {
            let position = i + 1;
            if attr.is_empty() {
                continue;
            }
            let Some((k, v)) = attr.split_once('=') else {
                return Err(uri_error(format!("path attribute #{position} has no '='")));
            };
            let Some(&name) = PATH_ATTRIBUTES.iter().find(|n| **n == k) else {
                if QUERY_ATTRIBUTES.contains(&k) {
                    return Err(query_attribute_error(k, position));
                }
                return Err(uri_error(format!(
                    "path attribute #{position} is not an RFC 7512 attribute"
                )));
            };
            if seen.contains(&name) {
                return Err(uri_error(format!("attribute {name} appears twice")));
            }
            seen.push(name);
            let v = percent_decode(v).ok_or_else(|| {
                uri_error(format!(
                    "the value of attribute {name} is not valid percent-encoded UTF-8"
                ))
            })?;
            match name {
                "token" => sel.token = Some(v),
                "manufacturer" => sel.manufacturer = Some(v),
                "model" => sel.model = Some(v),
                "serial" => sel.serial = Some(v),
                "slot-id" | "slot-description" | "slot-manufacturer" => {
                    return Err(uri_error(format!(
                        "attribute {name} is not accepted: choose the token by token= label"
                    )));
                }
                _ => {}
            }
        }
        if let Some((i, attr)) = query.split('&').enumerate().find(|(_, a)| !a.is_empty()) {
            let name = attr.split_once('=').map_or(attr, |(k, _)| k);
            return Err(query_attribute_error(name, i + 1));
        }
        if sel.token.is_none() && sel.serial.is_none() {
            return Err(uri_error("it names no token= or serial=".into()));
        }
        Ok(sel)
    }

    pub(super) fn matches(&self, info: &cryptoki::slot::TokenInfo) -> bool {
        let eq = |want: &Option<String>, have: &str| {
            want.as_deref().is_none_or(|w| w == have.trim_end())
        };
        eq(&self.token, info.label())
            && eq(&self.manufacturer, info.manufacturer_id())
            && eq(&self.model, info.model())
            && eq(&self.serial, info.serial_number())
    }
}

/// RFC 3986 percent-decoding into UTF-8 (the `percent-encoding` crate); `None` if it
/// is malformed: every `%` must start a two-hex-digit escape (the crate itself would
/// pass a stray `%` through).
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let escapes_ok = bytes.iter().enumerate().all(|(i, b)| {
        *b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if !escapes_ok {
        return None;
    }
    percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_pick_tokens_by_label() {
        let sel =
            TokenSelector::parse("PKCS11:model=SoftHSM%20v2;token=a%3Bb;object=k;type=private")
                .unwrap();
        assert_eq!(sel.token.as_deref(), Some("a;b"));
        assert_eq!(sel.model.as_deref(), Some("SoftHSM v2"));
        assert_eq!(
            TokenSelector::parse("plain label")
                .unwrap()
                .token
                .as_deref(),
            Some("plain label")
        );
        for bad in [
            "",
            "pkcs11:",
            "pkcs11:slot-id=1",
            "pkcs11:token",
            "pkcs11:token=%4",
            "pkcs11:token=%ff%fe",
            "pkcs11:token=%+f",
            "pkcs11:token=a;token=b",
            "pkcs11:token=a;colour=blue",
            "pkcs11:token=a?module-path=/x.so",
            "a label longer than thirty-two bytes",
        ] {
            assert!(
                matches!(
                    TokenSelector::parse(bad),
                    Err(Error::InvalidConfig { field: "token", .. })
                ),
                "{bad}"
            );
        }
    }
}
