//! The shape of the generated message table (`schema.rs`): what the decoder knows per field.

/// A protobuf message and the JSON form of its Go struct.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Message {
    /// Fully qualified proto name, e.g. `k8s.io.api.core.v1.Pod`.
    pub name: &'static str,
    /// Set for the types whose Go JSON form is not their proto structure.
    pub special: Special,
    /// The JSON fields in Go declaration order (the order Go writes them).
    pub fields: &'static [Field],
}

/// Messages with a hand-written Go `MarshalJSON`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Special {
    /// An ordinary struct.
    None,
    /// `metav1.Time`: RFC 3339 seconds, `null` when zero.
    Time,
    /// `metav1.MicroTime`: RFC 3339 with 6 fractional digits, `null` when zero.
    MicroTime,
    /// `metav1.Duration`: a Go duration string.
    Duration,
    /// `metav1.FieldsV1`: the embedded JSON document.
    FieldsV1,
    /// `resource.Quantity`: a string.
    Quantity,
    /// `intstr.IntOrString`: a bare number or string.
    IntOrString,
    /// `runtime.RawExtension`: the embedded document inline.
    RawExtension,
    /// A named `[]string` (ExtraValue, Verbs), wrapped in a message with `repeated string items = 1`.
    StringList,
}

/// The proto value type of a field (of a map's value, for maps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    /// `string`.
    Str,
    /// `bytes`: JSON base64.
    Bytes,
    /// `bool`.
    Bool,
    /// `int32`.
    I32,
    /// `int64`.
    I64,
    /// A message: index into `MESSAGES`.
    Msg(u16),
}

/// How the Go field holds the value, which decides absence and `omitempty`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Card {
    /// A non-pointer Go value: absent on the wire means the zero value.
    Value,
    /// A Go pointer: absent means `nil`.
    Pointer,
    /// A Go slice (`repeated`).
    Repeated,
    /// A Go map with string keys (`map<string, V>`).
    Map,
    /// An embedded struct tagged `json:",inline"`: its fields join the parent object.
    Inline,
}

/// One proto field with its Go JSON semantics.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    /// The proto field number.
    pub tag: u32,
    /// The JSON name (empty for `Inline`).
    pub json: &'static str,
    /// The proto type.
    pub ty: Ty,
    /// Go shape of the field.
    pub card: Card,
    /// The Go json tag has `omitempty`.
    pub omitempty: bool,
}

/// A compact constructor for the generated table.
pub(crate) const fn f(tag: u32, json: &'static str, ty: Ty, card: Card, omitempty: bool) -> Field {
    Field {
        tag,
        json,
        ty,
        card,
        omitempty,
    }
}

/// A top-level kind: the message for an (apiVersion, kind) pair of the envelope.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kind {
    /// `v1`, `apps/v1`, …; `meta.k8s.io/v1` for the kinds registered in every group/version.
    pub api_version: &'static str,
    /// The kind, e.g. `Deployment`.
    pub kind: &'static str,
    /// Index into `MESSAGES`.
    pub message: u16,
}
