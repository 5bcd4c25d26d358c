//! Structural checks of a Falco rules file.
//!
//! Falco itself does not run here, so this checks what can be checked without it:
//! every item is a rule, macro or list with the fields Falco requires and no
//! unknown ones; priorities are Falco's; names are unique; conditions parse
//! (`and`/`or`/`not`, parentheses, `field op value`, `field in (list)`); every
//! macro and list a condition or list names is defined before it is used and
//! every definition is used; fields in conditions and outputs are ones Falco
//! provides ([`KNOWN_FIELDS`]). Our files follow one convention that makes lists
//! checkable: the operand of `in`, `intersects` and `pmatch` is always a single
//! list name, never inline values.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// Falco's rule priorities.
pub const PRIORITIES: [&str; 9] = [
    "EMERGENCY",
    "ALERT",
    "CRITICAL",
    "ERROR",
    "WARNING",
    "NOTICE",
    "INFORMATIONAL",
    "INFO",
    "DEBUG",
];

/// The Falco fields our rules may use, each as listed by `falco --list` (syscall
/// source). A field outside this list is a typo or needs checking against Falco's
/// field reference before it is added here.
pub const KNOWN_FIELDS: &[&str] = &[
    "container.id",
    "container.image.repository",
    "evt.dir",
    "evt.is_open_read",
    "evt.is_open_write",
    "evt.rawres",
    "evt.res",
    "evt.type",
    "fd.l4proto",
    "fd.name",
    "fd.sip",
    "fd.snet",
    "fd.sport",
    "fd.typechar",
    "k8s.ns.name",
    "k8s.pod.label",
    "k8s.pod.name",
    "proc.cmdline",
    "proc.exepath",
    "proc.name",
    "proc.pname",
    "user.uid",
];

const RULE_KEYS: [&str; 11] = [
    "rule",
    "desc",
    "condition",
    "output",
    "priority",
    "tags",
    "enabled",
    "source",
    "exceptions",
    "warn_evttypes",
    "skip-if-unknown-filter",
];
const COMPARISONS: [&str; 16] = [
    "=",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "contains",
    "icontains",
    "bcontains",
    "startswith",
    "bstartswith",
    "endswith",
    "glob",
    "iglob",
    "regex",
];
const LIST_OPERATORS: [&str; 3] = ["in", "intersects", "pmatch"];

/// What a valid rules file defines.
#[derive(Debug, Default)]
pub struct Summary {
    /// Rule names, in file order.
    pub rules: Vec<String>,
    /// Macro names.
    pub macros: BTreeSet<String>,
    /// List names.
    pub lists: BTreeSet<String>,
}

/// Checks a rules file given as YAML text; `Err` holds every problem found.
pub fn check(yaml: &str) -> Result<Summary, Vec<String>> {
    let items: Value = yaml_serde::from_str(yaml).map_err(|e| vec![format!("YAML: {e}")])?;
    let items = items
        .as_array()
        .ok_or_else(|| vec!["a rules file is a YAML sequence".to_owned()])?;
    let mut checker = Checker::default();
    for (index, item) in items.iter().enumerate() {
        checker.item(index, item);
    }
    for (name, kind) in [("macro", &checker.macros), ("list", &checker.lists)]
        .into_iter()
        .flat_map(|(what, names)| names.keys().map(move |n| (n.clone(), what)))
    {
        if !checker.used.contains(&name) {
            checker
                .problems
                .push(format!("{kind} {name} is defined but never used"));
        }
    }
    if checker.summary.rules.is_empty() {
        checker.problems.push("no rule".into());
    }
    if checker.problems.is_empty() {
        let Checker {
            mut summary,
            macros,
            lists,
            ..
        } = checker;
        summary.macros = macros.into_keys().collect();
        summary.lists = lists.into_keys().collect();
        Ok(summary)
    } else {
        Err(checker.problems)
    }
}

#[derive(Default)]
struct Checker {
    summary: Summary,
    macros: BTreeMap<String, ()>,
    lists: BTreeMap<String, ()>,
    used: BTreeSet<String>,
    problems: Vec<String>,
}

impl Checker {
    fn item(&mut self, index: usize, item: &Value) {
        let Some(map) = item.as_object() else {
            self.problems.push(format!("item {index} is not a mapping"));
            return;
        };
        let string = |key: &str| map.get(key).and_then(Value::as_str).map(str::trim);
        if let Some(name) = string("rule") {
            let at = format!("rule {name:?}");
            for key in map.keys() {
                if !RULE_KEYS.contains(&key.as_str()) {
                    self.problems.push(format!("{at}: unknown key {key}"));
                }
            }
            for key in ["desc", "condition", "output", "priority"] {
                if string(key).is_none_or(str::is_empty) {
                    self.problems
                        .push(format!("{at}: {key} is missing or not a non-empty string"));
                }
            }
            if let Some(priority) = string("priority")
                && !PRIORITIES.contains(&priority)
            {
                self.problems.push(format!(
                    "{at}: priority {priority} is not one of {PRIORITIES:?}"
                ));
            }
            if let Some(tags) = map.get("tags")
                && !tags
                    .as_array()
                    .is_some_and(|t| t.iter().all(Value::is_string))
            {
                self.problems
                    .push(format!("{at}: tags must be a list of strings"));
            }
            if self.summary.rules.iter().any(|r| r == name) {
                self.problems.push(format!("{at}: defined twice"));
            }
            if let Some(condition) = string("condition") {
                self.condition(&at, condition);
            }
            if let Some(output) = string("output") {
                self.output(&at, output);
            }
            self.summary.rules.push(name.to_owned());
        } else if let Some(name) = string("macro") {
            let at = format!("macro {name}");
            self.only_keys(&at, map, &["macro", "condition"]);
            match string("condition") {
                Some(condition) if !condition.is_empty() => self.condition(&at, condition),
                _ => self.problems.push(format!("{at}: condition is missing")),
            }
            if self.macros.insert(name.to_owned(), ()).is_some() {
                self.problems.push(format!("{at}: defined twice"));
            }
        } else if let Some(name) = string("list") {
            let at = format!("list {name}");
            self.only_keys(&at, map, &["list", "items"]);
            match map.get("items").and_then(Value::as_array) {
                Some(items) if !items.is_empty() => {
                    for entry in items {
                        match entry {
                            // A list may include another list by name.
                            Value::String(s) if self.lists.contains_key(s) => {
                                self.used.insert(s.clone());
                            }
                            Value::String(_) | Value::Number(_) => {}
                            other => self
                                .problems
                                .push(format!("{at}: item {other} is not a string or number")),
                        }
                    }
                }
                _ => self
                    .problems
                    .push(format!("{at}: items must be a non-empty list")),
            }
            if self.lists.insert(name.to_owned(), ()).is_some() {
                self.problems.push(format!("{at}: defined twice"));
            }
        } else if map.contains_key("required_engine_version")
            || map.contains_key("required_plugin_versions")
        {
        } else {
            self.problems
                .push(format!("item {index} is not a rule, macro or list"));
        }
    }

    fn only_keys(&mut self, at: &str, map: &serde_json::Map<String, Value>, allowed: &[&str]) {
        for key in map.keys() {
            if !allowed.contains(&key.as_str()) {
                self.problems.push(format!("{at}: unknown key {key}"));
            }
        }
    }

    fn condition(&mut self, at: &str, condition: &str) {
        let tokens = match tokenize(condition) {
            Ok(tokens) => tokens,
            Err(e) => {
                self.problems.push(format!("{at}: condition: {e}"));
                return;
            }
        };
        let mut parser = Parser {
            tokens: &tokens,
            at: 0,
            refs: Vec::new(),
        };
        if let Err(e) = parser.expression().and_then(|()| parser.end()) {
            self.problems.push(format!("{at}: condition: {e}"));
            return;
        }
        for reference in parser.refs {
            let (known, name) = match &reference {
                Ref::Macro(name) => (self.macros.contains_key(name), name),
                Ref::List(name) => (self.lists.contains_key(name), name),
                Ref::Field(name) => (KNOWN_FIELDS.contains(&field_name(name)), name),
            };
            if !known {
                let what = match reference {
                    Ref::Macro(_) => "macro",
                    Ref::List(_) => "list",
                    Ref::Field(_) => "field",
                };
                self.problems.push(format!(
                    "{at}: {what} {name} is not defined (before this point)"
                ));
            }
            self.used.insert(name.clone());
        }
    }

    /// Output fields are `%field` (or `%field[arg]`).
    fn output(&mut self, at: &str, output: &str) {
        for (i, _) in output.match_indices('%') {
            let field: String = output[i + 1..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '[' | ']'))
                .collect();
            if !KNOWN_FIELDS.contains(&field_name(&field)) {
                self.problems
                    .push(format!("{at}: output field %{field} is not a known field"));
            }
        }
    }
}

/// A field without its `[argument]`.
fn field_name(field: &str) -> &str {
    field.split('[').next().unwrap_or(field)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    Comma,
    Word(String),
    Quoted(String),
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' | ',' => {
                chars.next();
                tokens.push(match c {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    _ => Token::Comma,
                });
            }
            '"' | '\'' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some(q) if q == c => break,
                        Some(ch) => s.push(ch),
                        None => return Err("unterminated string".into()),
                    }
                }
                tokens.push(Token::Quoted(s));
            }
            '=' | '!' | '<' | '>' => {
                let mut op = String::from(c);
                chars.next();
                if chars.peek() == Some(&'=') {
                    op.push('=');
                    chars.next();
                }
                tokens.push(Token::Word(op));
            }
            _ => {
                let mut word = String::new();
                // A field argument in brackets may hold any character but `]`.
                let mut depth = 0;
                while let Some(&ch) = chars.peek() {
                    if depth == 0 && (ch.is_whitespace() || "(),\"'=!<>".contains(ch)) {
                        break;
                    }
                    match ch {
                        '[' => depth += 1,
                        ']' => depth -= 1,
                        _ => {}
                    }
                    word.push(ch);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
        }
    }
    Ok(tokens)
}

enum Ref {
    Macro(String),
    List(String),
    Field(String),
}

struct Parser<'a> {
    tokens: &'a [Token],
    at: usize,
    refs: Vec<Ref>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Result<Token, String> {
        let token = self.peek().cloned().ok_or("unexpected end")?;
        self.at += 1;
        Ok(token)
    }

    fn keyword(&mut self, keyword: &str) -> bool {
        if matches!(self.peek(), Some(Token::Word(w)) if w == keyword) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn end(&self) -> Result<(), String> {
        match self.peek() {
            None => Ok(()),
            Some(token) => Err(format!("unexpected {token:?}")),
        }
    }

    fn expression(&mut self) -> Result<(), String> {
        self.conjunction()?;
        while self.keyword("or") {
            self.conjunction()?;
        }
        Ok(())
    }

    fn conjunction(&mut self) -> Result<(), String> {
        self.negation()?;
        while self.keyword("and") {
            self.negation()?;
        }
        Ok(())
    }

    fn negation(&mut self) -> Result<(), String> {
        if self.keyword("not") {
            return self.negation();
        }
        match self.next()? {
            Token::Open => {
                self.expression()?;
                match self.next()? {
                    Token::Close => Ok(()),
                    other => Err(format!("expected ')', found {other:?}")),
                }
            }
            Token::Word(word) if word.contains('.') => self.check(word),
            Token::Word(word)
                if is_name(&word) && !["and", "or", "not"].contains(&word.as_str()) =>
            {
                self.refs.push(Ref::Macro(word));
                Ok(())
            }
            other => Err(format!("expected a macro, a field or '(', found {other:?}")),
        }
    }

    /// `field op value`, `field in (list)` or `field exists`.
    fn check(&mut self, field: String) -> Result<(), String> {
        self.refs.push(Ref::Field(field.clone()));
        let operator = match self.next()? {
            Token::Word(op) => op,
            other => return Err(format!("{field}: expected an operator, found {other:?}")),
        };
        if operator == "exists" {
            return Ok(());
        }
        if LIST_OPERATORS.contains(&operator.as_str()) {
            // Our convention: exactly one list name in the parentheses.
            return match (self.next()?, self.next()?, self.next()?) {
                (Token::Open, Token::Word(list), Token::Close) if is_name(&list) => {
                    self.refs.push(Ref::List(list));
                    Ok(())
                }
                _ => Err(format!(
                    "{field} {operator}: the operand must be one list name in parentheses"
                )),
            };
        }
        if !COMPARISONS.contains(&operator.as_str()) {
            return Err(format!("{field}: unknown operator {operator}"));
        }
        match self.next()? {
            Token::Word(_) | Token::Quoted(_) => Ok(()),
            other => Err(format!(
                "{field} {operator}: expected a value, found {other:?}"
            )),
        }
    }
}

fn is_name(word: &str) -> bool {
    let mut chars = word.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}
