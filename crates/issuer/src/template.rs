//! JWT templates: JSON claim sets with static values and `{{ shortcodes }}`, compiled once when a
//! template is saved and rendered for each token.
//!
//! The language, as Clerk's documentation specifies it:
//!
//! - **Static values** of any JSON type are copied as they are, nested objects and arrays included.
//! - **Shortcodes** `{{ root.path }}` read the subject's data by dotted path: `user.first_name`,
//!   `user.public_metadata.addresses.Home`, `user.public_metadata.interests.0` (array index),
//!   `org.name`, `session.id`, `machine.scopes`. The roots are `user`, `org` (or `organization`),
//!   `membership`, `session` and `machine`; an unknown path (or a root the subject lacks) gives
//!   `null`.
//! - A string that is **exactly one shortcode** keeps the type of what it reads (string, number,
//!   boolean, array, object, null).
//! - **Interpolation**: shortcodes inside a longer string give a string. A null is written `null`,
//!   strings as they are, numbers and booleans as JSON, arrays and objects as compact JSON. The
//!   result is then trimmed of leading and trailing whitespace: the documentation's complete
//!   example renders `"{{user.last_name}} {{user.first_name}} "` as `"Doe Maria"` (and a missing
//!   last name, without the trailing space, as `"null John"`).
//! - **Conditionals** `{{ a || b || … }}` give the first operand that is neither `null` nor `false`,
//!   else the last operand whatever its value. Literal operands are single-quoted strings
//!   (`'Awesome User'`, with `\'` and `\\` escapes), numbers and booleans.
//! - Syntax errors (an unclosed `{{`, an empty shortcode or operand, a bad literal, an unknown
//!   root) are found when the template is compiled, with the claim's JSON path and the offending
//!   text; rendering cannot fail.
//! - **Bounds**: a template is at most [`Template::MAX_SIZE`] bytes (64 KiB) written as compact
//!   JSON, and nests objects and arrays at most [`Template::MAX_DEPTH`] (32) levels deep, the
//!   claim set included. Compiling takes time in proportion to the template's size.
//!
//! ```
//! use serde_json::json;
//! use machine_auth_issuer::Template;
//!
//! let template = Template::compile(json!({
//!     "name": "{{user.first_name}}",
//!     "full_name": "{{user.last_name}} {{user.first_name}}",
//!     "age": "{{user.public_metadata.age || 30}}",
//! }).as_object().unwrap())?;
//! let claims = template.render(&json!({"user": {"first_name": "John"}}));
//! assert_eq!(serde_json::Value::Object(claims), json!({"name": "John", "full_name": "null John", "age": 30}));
//! # Ok::<(), machine_auth_issuer::TemplateError>(())
//! ```

use std::fmt;

use serde_json::{Map, Number, Value};

/// Claims every template token gets from the issuer; a template cannot set them.
pub const DEFAULT_CLAIMS: [&str; 7] = ["azp", "exp", "iat", "iss", "jti", "nbf", "sub"];
/// Claims only session-bound tokens carry; a template cannot include them.
pub const SESSION_BOUND_CLAIMS: [&str; 4] = ["sid", "v", "pla", "fea"];
/// The objects a shortcode can read: the roots of a subject (`{{user.id}}`, `{{org.slug}}`, …).
pub const SHORTCODE_ROOTS: [&str; 6] = [
    "user",
    "org",
    "organization",
    "membership",
    "session",
    "machine",
];

/// A template error: where, what, and the offending text.
///
/// ```
/// use serde_json::json;
/// use machine_auth_issuer::Template;
///
/// let error = Template::compile(json!({"a": {"b": ["{{user.id"]}}).as_object().unwrap()).unwrap_err();
/// assert_eq!(error.path(), "a.b[0]");
/// assert!(error.to_string().contains("{{user.id"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    path: String,
    problem: &'static str,
    text: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "claim `{}`: ", self.path)?;
        }
        f.write_str(self.problem)?;
        if !self.text.is_empty() {
            write!(f, ": `{}`", self.text)?;
        }
        Ok(())
    }
}

impl std::error::Error for TemplateError {}

impl TemplateError {
    fn new(path: &str, problem: &'static str, text: &str) -> Self {
        Self {
            path: path.to_owned(),
            problem,
            text: text.to_owned(),
        }
    }

    /// The JSON path of the claim, such as `foo.bar[2]`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What is wrong, such as `"unclosed shortcode"`.
    pub fn problem(&self) -> &str {
        self.problem
    }

    /// Whether the template is refused for its size or its nesting ([`Template::MAX_SIZE`],
    /// [`Template::MAX_DEPTH`]) rather than for its syntax.
    ///
    /// ```
    /// use serde_json::{Map, Value};
    /// use machine_auth_issuer::Template;
    ///
    /// let large = Map::from_iter([("pad".to_owned(), Value::String("x".repeat(70_000)))]);
    /// assert!(Template::compile(&large).unwrap_err().exceeds_limit());
    /// let bad = Map::from_iter([("a".to_owned(), Value::String("{{user.id".into()))]);
    /// assert!(!Template::compile(&bad).unwrap_err().exceeds_limit());
    /// ```
    pub fn exceeds_limit(&self) -> bool {
        self.problem == TOO_LARGE || self.problem == TOO_DEEP
    }
}

/// [`TemplateError::problem`] of a template past [`Template::MAX_SIZE`].
const TOO_LARGE: &str = "the template is larger than 64 KiB (its claims written as compact JSON)";
/// [`TemplateError::problem`] of a template past [`Template::MAX_DEPTH`].
const TOO_DEEP: &str =
    "nested deeper than 32 levels of objects and arrays (the claim set is the first level)";

/// A compiled template.
#[derive(Clone, PartialEq)]
pub struct Template {
    claims: Vec<(String, Node)>,
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Template")
            .field(
                "claims",
                &self.claims.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Static(Value),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
    /// A string that is exactly one shortcode: keeps the type of its value.
    Shortcode(Expression),
    /// Text with shortcodes in it: a string.
    Interpolation(Vec<Part>),
}

impl Node {
    fn is_static(&self) -> bool {
        matches!(self, Self::Static(_))
    }

    /// The value of a static node.
    fn into_static(self) -> Option<Value> {
        match self {
            Self::Static(value) => Some(value),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Shortcode(Expression),
}

/// `a || b || …` (one operand for a plain shortcode).
#[derive(Debug, Clone, PartialEq)]
struct Expression(Vec<Operand>);

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Path(Vec<String>),
    Literal(Value),
}

impl Template {
    /// The largest template compiled, in bytes of its claims written as compact JSON (64 KiB).
    pub const MAX_SIZE: usize = 64 * 1024;

    /// The deepest nesting of objects and arrays compiled, the claim set being the first level:
    /// `{"a": {"b": [1]}}` nests 3 levels.
    pub const MAX_DEPTH: usize = 32;

    /// Compiles a claim set, refusing default and session-bound claims, every syntax error, and
    /// templates larger than [`MAX_SIZE`](Self::MAX_SIZE) or deeper than
    /// [`MAX_DEPTH`](Self::MAX_DEPTH).
    pub fn compile(claims: &Map<String, Value>) -> Result<Self, TemplateError> {
        let mut compiler = Compiler::default();
        // The braces, and the commas between claims.
        compiler.grow(1 + claims.len().max(1))?;
        let mut compiled = Vec::with_capacity(claims.len());
        for (name, value) in claims {
            if DEFAULT_CLAIMS.contains(&name.as_str()) {
                return Err(TemplateError::new(
                    name,
                    "is a default claim the issuer sets; it cannot be overridden",
                    name,
                ));
            }
            if SESSION_BOUND_CLAIMS.contains(&name.as_str()) {
                return Err(TemplateError::new(
                    name,
                    "is a session-bound claim; custom JWTs cannot include it",
                    name,
                ));
            }
            compiled.push((name.clone(), compiler.member(name, value, 1)?));
        }
        Ok(Self { claims: compiled })
    }

    /// Reads a template's claims from JSON text, which may hold `//` and `/* */` comments as the
    /// documentation writes templates, and compiles them. Returns the claims as written too.
    ///
    /// ```
    /// use machine_auth_issuer::Template;
    ///
    /// let (claims, template) = Template::parse(r#"{
    ///     // static values
    ///     "aud": "https://my-site.com",
    ///     "user_id": "{{user.id}}" /* dynamic */
    /// }"#)?;
    /// assert_eq!(claims["aud"], "https://my-site.com");
    /// # Ok::<(), machine_auth_issuer::TemplateError>(())
    /// ```
    pub fn parse(text: &str) -> Result<(Map<String, Value>, Self), TemplateError> {
        let mut json = String::new();
        std::io::Read::read_to_string(
            &mut json_comments::StripComments::new(text.as_bytes()),
            &mut json,
        )
        .map_err(|_| TemplateError::new("", "cannot read the template", ""))?;
        let claims = match serde_json::from_str::<Value>(&json) {
            Ok(Value::Object(claims)) => claims,
            Ok(_) => {
                return Err(TemplateError::new(
                    "",
                    "a template is a JSON object of claims",
                    text.trim(),
                ));
            }
            Err(error) => {
                return Err(TemplateError::new(
                    "",
                    "the template is not valid JSON",
                    &format!("line {}, column {}", error.line(), error.column()),
                ));
            }
        };
        let template = Self::compile(&claims)?;
        Ok((claims, template))
    }

    /// Renders the claims for a subject: `{"user": {…}, "org": {…}, "session": {…}, "machine": {…}}`.
    pub fn render(&self, subject: &Value) -> Map<String, Value> {
        self.claims
            .iter()
            .map(|(name, node)| (name.clone(), render(node, subject)))
            .collect()
    }
}

/// One step of a JSON path: a member's key or an item's index.
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// The state of one compilation: the path to the value being compiled (written out only for an
/// error), and the size of what was read so far. Each value is visited once, and costs time in
/// proportion to its own size: nothing is copied again per nesting level.
#[derive(Default)]
struct Compiler<'a> {
    path: Vec<Step<'a>>,
    size: usize,
}

impl<'a> Compiler<'a> {
    /// An error about the value being compiled.
    fn error(&self, problem: &'static str, text: &str) -> TemplateError {
        let mut path = String::new();
        for (index, step) in self.path.iter().enumerate() {
            match step {
                Step::Key(key) if index == 0 => path.push_str(key),
                Step::Key(key) => {
                    path.push('.');
                    path.push_str(key);
                }
                Step::Index(index) => {
                    path.push('[');
                    path.push_str(&index.to_string());
                    path.push(']');
                }
            }
        }
        TemplateError {
            path,
            problem,
            text: text.to_owned(),
        }
    }

    /// Counts `bytes` more of the template, refusing it past [`Template::MAX_SIZE`].
    fn grow(&mut self, bytes: usize) -> Result<(), TemplateError> {
        self.size = self.size.saturating_add(bytes);
        if self.size > Template::MAX_SIZE {
            return Err(TemplateError::new("", TOO_LARGE, ""));
        }
        Ok(())
    }

    /// An object's member `"key":value`, at nesting `level` (that of the object).
    fn member(
        &mut self,
        key: &'a str,
        value: &'a Value,
        level: usize,
    ) -> Result<Node, TemplateError> {
        self.grow(json_length(key) + 1)?;
        self.path.push(Step::Key(key));
        let node = self.value(value, level + 1)?;
        self.path.pop();
        Ok(node)
    }

    /// A value, which nests at `level` if it is an object or an array.
    fn value(&mut self, value: &'a Value, level: usize) -> Result<Node, TemplateError> {
        match value {
            Value::String(text) => {
                self.grow(json_length(text))?;
                self.string(text)
            }
            Value::Array(items) => {
                self.nest(level, items.len())?;
                let mut nodes = Vec::with_capacity(items.len());
                for (index, item) in items.iter().enumerate() {
                    self.path.push(Step::Index(index));
                    nodes.push(self.value(item, level + 1)?);
                    self.path.pop();
                }
                // All static: the values are moved up, not copied at every level.
                Ok(if nodes.iter().all(Node::is_static) {
                    Node::Static(Value::Array(
                        nodes.into_iter().filter_map(Node::into_static).collect(),
                    ))
                } else {
                    Node::Array(nodes)
                })
            }
            Value::Object(map) => {
                self.nest(level, map.len())?;
                let mut members = Vec::with_capacity(map.len());
                for (key, item) in map {
                    members.push((key.clone(), self.member(key, item, level)?));
                }
                Ok(if members.iter().all(|(_, node)| node.is_static()) {
                    Node::Static(Value::Object(
                        members
                            .into_iter()
                            .filter_map(|(key, node)| Some((key, node.into_static()?)))
                            .collect(),
                    ))
                } else {
                    Node::Object(members)
                })
            }
            other => {
                self.grow(json_length(other))?;
                Ok(Node::Static(other.clone()))
            }
        }
    }

    /// Enters an object or an array of `length` items at `level`: refused past
    /// [`Template::MAX_DEPTH`]; its brackets and commas count towards the size.
    fn nest(&mut self, level: usize, length: usize) -> Result<(), TemplateError> {
        if level > Template::MAX_DEPTH {
            return Err(self.error(TOO_DEEP, ""));
        }
        self.grow(1 + length.max(1))
    }

    fn string(&self, text: &str) -> Result<Node, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                return Err(self.error("unclosed shortcode (missing `}}`)", &rest[start..]));
            };
            let inner = &after[..end];
            if inner.contains("{{") {
                return Err(self.error(
                    "unclosed shortcode (missing `}}`)",
                    &rest[start..start + 2 + end + 2],
                ));
            }
            parts.push(Part::Shortcode(self.expression(inner)?));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        let last = parts.pop();
        Ok(match (last, parts.is_empty()) {
            (None, _) => Node::Static(Value::String(String::new())),
            (Some(Part::Text(text)), true) => Node::Static(Value::String(text)),
            (Some(Part::Shortcode(expression)), true) => Node::Shortcode(expression),
            (Some(last), false) => {
                parts.push(last);
                Node::Interpolation(parts)
            }
        })
    }

    fn expression(&self, inner: &str) -> Result<Expression, TemplateError> {
        let shown = || format!("{{{{{inner}}}}}");
        if inner.trim().is_empty() {
            return Err(self.error("empty shortcode", &shown()));
        }
        let operands = split_operands(inner)
            .into_iter()
            .map(|operand| {
                let operand = operand.trim();
                if operand.is_empty() {
                    return Err(self.error("empty operand in a conditional", &shown()));
                }
                compile_operand(operand).map_err(|problem| self.error(problem, operand))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Expression(operands))
    }
}

/// The length of `value` written as compact JSON, counted without writing it anywhere.
fn json_length(value: &(impl serde::Serialize + ?Sized)) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing a string, a number, a boolean or null cannot fail.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// Splits on `||` outside single-quoted strings.
fn split_operands(inner: &str) -> Vec<&str> {
    let mut operands = Vec::new();
    let (mut start, mut in_string, mut escaped) = (0, false, false);
    let bytes = inner.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'\'' => in_string = false,
                _ => {}
            }
        } else if byte == b'\'' {
            in_string = true;
        } else if byte == b'|' && bytes.get(index + 1) == Some(&b'|') {
            operands.push(&inner[start..index]);
            index += 2;
            start = index;
            continue;
        }
        index += 1;
    }
    operands.push(&inner[start..]);
    operands
}

/// A non-empty operand: a literal or a path; else what is wrong with it.
fn compile_operand(operand: &str) -> Result<Operand, &'static str> {
    if let Some(quoted) = operand.strip_prefix('\'') {
        return single_quoted(quoted)
            .map(|text| Operand::Literal(Value::String(text)))
            .ok_or("bad string literal (use 'single quotes')");
    }
    match operand {
        "true" => return Ok(Operand::Literal(Value::Bool(true))),
        "false" => return Ok(Operand::Literal(Value::Bool(false))),
        _ => {}
    }
    if operand.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+' || c == '.') {
        return serde_json::from_str::<Number>(operand.trim_start_matches('+'))
            .map(|number| Operand::Literal(Value::Number(number)))
            .map_err(|_| "bad number literal");
    }
    let segments: Vec<&str> = operand.split('.').collect();
    if !SHORTCODE_ROOTS.contains(&segments[0]) {
        return Err(if segments.len() == 1 {
            "bad literal (literals are 'single-quoted strings', numbers and booleans)"
        } else {
            "unknown root object (use user, org, membership, session or machine)"
        });
    }
    if segments.iter().any(|segment| {
        segment.is_empty()
            || !segment
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '-' || c == '$')
    }) {
        return Err("bad shortcode path");
    }
    let root = if segments[0] == "organization" {
        "org"
    } else {
        segments[0]
    };
    Ok(Operand::Path(
        std::iter::once(root)
            .chain(segments[1..].iter().copied())
            .map(str::to_owned)
            .collect(),
    ))
}

/// The content of a single-quoted literal (after its opening quote), if it is well formed.
fn single_quoted(rest: &str) -> Option<String> {
    let mut text = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => text.push(chars.next()?),
            '\'' => return chars.next().is_none().then_some(text),
            c => text.push(c),
        }
    }
    None
}

fn render(node: &Node, subject: &Value) -> Value {
    match node {
        Node::Static(value) => value.clone(),
        Node::Array(items) => {
            Value::Array(items.iter().map(|item| render(item, subject)).collect())
        }
        Node::Object(members) => Value::Object(
            members
                .iter()
                .map(|(key, item)| (key.clone(), render(item, subject)))
                .collect(),
        ),
        Node::Shortcode(expression) => evaluate(expression, subject),
        Node::Interpolation(parts) => {
            let mut text = String::new();
            for part in parts {
                match part {
                    Part::Text(literal) => text.push_str(literal),
                    Part::Shortcode(expression) => match evaluate(expression, subject) {
                        Value::String(value) => text.push_str(&value),
                        other => text.push_str(&other.to_string()),
                    },
                }
            }
            Value::String(text.trim().to_owned())
        }
    }
}

fn evaluate(expression: &Expression, subject: &Value) -> Value {
    let mut last = Value::Null;
    for operand in &expression.0 {
        last = match operand {
            Operand::Literal(value) => value.clone(),
            Operand::Path(segments) => lookup(subject, segments),
        };
        if !matches!(last, Value::Null | Value::Bool(false)) {
            break;
        }
    }
    last
}

fn lookup(subject: &Value, segments: &[String]) -> Value {
    let mut current = subject;
    for segment in segments {
        current = match current {
            Value::Object(map) => match map.get(segment) {
                Some(value) => value,
                None => return Value::Null,
            },
            Value::Array(items) => match segment
                .parse::<usize>()
                .ok()
                .and_then(|index| items.get(index))
            {
                Some(value) => value,
                None => return Value::Null,
            },
            _ => return Value::Null,
        };
    }
    current.clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compile(template: Value) -> Result<Template, TemplateError> {
        Template::compile(template.as_object().unwrap())
    }

    fn render_with(template: Value, subject: Value) -> Value {
        Value::Object(compile(template).unwrap().render(&subject))
    }

    #[test]
    fn a_lone_shortcode_keeps_its_type() {
        let subject =
            json!({"user": {"n": 5, "b": true, "a": [1], "o": {"k": "v"}, "s": "x", "z": null}});
        let rendered = render_with(
            json!({"n": "{{user.n}}", "b": "{{user.b}}", "a": "{{user.a}}", "o": "{{user.o}}", "s": "{{ user.s }}", "z": "{{user.z}}", "missing": "{{user.nope.deeper}}"}),
            subject,
        );
        assert_eq!(
            rendered,
            json!({"n": 5, "b": true, "a": [1], "o": {"k": "v"}, "s": "x", "z": null, "missing": null})
        );
    }

    #[test]
    fn interpolation_writes_each_type_and_trims() {
        let subject = json!({"user": {"n": 5, "b": false, "a": [1, "x"], "o": {"k": 1}, "s": "x"}});
        let rendered = render_with(
            json!({"all": " {{user.s}}-{{user.n}}-{{user.b}}-{{user.a}}-{{user.o}}-{{user.z}} "}),
            subject,
        );
        assert_eq!(rendered["all"], r#"x-5-false-[1,"x"]-{"k":1}-null"#);
    }

    #[test]
    fn conditionals_return_the_first_truthy_operand_or_the_last() {
        let subject = json!({"user": {"f": false, "zero": 0, "empty": "", "name": "Ann"}});
        let rendered = render_with(
            json!({
                "a": "{{user.f || user.none || 'fallback'}}",
                "b": "{{user.zero || 7}}",
                "c": "{{user.empty || 'x'}}",
                "d": "{{user.none || user.f}}",
                "e": "{{ user.none || false || 2.5 }}",
                "f": "{{'it\\'s' || user.name}}",
                "g": "{{user.none||-1}}",
            }),
            subject,
        );
        assert_eq!(
            rendered,
            json!({"a": "fallback", "b": 0, "c": "", "d": false, "e": 2.5, "f": "it's", "g": -1})
        );
    }

    #[test]
    fn arrays_and_nested_objects_are_rendered_in_place() {
        let rendered = render_with(
            json!({"list": ["{{user.id}}", 1, {"deep": "{{org.name || 'none'}}"}], "static": {"k": [1, 2]}}),
            json!({"user": {"id": "user_1"}, "org": {"name": "Acme"}}),
        );
        assert_eq!(
            rendered,
            json!({"list": ["user_1", 1, {"deep": "Acme"}], "static": {"k": [1, 2]}})
        );
        let by_index = render_with(
            json!({"first": "{{user.tags.0}}", "out": "{{user.tags.9}}"}),
            json!({"user": {"tags": ["a"]}}),
        );
        assert_eq!(by_index, json!({"first": "a", "out": null}));
        let alias = render_with(
            json!({"org": "{{organization.name}}"}),
            json!({"org": {"name": "Acme"}}),
        );
        assert_eq!(alias["org"], "Acme");
    }

    #[test]
    fn syntax_errors_name_the_path_and_the_text() {
        for (template, path, problem) in [
            (
                json!({"a": "{{user.id"}),
                "a",
                "unclosed shortcode (missing `}}`)",
            ),
            (json!({"a": {"b": "x {{ }} y"}}), "a.b", "empty shortcode"),
            (
                json!({"a": ["{{user.id || }}"]}),
                "a[0]",
                "empty operand in a conditional",
            ),
            (
                json!({"a": "{{user.id || \"x\"}}"}),
                "a",
                "bad literal (literals are 'single-quoted strings', numbers and booleans)",
            ),
            (
                json!({"a": "{{user.id || 'x}}"}),
                "a",
                "bad string literal (use 'single quotes')",
            ),
            (
                json!({"a": "{{user.id || 1.2.3}}"}),
                "a",
                "bad number literal",
            ),
            (
                json!({"a": "{{account.id}}"}),
                "a",
                "unknown root object (use user, org, membership, session or machine)",
            ),
            (json!({"a": "{{user..id}}"}), "a", "bad shortcode path"),
            (
                json!({"a": "{{ {{user.id}} }}"}),
                "a",
                "unclosed shortcode (missing `}}`)",
            ),
            (
                json!({"a": "{{null}}"}),
                "a",
                "bad literal (literals are 'single-quoted strings', numbers and booleans)",
            ),
        ] {
            let error = compile(template.clone()).unwrap_err();
            assert_eq!(
                (error.path(), error.problem()),
                (path, problem),
                "{template}"
            );
        }
    }

    #[test]
    fn default_and_session_bound_claims_are_refused() {
        for claim in DEFAULT_CLAIMS.iter().chain(&SESSION_BOUND_CLAIMS) {
            let error = compile(json!({ *claim: "x" })).unwrap_err();
            assert_eq!(error.path(), *claim);
        }
        assert!(compile(json!({"aud": "https://example.com"})).is_ok());
    }

    #[test]
    fn the_bounds_are_the_ones_the_errors_name() {
        assert!(TOO_DEEP.contains(&format!("{} levels", Template::MAX_DEPTH)));
        assert!(TOO_LARGE.contains(&format!("{} KiB", Template::MAX_SIZE / 1024)));
        for value in [
            json!("é \" \\ \n \u{1} \u{7f}"),
            json!(-2.5e-300),
            json!(u64::MAX),
            json!(null),
        ] {
            assert_eq!(json_length(&value), value.to_string().len(), "{value}");
        }
    }

    #[test]
    fn lone_closing_braces_are_text() {
        assert_eq!(
            render_with(json!({"a": "}} {"}), json!({})),
            json!({"a": "}} {"})
        );
    }
}
