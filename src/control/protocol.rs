//! QMP framing and messages (QEMU `docs/interop/qmp-spec.rst`): splitting
//! the input stream into JSON values, checking commands, and encoding
//! answers, errors and events.
//!
//! QEMU reads a stream of JSON values, not lines: `qemu.qmp` sends objects
//! back to back, `socat` users send them a line at a time. The splitter
//! follows QEMU's `json-streamer.c`: a value ends when its outermost brace or
//! bracket closes. A lexical error (a control character, a byte that never
//! occurs in UTF-8, a stray closing brace) is answered with an error and
//! skipped up to the next `{`, `[` or control character, as QEMU's lexer
//! recovers; so a client can bring a confused parser back with a newline
//! after a broken string or, as the QMP specification suggests, any control
//! character. Not done: QEMU's single-quoted strings (an extension of JSON
//! that only its test suite uses).

use serde_json::{Map, Value};

use super::Event;

/// The longest JSON value a client may send, in bytes. QEMU allows 64 MiB,
/// but no command here takes more than a file name and a few keys.
pub(crate) const MAX_MESSAGE: usize = 1 << 20;

/// One piece of the input stream.
#[derive(Debug, PartialEq)]
pub(crate) enum Piece {
    /// The bytes of one complete JSON value (not yet parsed).
    Message(Vec<u8>),
    /// Input that is not JSON; the description says why.
    Error(String),
}

/// Splits a byte stream into JSON values without parsing them.
#[derive(Debug)]
pub(crate) struct Splitter {
    buf: Vec<u8>,
    max: usize,
    /// Open braces and brackets.
    depth: u64,
    in_string: bool,
    escaped: bool,
    /// A top-level scalar (`null`, `42`) is being read.
    bare: bool,
    /// The value went past `max`: follow its structure, keep nothing.
    oversized: bool,
    /// Skipping after a lexical error.
    recovering: bool,
}

impl Splitter {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            buf: Vec::new(),
            max,
            depth: 0,
            in_string: false,
            escaped: false,
            bare: false,
            oversized: false,
            recovering: false,
        }
    }

    /// Feeds bytes, appending every value or error they complete to `out`.
    pub(crate) fn feed(&mut self, input: &[u8], out: &mut Vec<Piece>) {
        for &byte in input {
            self.byte(byte, out);
        }
    }

    fn byte(&mut self, byte: u8, out: &mut Vec<Piece>) {
        if self.recovering {
            match byte {
                b'{' | b'[' => self.recovering = false,
                // Consumed: control characters only mark the way back.
                0..=0x1f if byte != b'\t' => {
                    self.recovering = false;
                    return;
                }
                0xfe | 0xff => {
                    self.recovering = false;
                    return;
                }
                _ => return,
            }
        }
        if self.in_string {
            self.string_byte(byte, out);
            return;
        }
        match byte {
            b' ' | b'\t' | b'\r' | b'\n' => {
                if self.depth == 0 {
                    if self.bare {
                        self.complete(out);
                    }
                } else {
                    self.push(byte);
                }
            }
            b'"' => {
                if self.bare {
                    // `null"x"`: a token runs into a string.
                    return self.lexical_error(byte, out);
                }
                self.in_string = true;
                self.push(byte);
            }
            b'{' | b'[' => {
                if self.depth == 0 && self.bare {
                    self.complete(out);
                }
                self.depth += 1;
                self.push(byte);
            }
            b'}' | b']' => {
                if self.depth == 0 {
                    return self.lexical_error(byte, out);
                }
                self.depth -= 1;
                self.push(byte);
                if self.depth == 0 {
                    self.complete(out);
                }
            }
            0..=0x1f | 0x7f..=0xff => self.lexical_error(byte, out),
            _ => {
                if self.depth == 0 && !self.bare {
                    if !matches!(byte, b'-' | b'0'..=b'9' | b't' | b'f' | b'n') {
                        return self.lexical_error(byte, out);
                    }
                    self.bare = true;
                }
                self.push(byte);
            }
        }
    }

    fn string_byte(&mut self, byte: u8, out: &mut Vec<Piece>) {
        match byte {
            // RFC 8259 section 7: control characters must be escaped.
            0..=0x1f => return self.lexical_error(byte, out),
            // Bytes that never occur in UTF-8 (RFC 3629 section 1).
            0xc0 | 0xc1 | 0xf5..=0xff => return self.lexical_error(byte, out),
            _ => {}
        }
        self.push(byte);
        if self.escaped {
            self.escaped = false;
        } else if byte == b'\\' {
            self.escaped = true;
        } else if byte == b'"' {
            self.in_string = false;
            if self.depth == 0 {
                self.complete(out);
            }
        }
    }

    fn push(&mut self, byte: u8) {
        if self.oversized {
            return;
        }
        if self.buf.len() >= self.max {
            self.oversized = true;
            self.buf = Vec::new();
            return;
        }
        self.buf.push(byte);
    }

    fn complete(&mut self, out: &mut Vec<Piece>) {
        if self.oversized {
            out.push(Piece::Error(format!(
                "JSON parse error, message longer than {} bytes",
                self.max
            )));
        } else {
            out.push(Piece::Message(std::mem::take(&mut self.buf)));
        }
        self.reset();
    }

    fn lexical_error(&mut self, byte: u8, out: &mut Vec<Piece>) {
        let shown = if byte.is_ascii_graphic() {
            format!("'{}'", byte as char)
        } else {
            format!("byte {byte:#04x}")
        };
        out.push(Piece::Error(format!("JSON parse error, stray {shown}")));
        self.reset();
        self.recovering = true;
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.depth = 0;
        self.in_string = false;
        self.escaped = false;
        self.bare = false;
        self.oversized = false;
        self.recovering = false;
    }
}

/// QMP error classes (QEMU's `QapiErrorClass`) this server uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ErrorClass {
    GenericError,
    CommandNotFound,
    DeviceNotFound,
}

impl ErrorClass {
    fn as_str(self) -> &'static str {
        match self {
            ErrorClass::GenericError => "GenericError",
            ErrorClass::CommandNotFound => "CommandNotFound",
            ErrorClass::DeviceNotFound => "DeviceNotFound",
        }
    }
}

/// A command's failure: its class and description.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CommandError {
    pub class: ErrorClass,
    pub desc: String,
}

impl CommandError {
    pub(crate) fn generic(desc: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::GenericError,
            desc: desc.into(),
        }
    }

    pub(crate) fn not_found(desc: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::CommandNotFound,
            desc: desc.into(),
        }
    }
}

/// A well-formed command: `{"execute": ..., "arguments": {...}, "id": ...}`.
#[derive(Debug, PartialEq)]
pub(crate) struct Request {
    pub id: Option<Value>,
    pub command: String,
    pub arguments: Map<String, Value>,
}

/// Why an input is not a command, with its `id` when it had one (QEMU
/// answers with the `id` even then).
#[derive(Debug, PartialEq)]
pub(crate) struct BadRequest {
    pub id: Option<Value>,
    pub desc: String,
}

/// Checks one JSON value as QEMU's `qmp_dispatch_check_obj` does.
pub(crate) fn parse_request(message: &[u8]) -> Result<Request, BadRequest> {
    let value: Value = serde_json::from_slice(message).map_err(|e| BadRequest {
        id: None,
        desc: format!("JSON parse error, {e}"),
    })?;
    let Value::Object(mut object) = value else {
        return Err(BadRequest {
            id: None,
            desc: "QMP input must be a JSON object".into(),
        });
    };
    let id = object.remove("id");
    let bad = |desc: String| BadRequest {
        id: id.clone(),
        desc,
    };
    let mut command = None;
    let mut arguments = Map::new();
    for (key, value) in object {
        match key.as_str() {
            "execute" => match value {
                Value::String(name) => command = Some(name),
                _ => return Err(bad("QMP input member 'execute' must be a string".into())),
            },
            "arguments" => match value {
                Value::Object(map) => arguments = map,
                _ => return Err(bad("QMP input member 'arguments' must be an object".into())),
            },
            _ => return Err(bad(format!("QMP input member '{key}' is unexpected"))),
        }
    }
    let Some(command) = command else {
        return Err(bad("QMP input lacks member 'execute'".into()));
    };
    Ok(Request {
        id,
        command,
        arguments,
    })
}

/// Encodes one outgoing message as a line, ending in CRLF as QEMU's monitor
/// ends its lines (libvirt splits on CRLF).
fn line(value: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    bytes.extend_from_slice(b"\r\n");
    bytes
}

fn with_id(mut map: Map<String, Value>, id: Option<Value>) -> Vec<u8> {
    if let Some(id) = id {
        map.insert("id".into(), id);
    }
    line(&Value::Object(map))
}

/// `{"return": value, "id": id}`.
pub(crate) fn encode_return(id: Option<Value>, value: Value) -> Vec<u8> {
    let mut map = Map::new();
    map.insert("return".into(), value);
    with_id(map, id)
}

/// `{"error": {"class": ..., "desc": ...}, "id": id}`.
pub(crate) fn encode_error(id: Option<Value>, error: &CommandError) -> Vec<u8> {
    let mut map = Map::new();
    map.insert(
        "error".into(),
        serde_json::json!({"class": error.class.as_str(), "desc": error.desc}),
    );
    with_id(map, id)
}

/// `{"event": ..., "data": ..., "timestamp": ...}`.
pub(crate) fn encode_event(event: &Event) -> Vec<u8> {
    line(&serde_json::to_value(event).unwrap_or(Value::Null))
}

/// `{"QMP": {"version": ..., "capabilities": []}}`.
pub(crate) fn encode_greeting(version: Value) -> Vec<u8> {
    line(&serde_json::json!({"QMP": {"version": version, "capabilities": []}}))
}

/// A command's arguments (or a nested object's members), taken one by one
/// with QEMU's messages for missing, mistyped and unexpected ones
/// (`qobject-input-visitor.c`), which name members by their full path
/// (`keys[0].data`).
pub(crate) struct Args {
    map: Map<String, Value>,
    /// The path of the object these are members of, with a trailing dot.
    prefix: String,
}

impl Args {
    pub(crate) fn new(map: Map<String, Value>) -> Self {
        Self {
            map,
            prefix: String::new(),
        }
    }

    /// The members of the object at `path` (`"keys[0]"`).
    pub(crate) fn nested(map: Map<String, Value>, path: &str) -> Self {
        Self {
            map,
            prefix: format!("{path}."),
        }
    }

    /// The full name of member `name`.
    pub(crate) fn path(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn take(&mut self, name: &str) -> Option<Value> {
        self.map.remove(name)
    }

    fn wrong_type(&self, name: &str, expected: &str) -> CommandError {
        CommandError::generic(format!(
            "Invalid parameter type for '{}', expected: {expected}",
            self.path(name)
        ))
    }

    fn missing(&self, name: &str) -> CommandError {
        CommandError::generic(format!("Parameter '{}' is missing", self.path(name)))
    }

    pub(crate) fn opt_str(&mut self, name: &str) -> Result<Option<String>, CommandError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.wrong_type(name, "string")),
        }
    }

    pub(crate) fn str(&mut self, name: &str) -> Result<String, CommandError> {
        self.opt_str(name)?.ok_or_else(|| self.missing(name))
    }

    pub(crate) fn opt_bool(&mut self, name: &str) -> Result<Option<bool>, CommandError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(_) => Err(self.wrong_type(name, "boolean")),
        }
    }

    pub(crate) fn opt_int(&mut self, name: &str) -> Result<Option<i64>, CommandError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.wrong_type(name, "integer")),
            Some(_) => Err(self.wrong_type(name, "integer")),
        }
    }

    pub(crate) fn int(&mut self, name: &str) -> Result<i64, CommandError> {
        self.opt_int(name)?.ok_or_else(|| self.missing(name))
    }

    pub(crate) fn opt_array(&mut self, name: &str) -> Result<Option<Vec<Value>>, CommandError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(_) => Err(self.wrong_type(name, "array")),
        }
    }

    pub(crate) fn array(&mut self, name: &str) -> Result<Vec<Value>, CommandError> {
        self.opt_array(name)?.ok_or_else(|| self.missing(name))
    }

    /// Fails on any member not taken: QEMU rejects unknown arguments.
    pub(crate) fn finish(self) -> Result<(), CommandError> {
        match self.map.keys().next() {
            None => Ok(()),
            Some(name) => Err(CommandError::generic(format!(
                "Parameter '{}' is unexpected",
                self.path(name)
            ))),
        }
    }
}

/// An array element that must be an object, as the members of `path`.
pub(crate) fn object_at(value: Value, path: &str) -> Result<Args, CommandError> {
    match value {
        Value::Object(map) => Ok(Args::nested(map, path)),
        _ => Err(CommandError::generic(format!(
            "Invalid parameter type for '{path}', expected: object"
        ))),
    }
}

/// A value of an enum type from `allowed`, with QEMU's message otherwise.
pub(crate) fn enum_value<'a>(
    name: &str,
    value: &str,
    allowed: &[&'a str],
) -> Result<&'a str, CommandError> {
    allowed
        .iter()
        .find(|&&a| a == value)
        .copied()
        .ok_or_else(|| {
            CommandError::generic(format!(
                "Parameter '{name}' does not accept value '{value}'"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn split(input: &[u8]) -> Vec<Piece> {
        let mut splitter = Splitter::new(64);
        let mut out = Vec::new();
        splitter.feed(input, &mut out);
        out
    }

    fn msg(s: &str) -> Piece {
        Piece::Message(s.as_bytes().to_vec())
    }

    fn is_error(piece: &Piece) -> bool {
        matches!(piece, Piece::Error(_))
    }

    #[test]
    fn objects_back_to_back_or_on_lines() {
        // qemu.qmp sends no newline; socat users do.
        assert_eq!(
            split(br#"{"execute":"a"}{"execute":"b"}"#),
            [msg(r#"{"execute":"a"}"#), msg(r#"{"execute":"b"}"#)]
        );
        assert_eq!(
            split(b"{\"execute\": \"a\"}\r\n\n  {\"execute\":\n \"b\"}\n"),
            [msg("{\"execute\": \"a\"}"), msg("{\"execute\":\n \"b\"}")]
        );
    }

    #[test]
    fn a_value_may_arrive_in_pieces() {
        let mut splitter = Splitter::new(64);
        let mut out = Vec::new();
        for byte in br#"{"execute": "x}{", "arguments": {"a": [1, "\"]"]}}"# {
            splitter.feed(&[*byte], &mut out);
        }
        assert_eq!(
            out,
            [msg(r#"{"execute": "x}{", "arguments": {"a": [1, "\"]"]}}"#)]
        );
    }

    #[test]
    fn top_level_scalars_are_values_too() {
        assert_eq!(
            split(b"null\n42 \"s\"[1]"),
            [msg("null"), msg("42"), msg("\"s\""), msg("[1]")]
        );
    }

    #[test]
    fn lexical_errors_recover_at_the_next_object() {
        // The cases of QEMU's tests/qtest/qmp-test.c test_malformed.
        for garbage in [
            &b"{]\n"[..],
            b"{\xff",
            b"{\x01",
            b"{\"bad \xff",
            b"{\"execute\": \"nonexistent\", \"id\":\"\n",
            b"%p",
        ] {
            let mut input = garbage.to_vec();
            input.extend_from_slice(br#"{"execute":"no-such-cmd"}"#);
            let out = split(&input);
            let last = out.last().unwrap();
            assert_eq!(
                last,
                &msg(r#"{"execute":"no-such-cmd"}"#),
                "{}",
                String::from_utf8_lossy(garbage)
            );
            // `{]` is caught when parsed, the others by the splitter.
            assert!(out.len() <= 2, "{out:?}");
        }
        let out = split(b"}x\n{}");
        assert!(is_error(&out[0]));
        assert_eq!(out.last().unwrap(), &msg("{}"));
    }

    #[test]
    fn a_control_character_resets_an_unfinished_value() {
        // An unclosed object, then ESC as the QMP spec suggests.
        let out = split(b"{\"execute\": \"a\"\x1b{}");
        assert!(is_error(&out[0]));
        assert_eq!(out[1], msg("{}"));
    }

    #[test]
    fn oversized_values_are_one_error_and_skipped() {
        let mut input = br#"{"execute": ""#.to_vec();
        input.extend(vec![b'{'; 1000]);
        input.extend_from_slice(br#""}{"execute":"ok"}"#);
        let out = split(&input);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(matches!(&out[0], Piece::Error(e) if e.contains("longer than 64")));
        assert_eq!(out[1], msg(r#"{"execute":"ok"}"#));
        // Deep nesting costs no memory past the limit either.
        let mut deep = vec![b'['; 100_000];
        deep.extend(vec![b']'; 100_000]);
        let out = split(&deep);
        assert_eq!(out.len(), 1);
        assert!(is_error(&out[0]));
    }

    #[test]
    fn requests_are_checked_as_qemu_checks_them() {
        assert_eq!(
            parse_request(br#"{"execute": "stop", "id": {"n": 1}, "arguments": {"a": 1}}"#),
            Ok(Request {
                id: Some(json!({"n": 1})),
                command: "stop".into(),
                arguments: json!({"a": 1}).as_object().unwrap().clone(),
            })
        );
        let err = |s: &str| parse_request(s.as_bytes()).unwrap_err();
        assert_eq!(err("null").desc, "QMP input must be a JSON object");
        assert_eq!(err("{}").desc, "QMP input lacks member 'execute'");
        assert_eq!(
            err(r#"{"execute": true}"#).desc,
            "QMP input member 'execute' must be a string"
        );
        assert_eq!(
            err(r#"{"execute": "x", "arguments": []}"#).desc,
            "QMP input member 'arguments' must be an object"
        );
        assert_eq!(
            err(r#"{"execute": "x", "extra": true}"#).desc,
            "QMP input member 'extra' is unexpected"
        );
        assert_eq!(
            err(r#"{"exec-oob": "x"}"#).desc,
            "QMP input member 'exec-oob' is unexpected"
        );
        assert!(err("{]").desc.starts_with("JSON parse error"));
        assert!(err("{\"a\": \"\\ud800\"}")
            .desc
            .starts_with("JSON parse error"));
        // The id comes back even with a bad request.
        assert_eq!(err(r#"{"id": "err-2"}"#).id, Some(json!("err-2")));
    }

    #[test]
    fn answers_are_crlf_terminated_json_lines() {
        let ok = encode_return(Some(json!(7)), json!({}));
        assert!(ok.ends_with(b"\r\n"));
        assert_eq!(
            serde_json::from_slice::<Value>(&ok).unwrap(),
            json!({"return": {}, "id": 7})
        );
        let err = encode_error(
            None,
            &CommandError::not_found("The command x has not been found"),
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&err).unwrap(),
            json!({"error": {"class": "CommandNotFound", "desc": "The command x has not been found"}})
        );
        let greeting = encode_greeting(json!({"qemu": {"major": 8}}));
        assert_eq!(
            serde_json::from_slice::<Value>(&greeting).unwrap(),
            json!({"QMP": {"version": {"qemu": {"major": 8}}, "capabilities": []}})
        );
        // Strings that could break a line are escaped.
        let tricky = encode_error(None, &CommandError::generic("a\nb\r\n"));
        assert_eq!(tricky.iter().filter(|&&b| b == b'\n').count(), 1);
    }

    #[test]
    fn arguments_report_like_qemu() {
        let mut args = Args::new(
            json!({"filename": 5, "n": "x", "keys": [], "big": 1e300, "extra": 1})
                .as_object()
                .unwrap()
                .clone(),
        );
        assert_eq!(
            args.str("filename").unwrap_err().desc,
            "Invalid parameter type for 'filename', expected: string"
        );
        assert_eq!(
            args.opt_int("n").unwrap_err().desc,
            "Invalid parameter type for 'n', expected: integer"
        );
        assert_eq!(
            args.opt_int("big").unwrap_err().desc,
            "Invalid parameter type for 'big', expected: integer"
        );
        assert_eq!(args.array("keys").unwrap(), Vec::<Value>::new());
        assert_eq!(
            args.str("device").unwrap_err().desc,
            "Parameter 'device' is missing"
        );
        assert_eq!(
            args.finish().unwrap_err().desc,
            "Parameter 'extra' is unexpected"
        );
        assert_eq!(
            enum_value("format", "gif", &["ppm", "png"])
                .unwrap_err()
                .desc,
            "Parameter 'format' does not accept value 'gif'"
        );
        assert_eq!(enum_value("format", "png", &["ppm", "png"]), Ok("png"));
    }
}
