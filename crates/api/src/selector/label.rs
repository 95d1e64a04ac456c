//! Label selectors: upstream `labels.Parse` grammar, requirement validation and matching.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use super::validation::{invalid_value, label_value_errors, qualified_name_errors};
use super::{Error, Result};

/// How a label requirement relates its key to its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// `key=value`
    Equals,
    /// `key==value`
    DoubleEquals,
    /// `key!=value` (also matches objects without the key)
    NotEquals,
    /// `key in (a,b)`
    In,
    /// `key notin (a,b)` (also matches objects without the key)
    NotIn,
    /// `key`
    Exists,
    /// `!key`
    DoesNotExist,
    /// `key>n` (integer comparison)
    GreaterThan,
    /// `key<n` (integer comparison)
    LessThan,
}

/// One term of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    /// Sorted and de-duplicated, as upstream's string set.
    values: Vec<String>,
}

impl Requirement {
    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values, sorted and de-duplicated (empty for `Exists`/`DoesNotExist`).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    fn matches(&self, get: &dyn Fn(&str) -> Option<String>) -> bool {
        let actual = get(&self.key);
        let listed = |v: &String| self.values.iter().any(|x| x == v);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => {
                actual.as_ref().is_some_and(listed)
            }
            Operator::NotIn | Operator::NotEquals => !actual.as_ref().is_some_and(listed),
            Operator::Exists => actual.is_some(),
            Operator::DoesNotExist => actual.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(have) = actual.and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                let Some(want) = self.values.first().and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.key;
        let values = self.values.join(",");
        match self.operator {
            Operator::Equals => write!(f, "{key}={values}"),
            Operator::DoubleEquals => write!(f, "{key}=={values}"),
            Operator::NotEquals => write!(f, "{key}!={values}"),
            Operator::In => write!(f, "{key} in ({values})"),
            Operator::NotIn => write!(f, "{key} notin ({values})"),
            Operator::GreaterThan => write!(f, "{key}>{values}"),
            Operator::LessThan => write!(f, "{key}<{values}"),
            Operator::Exists => write!(f, "{key}"),
            Operator::DoesNotExist => write!(f, "!{key}"),
        }
    }
}

/// A parsed `labelSelector`: the AND of its requirements, sorted by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// The selector that matches everything.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Parses the `labelSelector` text, e.g. `app=web,tier in (a,b),!canary`, with upstream's
    /// grammar, key/value validation and error messages. Empty text selects everything.
    pub fn parse(s: &str) -> Result<LabelSelector> {
        let mut requirements = LabelParser::new(s)
            .parse()
            .map_err(Error::InvalidLabelSelector)?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements })
    }

    /// Whether the selector places no restriction.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether a label set satisfies every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements
            .iter()
            .all(|r| r.matches(&|key| labels.get(key).cloned()))
    }

    /// Whether an object's `metadata.labels` satisfy every requirement.
    pub fn matches_object(&self, obj: &Value) -> bool {
        let labels = obj
            .get("metadata")
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object);
        let get = |key: &str| {
            labels
                .and_then(|l| l.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        self.requirements.iter().all(|r| r.matches(&get))
    }

    /// The single value a selector demands for `key` (`key=v`, `key==v` or `key in (v)`).
    pub fn exact_value(&self, key: &str) -> Option<&str> {
        let r = self.requirements.iter().find(|r| r.key == key)?;
        match (r.operator, r.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [only]) => Some(only),
            _ => None,
        }
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .requirements
            .iter()
            .map(Requirement::to_string)
            .collect();
        f.write_str(&parts.join(","))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    End,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

fn keyword(s: &str) -> Option<Token> {
    Some(match s {
        ")" => Token::ClosedPar,
        "," => Token::Comma,
        "!" => Token::DoesNotExist,
        "==" => Token::DoubleEquals,
        "=" => Token::Equals,
        ">" => Token::GreaterThan,
        "in" => Token::In,
        "<" => Token::LessThan,
        "!=" => Token::NotEquals,
        "notin" => Token::NotIn,
        "(" => Token::OpenPar,
        _ => return None,
    })
}

fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Splits selector text into tokens the way upstream's lexer does: runs of operator symbols
/// are cut greedily at the longest known operator, everything else up to a symbol or blank is
/// an identifier or keyword.
fn lex(s: &str) -> Vec<(Token, String)> {
    let bytes = s.as_bytes();
    let mut pos = 0;
    let mut out = Vec::new();
    loop {
        while pos < bytes.len() && is_space(bytes[pos]) {
            pos += 1;
        }
        if pos >= bytes.len() {
            out.push((Token::End, String::new()));
            return out;
        }
        let start = pos;
        if is_special(bytes[pos]) {
            let mut best = None;
            while pos < bytes.len() && is_special(bytes[pos]) {
                match keyword(&s[start..=pos]) {
                    Some(token) => best = Some((token, pos + 1)),
                    None if best.is_some() => break,
                    None => {}
                }
                pos += 1;
            }
            // Every single symbol is itself an operator, so `best` is always set.
            let (token, end) = best.unwrap_or((Token::Identifier, pos));
            pos = end;
            out.push((token, s[start..end].to_owned()));
        } else {
            while pos < bytes.len() && !is_special(bytes[pos]) && !is_space(bytes[pos]) {
                pos += 1;
            }
            let literal = &s[start..pos];
            out.push((
                keyword(literal).unwrap_or(Token::Identifier),
                literal.to_owned(),
            ));
        }
    }
}

/// Whether `in`/`notin` read as operators or as plain values at this position.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

struct LabelParser {
    items: Vec<(Token, String)>,
    position: usize,
}

impl LabelParser {
    fn new(s: &str) -> Self {
        LabelParser {
            items: lex(s),
            position: 0,
        }
    }

    fn lookahead(&self, context: Context) -> (Token, String) {
        let (token, literal) = self
            .items
            .get(self.position)
            .cloned()
            .unwrap_or((Token::End, String::new()));
        (Self::in_context(token, context), literal)
    }

    fn consume(&mut self, context: Context) -> (Token, String) {
        let item = self.lookahead(context);
        self.position = (self.position + 1).min(self.items.len());
        item
    }

    fn in_context(token: Token, context: Context) -> Token {
        match (context, token) {
            (Context::Values, Token::In | Token::NotIn) => Token::Identifier,
            (_, token) => token,
        }
    }

    fn parse(mut self) -> Result<Vec<Requirement>, String> {
        let mut requirements = Vec::new();
        loop {
            let (token, literal) = self.lookahead(Context::Values);
            match token {
                Token::Identifier | Token::DoesNotExist => {
                    let requirement = self
                        .parse_requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    requirements.push(requirement);
                    let (next, literal) = self.consume(Context::Values);
                    match next {
                        Token::End => return Ok(requirements),
                        Token::Comma => {
                            let (after, literal) = self.lookahead(Context::Values);
                            if after != Token::Identifier && after != Token::DoesNotExist {
                                return Err(format!(
                                    "found '{literal}', expected: identifier after ','"
                                ));
                            }
                        }
                        _ => {
                            return Err(format!(
                                "found '{literal}', expected: ',' or 'end of string'"
                            ));
                        }
                    }
                }
                Token::End => return Ok(requirements),
                _ => {
                    return Err(format!(
                        "found '{literal}', expected: !, identifier, or 'end of string'"
                    ));
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, String> {
        let (key, inferred) = self.parse_key_and_infer_operator()?;
        if let Some(operator) = inferred {
            return new_requirement(key, operator, Vec::new());
        }
        let operator = self.parse_operator()?;
        let values = match operator {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        new_requirement(key, operator, values)
    }

    /// Reads `[!]key`; the operator is known already for `!key` and for a bare `key`.
    fn parse_key_and_infer_operator(&mut self) -> Result<(String, Option<Operator>), String> {
        let (mut token, mut literal) = self.consume(Context::Values);
        let negated = token == Token::DoesNotExist;
        if negated {
            (token, literal) = self.consume(Context::Values);
        }
        if token != Token::Identifier {
            return Err(format!("found '{literal}', expected: identifier"));
        }
        if let Some(detail) = qualified_name_errors(&literal) {
            return Err(invalid_value("<nil>", &literal, &detail));
        }
        let (next, _) = self.lookahead(Context::Values);
        let operator = if negated {
            Some(Operator::DoesNotExist)
        } else if matches!(next, Token::End | Token::Comma) {
            Some(Operator::Exists)
        } else {
            None
        };
        Ok((literal, operator))
    }

    fn parse_operator(&mut self) -> Result<Operator, String> {
        let (token, literal) = self.consume(Context::KeyAndOperator);
        Ok(match token {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => {
                return Err(format!(
                    "found '{literal}', expected: in, notin, =, ==, !=, gt, lt"
                ));
            }
        })
    }

    fn parse_values(&mut self) -> Result<Vec<String>, String> {
        let (token, literal) = self.consume(Context::Values);
        if token != Token::OpenPar {
            return Err(format!("found '{literal}' expected: '('"));
        }
        let (token, literal) = self.lookahead(Context::Values);
        match token {
            Token::Identifier | Token::Comma => {
                let values = self.parse_identifiers_list()?;
                let (closing, _) = self.consume(Context::Values);
                if closing != Token::ClosedPar {
                    // Upstream reports the token seen before the list here.
                    return Err(format!("found '{literal}', expected: ')'"));
                }
                Ok(values)
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                Ok(vec![String::new()])
            }
            _ => Err(format!(
                "found '{literal}', expected: ',', ')' or identifier"
            )),
        }
    }

    /// A comma-separated list where empty entries stand for the empty value.
    fn parse_identifiers_list(&mut self) -> Result<Vec<String>, String> {
        let mut values: Vec<String> = Vec::new();
        loop {
            let (token, literal) = self.consume(Context::Values);
            match token {
                Token::Identifier => {
                    values.push(literal);
                    let (next, literal) = self.lookahead(Context::Values);
                    match next {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(values),
                        _ => return Err(format!("found '{literal}', expected: ',' or ')'")),
                    }
                }
                Token::Comma => {
                    if values.is_empty() {
                        values.push(String::new());
                    }
                    let (next, _) = self.lookahead(Context::Values);
                    if next == Token::ClosedPar {
                        values.push(String::new());
                        return Ok(values);
                    }
                    if next == Token::Comma {
                        self.consume(Context::Values);
                        values.push(String::new());
                    }
                }
                _ => return Err(format!("found '{literal}', expected: ',', or identifier")),
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<Vec<String>, String> {
        let (token, _) = self.lookahead(Context::Values);
        if matches!(token, Token::End | Token::Comma) {
            return Ok(vec![String::new()]);
        }
        let (token, literal) = self.consume(Context::Values);
        if token == Token::Identifier {
            Ok(vec![literal])
        } else {
            Err(format!("found '{literal}', expected: identifier"))
        }
    }
}

/// Builds a requirement and validates it (upstream `NewRequirement`): values become a sorted
/// set, `gt`/`lt` need one integer, every value must be a valid label value.
fn new_requirement(
    key: String,
    operator: Operator,
    mut values: Vec<String>,
) -> Result<Requirement, String> {
    values.sort();
    values.dedup();
    let mut errors = Vec::new();
    if let Some(detail) = qualified_name_errors(&key) {
        errors.push(invalid_value("key", &key, &detail));
    }
    if matches!(operator, Operator::GreaterThan | Operator::LessThan) {
        for (i, value) in values.iter().enumerate() {
            if value.parse::<i64>().is_err() {
                errors.push(invalid_value(
                    &format!("values[{i}]"),
                    value,
                    "for 'Gt', 'Lt' operators, the value must be an integer",
                ));
            }
        }
    }
    for (i, value) in values.iter().enumerate() {
        if let Some(detail) = label_value_errors(value) {
            errors.push(invalid_value(
                &format!("values[{i}][{key}]"),
                value,
                &detail,
            ));
        }
    }
    match errors.len() {
        0 => Ok(Requirement {
            key,
            operator,
            values,
        }),
        1 => Err(errors.remove(0)),
        _ => Err(format!("[{}]", errors.join(", "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_equality_and_inequality() {
        let s = LabelSelector::parse("app=web,tier!=db").expect("parses");
        assert!(s.matches(&labels(&[("app", "web")])));
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "fe")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "db")])));
        assert!(!s.matches(&labels(&[("app", "api")])));
        assert!(
            LabelSelector::parse("app==web")
                .expect("parses")
                .matches(&labels(&[("app", "web")]))
        );
    }

    #[test]
    fn label_set_based_and_existence() {
        let s = LabelSelector::parse("env in (prod, staging),tier notin (db),canary,!legacy")
            .expect("parses");
        assert!(s.matches(&labels(&[("env", "prod"), ("canary", "")])));
        assert!(!s.matches(&labels(&[("env", "dev"), ("canary", "")])));
        assert!(!s.matches(&labels(&[("env", "prod")])));
        assert!(!s.matches(&labels(&[
            ("env", "prod"),
            ("canary", "1"),
            ("legacy", "x")
        ])));
        assert!(!s.matches(&labels(&[("env", "prod"), ("canary", "1"), ("tier", "db")])));
    }

    #[test]
    fn label_selector_is_sorted_and_prints_like_upstream() {
        let s = LabelSelector::parse("x in (foo,,baz),y,z notin ()").expect("parses");
        assert_eq!(s.to_string(), "x in (,baz,foo),y,z notin ()");
        let s = LabelSelector::parse("b=2, a = 1, !c").expect("parses");
        assert_eq!(s.to_string(), "a=1,b=2,!c");
    }

    #[test]
    fn empty_label_selector_matches_everything() {
        let s = LabelSelector::parse("").expect("parses");
        assert!(s.is_empty());
        assert!(s.matches_object(&json!({"metadata": {}})));
        assert!(LabelSelector::parse("   ").expect("parses").is_empty());
    }

    #[test]
    fn label_matches_object_reads_metadata_labels() {
        let s = LabelSelector::parse("app=web").expect("parses");
        assert!(s.matches_object(&json!({"metadata": {"labels": {"app": "web"}}})));
        assert!(!s.matches_object(&json!({"metadata": {"name": "x"}})));
    }

    #[test]
    fn label_in_and_notin_work_as_values() {
        let s = LabelSelector::parse("mode in (in,notin)").expect("parses");
        assert!(s.matches(&labels(&[("mode", "notin")])));
    }

    #[test]
    fn label_greater_and_less_than() {
        let s = LabelSelector::parse("gen>3,gen<10").expect("parses");
        assert!(s.matches(&labels(&[("gen", "5")])));
        assert!(!s.matches(&labels(&[("gen", "12")])));
        assert!(!s.matches(&labels(&[("gen", "x")])));
        let err = LabelSelector::parse("gen>abc").expect_err("not an integer");
        assert!(
            err.to_string()
                .contains("for 'Gt', 'Lt' operators, the value must be an integer"),
            "{err}"
        );
    }

    #[test]
    fn label_exact_value() {
        let s = LabelSelector::parse("app=web,tier in (a,b)").expect("parses");
        assert_eq!(s.exact_value("app"), Some("web"));
        assert_eq!(s.exact_value("tier"), None);
    }

    #[test]
    fn label_invalid_key_error_matches_upstream() {
        let err = LabelSelector::parse("a@b=c").expect_err("bad key");
        assert_eq!(
            err.to_string(),
            "unable to parse requirement: <nil>: Invalid value: \"a@b\": name part must consist of alphanumeric \
             characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  \
             or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
        );
        assert_eq!(err.status_code(), 400);
    }

    #[test]
    fn label_invalid_value_error_names_the_key() {
        let err = LabelSelector::parse("app=we$b").expect_err("bad value");
        assert_eq!(
            err.to_string(),
            "unable to parse requirement: values[0][app]: Invalid value: \"we$b\": a valid label must be an empty \
             string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an \
             alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is \
             '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
        );
    }

    #[test]
    fn label_prefixed_keys() {
        assert!(LabelSelector::parse("app.kubernetes.io/name=web").is_ok());
        let err = LabelSelector::parse("Bad_Prefix/name").expect_err("bad prefix");
        assert!(
            err.to_string()
                .contains("prefix part a lowercase RFC 1123 subdomain"),
            "{err}"
        );
        let err = LabelSelector::parse("/name").expect_err("empty prefix");
        assert!(
            err.to_string().contains("prefix part must be non-empty"),
            "{err}"
        );
        let long = format!("k={}", "a".repeat(64));
        let err = LabelSelector::parse(&long).expect_err("too long");
        assert!(
            err.to_string()
                .contains("must be no more than 63 characters"),
            "{err}"
        );
    }

    #[test]
    fn label_syntax_errors() {
        let cases = [
            ("a=b,", "found '', expected: identifier after ','"),
            (
                "a b",
                "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt",
            ),
            (
                "=a",
                "found '=', expected: !, identifier, or 'end of string'",
            ),
            (
                "a in b",
                "unable to parse requirement: found 'b' expected: '('",
            ),
            (
                "a in (b",
                "unable to parse requirement: found '', expected: ',' or ')'",
            ),
            (
                "a=(",
                "unable to parse requirement: found '(', expected: identifier",
            ),
            (
                "a (b)",
                "unable to parse requirement: found '(', expected: in, notin, =, ==, !=, gt, lt",
            ),
            (
                "a notin",
                "unable to parse requirement: found '' expected: '('",
            ),
            ("!a=b", "found '=', expected: ',' or 'end of string'"),
        ];
        for (input, want) in cases {
            let err = LabelSelector::parse(input).expect_err(input);
            assert_eq!(err.to_string(), want, "input {input:?}");
        }
    }
}
