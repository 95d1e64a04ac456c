//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) turned into the JSON
//! form the rest of the server works with.
//!
//! kubectl 1.32+ sends protobuf for every typed-client call (`create <kind>`, `auth can-i`,
//! drain's deletes and evictions) and does not fall back to JSON on 415, so the server must read
//! it. A body is the magic `k8s\0` followed by a proto2 `runtime.Unknown{typeMeta{apiVersion,
//! kind}, raw, contentEncoding, contentType}`; `raw` is the generated message of the object.
//!
//! # Approach
//!
//! A generic wire-format walker driven by a static table (`schema.rs`), generated once by
//! `scripts/gen-protobuf-schema.py` from the Kubernetes 1.33 `generated.proto` files (field
//! numbers, proto types) joined with the Go structs of kubernetes/api and apimachinery (JSON name,
//! `omitempty`, pointer or value, `,inline`). That join is what makes the output the JSON a Go
//! apiserver would write for the decoded object, because proto presence alone does not say
//! whether a JSON field appears:
//!
//! * A Go value field absent on the wire is its zero value: a non-`omitempty` string prints `""`,
//!   a non-pointer struct is always printed (`"resources": {}`, `"creationTimestamp": null`).
//! * A pointer, slice or map absent on the wire is `nil`: dropped when `omitempty`, else `null`.
//! * A pointer present on the wire is printed even when it points at a zero (`replicas: 0`).
//! * `json:",inline"` structs (`Volume.volumeSource`, `Probe.handler`) are flattened.
//! * Types with a hand-written Go `MarshalJSON` are converted here: Time (RFC 3339 seconds,
//!   `null` when zero), MicroTime (6 fractional digits), Duration (Go duration string),
//!   Quantity (its string, as sent), IntOrString (bare number or string), RawExtension and
//!   FieldsV1 (the embedded JSON inline; a nested protobuf envelope is decoded), `bytes` (base64),
//!   the named `[]string` types (ExtraValue, Verbs).
//!
//! The table covers every GA group/version of Kubernetes 1.33 plus meta/v1; the meta/v1 kinds
//! registered in every group/version (DeleteOptions, CreateOptions, Status...) are found under any
//! apiVersion. Not done here (the caller's job, as upstream does it after decoding): defaulting
//! and the canonical re-serialisation of quantities. `contentEncoding`/`contentType` of the
//! envelope are ignored, as upstream ignores them. Unknown field numbers are skipped (forward
//! compatible), as upstream does. Keys come out in whatever order `serde_json::Map` keeps.

#[rustfmt::skip]
mod schema;
mod table;
mod wire;

use std::borrow::Cow;

use base64::Engine as _;
use serde_json::{Map, Value};

use table::{Card, Field, Message, Special, Ty};
use wire::{Reader, WireValue};

/// The 4-byte prefix of every Kubernetes protobuf document.
const MAGIC: &[u8; 4] = b"k8s\0";

/// The media type of Kubernetes protobuf bodies.
const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Embedded documents (RawExtension holding another envelope) nest at most this deep.
const MAX_DEPTH: usize = 32;

/// The meta/v1 kinds every group/version registers (`metav1.AddToGroupVersion`), so that a
/// `DeleteOptions` sent with `apiVersion: v1` or `policy/v1` decodes as the meta/v1 message.
const META_KINDS: &[&str] = &[
    "CreateOptions",
    "DeleteOptions",
    "GetOptions",
    "ListOptions",
    "PatchOptions",
    "UpdateOptions",
    "WatchEvent",
    "Status",
    "APIVersions",
    "APIGroupList",
    "APIGroup",
    "APIResourceList",
];

/// Why a protobuf body could not be turned into JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The body is empty.
    #[error("empty data")]
    EmptyData,
    /// The body does not start with `k8s\0`.
    #[error(
        "provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]"
    )]
    NotProtobuf,
    /// The body is only the magic prefix.
    #[error("empty body")]
    EmptyBody,
    /// The envelope's typeMeta has no kind.
    #[error("Object 'Kind' is missing in protobuf envelope")]
    MissingKind,
    /// The envelope's typeMeta has no apiVersion.
    #[error("Object 'apiVersion' is missing in protobuf envelope")]
    MissingVersion,
    /// No message is known for the envelope's apiVersion and kind (the server answers 415).
    #[error(
        "no kind \"{kind}\" is registered for version \"{api_version}\" in the protobuf decoder"
    )]
    UnsupportedKind {
        /// The envelope's apiVersion.
        api_version: String,
        /// The envelope's kind.
        kind: String,
    },
    /// The bytes are not a valid encoding of the expected message.
    #[error("invalid protobuf in {message}: {reason}")]
    Malformed {
        /// Fully qualified proto message name being decoded.
        message: String,
        /// What was wrong.
        reason: String,
    },
}

/// Shorthand for results of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether a `Content-Type` header value names the Kubernetes protobuf media type (parameters
/// such as `;stream=watch` and letter case are ignored).
pub fn is_protobuf(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(MEDIA_TYPE))
}

/// Decode a Kubernetes protobuf body (magic + `runtime.Unknown` envelope) into the JSON the Go
/// apiserver would produce for the same object, with `apiVersion` and `kind` taken from the
/// envelope.
pub fn decode(body: &[u8]) -> Result<Value> {
    decode_at_depth(body, 0)
}

fn decode_at_depth(body: &[u8], depth: usize) -> Result<Value> {
    if body.is_empty() {
        return Err(Error::EmptyData);
    }
    let Some(rest) = body.strip_prefix(MAGIC.as_slice()) else {
        return Err(Error::NotProtobuf);
    };
    if rest.is_empty() {
        return Err(Error::EmptyBody);
    }
    let envelope = Envelope::parse(rest)?;
    if envelope.kind.is_empty() {
        return Err(Error::MissingKind);
    }
    if envelope.api_version.is_empty() {
        return Err(Error::MissingVersion);
    }
    let message = lookup_kind(&envelope.api_version, &envelope.kind).ok_or_else(|| {
        Error::UnsupportedKind {
            api_version: envelope.api_version.clone(),
            kind: envelope.kind.clone(),
        }
    })?;
    let mut object = Map::new();
    object.insert("apiVersion".into(), Value::String(envelope.api_version));
    object.insert("kind".into(), Value::String(envelope.kind));
    let decoder = Decoder { depth };
    decoder.struct_into(message, envelope.raw, &mut object)?;
    Ok(Value::Object(object))
}

/// The parts of `runtime.Unknown` the decoder uses.
struct Envelope<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
}

impl<'a> Envelope<'a> {
    fn parse(data: &'a [u8]) -> Result<Self> {
        const NAME: &str = "k8s.io.apimachinery.pkg.runtime.Unknown";
        let mut envelope = Envelope {
            api_version: String::new(),
            kind: String::new(),
            raw: &[],
        };
        let mut reader = Reader::new(data);
        while let Some((tag, value)) = reader.next_field().map_err(|r| malformed(NAME, r))? {
            match (tag, value) {
                (1, WireValue::Len(type_meta)) => {
                    let mut inner = Reader::new(type_meta);
                    while let Some((tag, value)) =
                        inner.next_field().map_err(|r| malformed(NAME, r))?
                    {
                        match (tag, value) {
                            (1, WireValue::Len(s)) => envelope.api_version = utf8(s),
                            (2, WireValue::Len(s)) => envelope.kind = utf8(s),
                            (1 | 2, _) => return Err(malformed(NAME, "typeMeta: wrong wire type")),
                            _ => {}
                        }
                    }
                }
                (2, WireValue::Len(raw)) => envelope.raw = raw,
                (1 | 2, _) => return Err(malformed(NAME, "wrong wire type")),
                _ => {}
            }
        }
        Ok(envelope)
    }
}

/// The message for an envelope's (apiVersion, kind).
fn lookup_kind(api_version: &str, kind: &str) -> Option<&'static Message> {
    let find = |api_version: &str| {
        schema::KINDS
            .binary_search_by(|k| (k.api_version, k.kind).cmp(&(api_version, kind)))
            .ok()
            .map(|i| &schema::MESSAGES[usize::from(schema::KINDS[i].message)])
    };
    find(api_version).or_else(|| {
        if META_KINDS.contains(&kind) {
            find("meta.k8s.io/v1")
        } else {
            None
        }
    })
}

fn malformed(message: &str, reason: impl Into<String>) -> Error {
    Error::Malformed {
        message: message.to_owned(),
        reason: reason.into(),
    }
}

/// Go decodes proto strings without validation and its JSON encoder replaces invalid UTF-8.
fn utf8(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn base64(bytes: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Walks one document; `depth` counts nested envelopes (RawExtension).
struct Decoder {
    depth: usize,
}

/// Every occurrence on the wire of one field of a message.
type Occurrences<'a> = Vec<WireValue<'a>>;

impl Decoder {
    /// Collect the wire fields of `data` per schema field (unknown numbers are skipped).
    fn collect<'a>(message: &Message, data: &'a [u8]) -> Result<Vec<Occurrences<'a>>> {
        let mut slots: Vec<Occurrences<'a>> = vec![Vec::new(); message.fields.len()];
        let mut reader = Reader::new(data);
        while let Some((tag, value)) = reader
            .next_field()
            .map_err(|reason| malformed(message.name, reason))?
        {
            if let Some(i) = message.fields.iter().position(|f| f.tag == tag) {
                slots[i].push(value);
            }
        }
        Ok(slots)
    }

    /// Write the JSON fields of the Go struct `message`, decoded from `data`, into `out`.
    fn struct_into(
        &self,
        message: &Message,
        data: &[u8],
        out: &mut Map<String, Value>,
    ) -> Result<()> {
        let slots = Self::collect(message, data)?;
        for (field, seen) in message.fields.iter().zip(slots) {
            self.field_into(message, field, &seen, out)?;
        }
        Ok(())
    }

    fn field_into(
        &self,
        message: &Message,
        field: &Field,
        seen: &[WireValue<'_>],
        out: &mut Map<String, Value>,
    ) -> Result<()> {
        let err = |reason: String| malformed(message.name, format!("{}: {reason}", field.json));
        let value = match field.card {
            Card::Inline => {
                let Ty::Msg(index) = field.ty else {
                    return Err(err("inline field is not a message".into()));
                };
                let bytes = merged(seen).map_err(err)?;
                return self.struct_into(message_at(index), &bytes, out);
            }
            Card::Repeated => {
                let mut items = Vec::new();
                for value in seen {
                    self.repeated_items(field.ty, value, &mut items)?;
                }
                if items.is_empty() {
                    nil(field)
                } else {
                    Some(Value::Array(items))
                }
            }
            Card::Map => {
                let mut entries = Map::new();
                for value in seen {
                    let WireValue::Len(entry) = value else {
                        return Err(err("map entry is not length-delimited".into()));
                    };
                    let (key, value) = self.map_entry(field.ty, entry)?;
                    entries.insert(key, value);
                }
                if entries.is_empty() {
                    nil(field)
                } else {
                    Some(Value::Object(entries))
                }
            }
            Card::Pointer => match (field.ty, seen) {
                (_, []) => nil(field),
                (Ty::Msg(index), _) => {
                    let bytes = merged(seen).map_err(err)?;
                    Some(self.message_value(message_at(index), &bytes)?)
                }
                (ty, [.., last]) => Some(self.present(ty, last)?),
            },
            Card::Value => match field.ty {
                Ty::Msg(index) => {
                    let target = message_at(index);
                    if target.special == Special::StringList && seen.is_empty() {
                        // A named slice: absent is nil.
                        nil(field)
                    } else {
                        let bytes = merged(seen).map_err(err)?;
                        let value = self.message_value(target, &bytes)?;
                        if field.omitempty
                            && target.special == Special::StringList
                            && is_empty_array(&value)
                        {
                            None
                        } else {
                            Some(value)
                        }
                    }
                }
                Ty::Bytes => match seen.last() {
                    // A Go []byte absent on the wire is nil.
                    None => nil(field),
                    Some(WireValue::Len(b)) if b.is_empty() && field.omitempty => None,
                    Some(WireValue::Len(b)) => Some(base64(b)),
                    Some(_) => return Err(err("bytes field is not length-delimited".into())),
                },
                ty => {
                    let value = match seen.last() {
                        None => zero(ty),
                        Some(wire) => scalar(ty, wire).map_err(err)?,
                    };
                    if field.omitempty && is_zero_scalar(&value) {
                        None
                    } else {
                        Some(value)
                    }
                }
            },
        };
        if let Some(value) = value {
            out.insert(field.json.to_owned(), value);
        }
        Ok(())
    }

    /// A value that is present on the wire (pointer target, list item, map value).
    fn present(&self, ty: Ty, wire: &WireValue<'_>) -> Result<Value> {
        match ty {
            Ty::Msg(index) => {
                let WireValue::Len(bytes) = wire else {
                    return Err(malformed(message_at(index).name, "not length-delimited"));
                };
                self.message_value(message_at(index), bytes)
            }
            Ty::Bytes => match wire {
                WireValue::Len(bytes) => Ok(base64(bytes)),
                _ => Err(malformed("bytes", "not length-delimited")),
            },
            ty => scalar(ty, wire).map_err(|reason| malformed("scalar", reason)),
        }
    }

    /// Append the items one occurrence of a repeated field contributes (packed scalars give many).
    fn repeated_items(&self, ty: Ty, wire: &WireValue<'_>, items: &mut Vec<Value>) -> Result<()> {
        match (ty, wire) {
            (Ty::I32 | Ty::I64 | Ty::Bool, WireValue::Len(packed)) => {
                let mut reader = Reader::new(packed);
                while !reader.is_empty() {
                    let v = reader.varint().map_err(|r| malformed("packed", r))?;
                    items.push(
                        scalar(ty, &WireValue::Varint(v)).map_err(|r| malformed("packed", r))?,
                    );
                }
                Ok(())
            }
            _ => {
                items.push(self.present(ty, wire)?);
                Ok(())
            }
        }
    }

    /// One `map<string, V>` entry: key 1, value 2; a missing value is V's zero value.
    fn map_entry(&self, ty: Ty, entry: &[u8]) -> Result<(String, Value)> {
        let mut key = String::new();
        let mut value: Option<WireValue<'_>> = None;
        let mut reader = Reader::new(entry);
        while let Some((tag, wire)) = reader.next_field().map_err(|r| malformed("map entry", r))? {
            match (tag, wire) {
                (1, WireValue::Len(k)) => key = utf8(k),
                (1, _) => return Err(malformed("map entry", "key is not a string")),
                (2, wire) => value = Some(wire),
                _ => {}
            }
        }
        let value = match (value, ty) {
            (Some(wire), ty) => self.present(ty, &wire)?,
            (None, Ty::Msg(index)) => self.message_value(message_at(index), &[])?,
            (None, Ty::Bytes) => Value::String(String::new()),
            (None, ty) => zero(ty),
        };
        Ok((key, value))
    }

    /// The JSON of a message value decoded from `data` (empty data is the Go zero value).
    fn message_value(&self, message: &Message, data: &[u8]) -> Result<Value> {
        match message.special {
            Special::None => {
                let mut object = Map::new();
                self.struct_into(message, data, &mut object)?;
                Ok(Value::Object(object))
            }
            Special::Time => timestamp(message, data, false),
            Special::MicroTime => timestamp(message, data, true),
            Special::Duration => {
                let fields = special_fields(message, data)?;
                let nanos = fields.int(1);
                Ok(Value::String(go_duration(nanos)))
            }
            Special::Quantity => {
                let fields = special_fields(message, data)?;
                match fields.string(1) {
                    Some(s) if !s.is_empty() => Ok(Value::String(s)),
                    _ => Ok(Value::String("0".into())),
                }
            }
            Special::IntOrString => {
                let fields = special_fields(message, data)?;
                match fields.int(1) {
                    0 => Ok(Value::from(fields.int(2) as i32)),
                    1 => Ok(Value::String(fields.string(3).unwrap_or_default())),
                    other => Err(malformed(
                        message.name,
                        format!("impossible IntOrString.Type {other}"),
                    )),
                }
            }
            Special::RawExtension | Special::FieldsV1 => {
                let fields = special_fields(message, data)?;
                match fields.bytes(1) {
                    None | Some([]) => Ok(Value::Null),
                    Some(raw)
                        if raw.starts_with(MAGIC) && message.special == Special::RawExtension =>
                    {
                        if self.depth >= MAX_DEPTH {
                            return Err(malformed(
                                message.name,
                                "embedded documents nest too deep",
                            ));
                        }
                        decode_at_depth(raw, self.depth + 1)
                    }
                    Some(raw) => serde_json::from_slice(raw).map_err(|e| {
                        malformed(message.name, format!("embedded document is not JSON: {e}"))
                    }),
                }
            }
            Special::StringList => {
                let mut items = Vec::new();
                let mut reader = Reader::new(data);
                while let Some((tag, wire)) = reader
                    .next_field()
                    .map_err(|r| malformed(message.name, r))?
                {
                    match (tag, wire) {
                        (1, WireValue::Len(s)) => items.push(Value::String(utf8(s))),
                        (1, _) => return Err(malformed(message.name, "items: not a string")),
                        _ => {}
                    }
                }
                Ok(Value::Array(items))
            }
        }
    }
}

fn message_at(index: u16) -> &'static Message {
    &schema::MESSAGES[usize::from(index)]
}

/// A nil pointer, slice or map: dropped when `omitempty`, else `null`.
fn nil(field: &Field) -> Option<Value> {
    if field.omitempty {
        None
    } else {
        Some(Value::Null)
    }
}

/// Proto merges repeated occurrences of a singular message field; concatenation decodes the same.
fn merged<'a>(seen: &[WireValue<'a>]) -> Result<Cow<'a, [u8]>, String> {
    match seen {
        [] => Ok(Cow::Borrowed(&[])),
        [WireValue::Len(only)] => Ok(Cow::Borrowed(only)),
        _ => {
            let mut bytes = Vec::new();
            for value in seen {
                match value {
                    WireValue::Len(b) => bytes.extend_from_slice(b),
                    _ => return Err("message is not length-delimited".into()),
                }
            }
            Ok(Cow::Owned(bytes))
        }
    }
}

fn zero(ty: Ty) -> Value {
    match ty {
        Ty::Str => Value::String(String::new()),
        Ty::Bool => Value::Bool(false),
        _ => Value::from(0),
    }
}

fn is_zero_scalar(value: &Value) -> bool {
    match value {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Null => true,
        _ => false,
    }
}

fn is_empty_array(value: &Value) -> bool {
    matches!(value, Value::Array(a) if a.is_empty()) || value.is_null()
}

fn scalar(ty: Ty, wire: &WireValue<'_>) -> Result<Value, String> {
    match (ty, wire) {
        (Ty::Str, WireValue::Len(s)) => Ok(Value::String(utf8(s))),
        (Ty::Bool, WireValue::Varint(v)) => Ok(Value::Bool(*v != 0)),
        // Truncation is the proto rule: int32 travels sign-extended to 64 bits.
        (Ty::I32, WireValue::Varint(v)) => Ok(Value::from(*v as i32)),
        (Ty::I64, WireValue::Varint(v)) => Ok(Value::from(*v as i64)),
        (ty, _) => Err(format!("wrong wire type for {ty:?}")),
    }
}

/// The fields of a small special message (Time, Quantity, ...), last occurrence winning.
struct SpecialFields<'a> {
    values: Vec<(u32, WireValue<'a>)>,
}

impl<'a> SpecialFields<'a> {
    fn get(&self, tag: u32) -> Option<&WireValue<'a>> {
        self.values
            .iter()
            .rev()
            .find(|(t, _)| *t == tag)
            .map(|(_, v)| v)
    }

    fn int(&self, tag: u32) -> i64 {
        match self.get(tag) {
            Some(WireValue::Varint(v)) => *v as i64,
            _ => 0,
        }
    }

    fn bytes(&self, tag: u32) -> Option<&'a [u8]> {
        match self.get(tag) {
            Some(WireValue::Len(b)) => Some(b),
            _ => None,
        }
    }

    fn string(&self, tag: u32) -> Option<String> {
        self.bytes(tag).map(utf8)
    }
}

fn special_fields<'a>(message: &Message, data: &'a [u8]) -> Result<SpecialFields<'a>> {
    let mut values = Vec::new();
    let mut reader = Reader::new(data);
    while let Some(field) = reader
        .next_field()
        .map_err(|r| malformed(message.name, r))?
    {
        values.push(field);
    }
    Ok(SpecialFields { values })
}

/// metav1.Time (seconds only: Go drops nanos on read) or MicroTime (nanos cut to microseconds).
/// An empty message is the zero time, which Go writes as `null`.
fn timestamp(message: &Message, data: &[u8], micro: bool) -> Result<Value> {
    if data.is_empty() {
        return Ok(Value::Null);
    }
    let fields = special_fields(message, data)?;
    let seconds = fields.int(1);
    let nanos = if micro { fields.int(2) } else { 0 };
    let seconds = seconds.saturating_add(nanos.div_euclid(1_000_000_000));
    let nanos = nanos.rem_euclid(1_000_000_000);
    if seconds == GO_ZERO_TIME_UNIX && nanos < 1000 {
        // Go's zero time (0001-01-01T00:00:00Z) is `IsZero`, which marshals as null.
        return Ok(Value::Null);
    }
    let time = jiff::Timestamp::from_second(seconds)
        .map_err(|e| malformed(message.name, format!("time out of range: {e}")))?;
    let text = time.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    Ok(Value::String(if micro {
        format!("{text}.{:06}Z", nanos / 1000)
    } else {
        format!("{text}Z")
    }))
}

/// Unix seconds of Go's zero `time.Time`, 0001-01-01T00:00:00Z.
const GO_ZERO_TIME_UNIX: i64 = -62_135_596_800;

/// Go's `time.Duration.String()`: `1h0m0s`, `1m30s`, `1.5s`, `300ms`, `0s`.
fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let u = nanos.unsigned_abs();
    if u < 1_000_000_000 {
        let (unit, precision) = match u {
            0..1_000 => ("ns", 0),
            1_000..1_000_000 => ("µs", 3),
            _ => ("ms", 6),
        };
        let scale = 10u64.pow(precision);
        return format!(
            "{sign}{}{}{unit}",
            u / scale,
            fraction(u % scale, precision)
        );
    }
    let seconds = u / 1_000_000_000;
    let frac = fraction(u % 1_000_000_000, 9);
    let (hours, minutes, secs) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if hours > 0 {
        format!("{sign}{hours}h{minutes}m{secs}{frac}s")
    } else if minutes > 0 {
        format!("{sign}{minutes}m{secs}{frac}s")
    } else {
        format!("{sign}{secs}{frac}s")
    }
}

/// `.digits` of `value / 10^precision` without trailing zeros; empty when zero.
fn fraction(value: u64, precision: u32) -> String {
    if value == 0 {
        return String::new();
    }
    let digits = format!("{value:0width$}", width = precision as usize);
    format!(".{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests;
