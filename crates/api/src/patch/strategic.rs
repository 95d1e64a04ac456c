//! Server-side strategic merge: applying a patch body to the JSON form of a live object.
//!
//! Follows apimachinery's `strategicpatch` with the two options the API server switches on:
//! parallel lists (`$deleteFromPrimitiveList`, `$setElementOrder`) are executed and nulls that
//! match nothing are dropped. The rules and their worked examples are in api-facts.md §2.

use std::collections::VecDeque;

use serde_json::{Map, Value};

use super::Error;
use super::schema::{self, FieldMeta, Strategy, TypeDef};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";

type Object = Map<String, Value>;
type Ty = Option<&'static TypeDef>;

/// Applies `patch` to `original`, both JSON objects of a type rooted at `root`.
pub(super) fn apply(root: Ty, original: Object, patch: Object) -> Result<Object, Error> {
    merge_map(original, patch, root, "")
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Merges a patch map into a live map (upstream `mergeMap`).
fn merge_map(mut original: Object, mut patch: Object, ty: Ty, path: &str) -> Result<Object, Error> {
    if let Some(directive) = patch.get(DIRECTIVE) {
        return match directive.as_str() {
            Some("replace") => {
                patch.remove(DIRECTIVE);
                // The map becomes the patch itself; merging it into nothing drops the nulls
                // and directives it may carry, as they would vanish on decoding anyway.
                merge_map(Object::new(), patch, ty, path)
            }
            Some("delete") => Ok(Object::new()),
            _ => Err(Error::UnknownDirective {
                field: path.to_owned(),
                message: format!(
                    "unknown patch type: {} in map: {}",
                    go_fmt(directive),
                    go_fmt_map(&patch)
                ),
            }),
        };
    }

    apply_retain_keys(&mut original, &mut patch, path)?;
    apply_set_element_order(&mut original, &mut patch, ty, path)?;

    // Deletions from primitive lists run after the list itself is merged, so a patch that both
    // adds to and removes from a list ends with the removal (upstream leaves this to Go's map
    // iteration order).
    let mut deletions = Vec::new();
    for (key, patch_value) in patch {
        if key.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
            deletions.push((key, patch_value));
            continue;
        }
        merge_field(&mut original, key, patch_value, ty, path)?;
    }
    for (key, values) in deletions {
        let bad_format = || Error::BadPatchFormat {
            field: join(path, &key),
            message: "invalid patch format of primitive list",
        };
        let field = directive_target(&key, DELETE_FROM_PRIMITIVE_LIST).ok_or_else(bad_format)?;
        let Value::Array(values) = values else {
            return Err(bad_format());
        };
        if let Some(Value::Array(live)) = original.get_mut(field) {
            live.retain(|item| !values.iter().any(|gone| json_eq(gone, item)));
        }
    }
    Ok(original)
}

/// `"$prefix/field"` → `field`; `None` when the key is not exactly of that shape.
fn directive_target<'k>(key: &'k str, prefix: &str) -> Option<&'k str> {
    let (head, field) = key.split_once('/')?;
    (head == prefix).then_some(field)
}

/// Merges one patch entry into the live map.
fn merge_field(
    original: &mut Object,
    key: String,
    patch_value: Value,
    ty: Ty,
    path: &str,
) -> Result<(), Error> {
    if patch_value.is_null() {
        original.remove(&key);
        return Ok(());
    }
    let meta = schema::lookup(ty, &key);
    let field_path = join(path, &key);
    let Some(live) = original.get_mut(&key) else {
        if let Some(value) = new_value(patch_value, meta, &field_path)? {
            original.insert(key, value);
        }
        return Ok(());
    };
    let merged = match (std::mem::take(live), patch_value) {
        (Value::Object(live), Value::Object(patch)) => {
            let base = if meta.strategy == Strategy::Replace {
                Object::new()
            } else {
                live
            };
            Value::Object(merge_map(base, patch, meta.ty, &field_path)?)
        }
        (Value::Array(live), Value::Array(patch)) => {
            Value::Array(merge_list_field(live, patch, meta, &field_path)?)
        }
        // Scalars, and values whose JSON type changed, are replaced by the patch value.
        (_, patch) => {
            new_value(patch, meta, &field_path)?.unwrap_or_else(|| Value::Object(Object::new()))
        }
    };
    *live = merged;
    Ok(())
}

/// The value a patch entry takes where the live object has nothing to merge with: directives
/// are executed against emptiness and nulls inside maps are dropped. `None` when the entry is a
/// `$patch: delete` of something that does not exist.
fn new_value(patch_value: Value, meta: FieldMeta, path: &str) -> Result<Option<Value>, Error> {
    Ok(match patch_value {
        Value::Object(patch) => {
            if patch.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
                None
            } else {
                Some(Value::Object(merge_map(
                    Object::new(),
                    patch,
                    meta.ty,
                    path,
                )?))
            }
        }
        Value::Array(patch) if meta.strategy.merges_lists() => {
            Some(Value::Array(merge_list(Vec::new(), patch, meta, path)?))
        }
        Value::Array(patch) => Some(Value::Array(sanitize_list(patch, meta.ty, path)?)),
        other => Some(other),
    })
}

/// Object elements of a list taken from the patch as they are. Upstream keeps their nulls and
/// directives in the JSON and loses them when decoding into the typed object; Skiff stores the
/// JSON itself, so they are dropped here.
fn sanitize_list(list: Vec<Value>, ty: Ty, path: &str) -> Result<Vec<Value>, Error> {
    list.into_iter()
        .map(|item| sanitize_element(item, ty, path))
        .collect()
}

fn sanitize_element(item: Value, ty: Ty, path: &str) -> Result<Value, Error> {
    match item {
        Value::Object(object) => Ok(Value::Object(merge_map(Object::new(), object, ty, path)?)),
        other => Ok(other),
    }
}

fn merge_list_field(
    live: Vec<Value>,
    patch: Vec<Value>,
    meta: FieldMeta,
    path: &str,
) -> Result<Vec<Value>, Error> {
    if meta.strategy.merges_lists() {
        merge_list(live, patch, meta, path)
    } else {
        sanitize_list(patch, meta.ty, path)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

fn kind_of(value: &Value) -> Kind {
    match value {
        Value::Null => Kind::Null,
        Value::Bool(_) => Kind::Bool,
        Value::Number(_) => Kind::Number,
        Value::String(_) => Kind::String,
        Value::Array(_) => Kind::Array,
        Value::Object(_) => Kind::Object,
    }
}

/// The common element kind of two lists (upstream `sliceElementType`).
fn element_kind(live: &[Value], patch: &[Value], path: &str) -> Result<Option<Kind>, Error> {
    let mut found = None;
    for item in live.iter().chain(patch) {
        let kind = kind_of(item);
        match found {
            None if kind == Kind::Array => {
                return Err(Error::ListOfLists {
                    field: path.to_owned(),
                });
            }
            None => found = Some(kind),
            Some(seen) if seen != kind => {
                return Err(Error::MixedListElements {
                    field: path.to_owned(),
                    message: format!(
                        "list element types are not identical: [{} {}]",
                        go_fmt_list(live),
                        go_fmt_list(patch)
                    ),
                });
            }
            Some(_) => {}
        }
    }
    Ok(found)
}

/// Merges a list whose field has the `merge` strategy (upstream `mergeSlice`).
fn merge_list(
    live: Vec<Value>,
    patch: Vec<Value>,
    meta: FieldMeta,
    path: &str,
) -> Result<Vec<Value>, Error> {
    if live.is_empty() && patch.is_empty() {
        return Ok(live);
    }
    match element_kind(&live, &patch, path)? {
        Some(Kind::Object) => merge_object_list(live, patch, meta, path),
        _ => {
            let mut merged: Vec<Value> = Vec::with_capacity(live.len() + patch.len());
            for item in live.iter().chain(&patch) {
                if !merged.iter().any(|seen| json_eq(seen, item)) {
                    merged.push(item.clone());
                }
            }
            Ok(order(merged, &patch, &live, None))
        }
    }
}

fn no_merge_key(element: &Object, key: &str, path: &str) -> Error {
    Error::MissingMergeKey {
        field: path.to_owned(),
        message: format!(
            "map: {} does not contain declared merge key: {key}",
            go_fmt_map(element)
        ),
    }
}

/// Merges a list of objects by merge key, executing `$patch` elements first.
fn merge_object_list(
    mut live: Vec<Value>,
    patch: Vec<Value>,
    meta: FieldMeta,
    path: &str,
) -> Result<Vec<Value>, Error> {
    let Some(key) = meta.merge_key else {
        return Err(Error::MissingMergeKey {
            field: path.to_owned(),
            message: "cannot merge lists without merge key for type struct".to_owned(),
        });
    };
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for element in patch {
        let Value::Object(object) = &element else {
            continue;
        };
        let Some(directive) = object.get(DIRECTIVE) else {
            plain.push(element);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let target = object
                    .get(key)
                    .ok_or_else(|| no_merge_key(object, key, path))?;
                live.retain(|item| !item.get(key).is_some_and(|v| json_eq(v, target)));
            }
            // Other elements are still scanned so their directives are validated and dropped.
            Some("replace") => replace = true,
            Some("merge") => {
                return Err(Error::MergingListsUnsupported {
                    field: path.to_owned(),
                });
            }
            _ => {
                return Err(Error::UnknownDirective {
                    field: path.to_owned(),
                    message: format!(
                        "unknown patch type: {} in map: {}",
                        go_fmt(directive),
                        go_fmt_map(object)
                    ),
                });
            }
        }
    }
    if replace {
        live = std::mem::take(&mut plain);
    }

    let server_order = live.clone();
    let mut merged = live;
    for element in &plain {
        let Value::Object(object) = element else {
            continue;
        };
        let wanted = object
            .get(key)
            .ok_or_else(|| no_merge_key(object, key, path))?;
        let found = merged
            .iter()
            .position(|item| item.get(key).is_some_and(|v| json_eq(v, wanted)));
        match found {
            Some(index) => {
                // element_kind() proved every live element is an object.
                let current = match std::mem::take(&mut merged[index]) {
                    Value::Object(current) => current,
                    _ => Object::new(),
                };
                let element_path = format!("{path}[{index}]");
                merged[index] =
                    Value::Object(merge_map(current, object.clone(), meta.ty, &element_path)?);
            }
            None => merged.push(sanitize_element(element.clone(), meta.ty, path)?),
        }
    }
    Ok(order(merged, &plain, &server_order, Some(key)))
}

/// What identifies a list item for ordering: its merge key value, or the item itself.
fn identity<'v>(item: &'v Value, key: Option<&str>) -> Option<&'v Value> {
    match key {
        Some(key) => item.get(key),
        None => Some(item),
    }
}

fn index_in(list: &[Value], item: &Value, key: Option<&str>) -> Option<usize> {
    let wanted = identity(item, key);
    list.iter()
        .position(|candidate| match (identity(candidate, key), wanted) {
            (Some(a), Some(b)) => json_eq(a, b),
            (None, None) => true,
            _ => false,
        })
}

/// Orders a merged list (upstream `normalizeElementOrder` + `mergeSortedSlice`): the items the
/// patch mentions follow `patch_order`, the others keep their live order, and the two runs are
/// interleaved by live position; an item the live list does not know is emitted as soon as it
/// is compared.
fn order(
    merged: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    let (mut mentioned, mut server_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|item| index_in(patch_order, item, key).is_some());
    mentioned.sort_by_key(|item| index_in(patch_order, item, key).unwrap_or(usize::MAX));
    server_only.sort_by_key(|item| index_in(server_order, item, key).unwrap_or(usize::MAX));

    let mut left = VecDeque::from(server_only);
    let mut right = VecDeque::from(mentioned);
    let mut out = Vec::with_capacity(left.len() + right.len());
    loop {
        let take_left = match (left.front(), right.front()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => {
                matches!((index_in(server_order, l, key), index_in(server_order, r, key)), (Some(li), Some(ri)) if li < ri)
            }
        };
        let next = if take_left {
            left.pop_front()
        } else {
            right.pop_front()
        };
        out.extend(next);
    }
    out
}

/// Executes `$retainKeys`: live keys not listed are dropped before the merge.
fn apply_retain_keys(original: &mut Object, patch: &mut Object, path: &str) -> Result<(), Error> {
    let Some(retain) = patch.remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let bad_format = || Error::BadPatchFormat {
        field: path.to_owned(),
        message: "invalid patch format of retainKeys",
    };
    let Value::Array(retain) = retain else {
        return Err(bad_format());
    };
    let listed = |key: &str| retain.iter().any(|v| v.as_str() == Some(key));
    for (key, value) in patch.iter() {
        if value.is_null()
            || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            || key.starts_with(SET_ELEMENT_ORDER)
        {
            continue;
        }
        if !listed(key) {
            return Err(bad_format());
        }
    }
    original.retain(|key, _| listed(key));
    Ok(())
}

/// Executes every `$setElementOrder/<field>` of this map together with its `<field>` list
/// (upstream `mergePatchIntoOriginal`). Both keys are removed from the patch.
fn apply_set_element_order(
    original: &mut Object,
    patch: &mut Object,
    ty: Ty,
    path: &str,
) -> Result<(), Error> {
    let keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for directive_key in keys {
        let bad_format = || Error::BadPatchFormat {
            field: join(path, &directive_key),
            message: "invalid patch format of setElementOrder list",
        };
        let field = directive_target(&directive_key, SET_ELEMENT_ORDER)
            .ok_or_else(bad_format)?
            .to_owned();
        let Some(Value::Array(set_order)) = patch.remove(&directive_key) else {
            return Err(bad_format());
        };
        let meta = schema::lookup(ty, &field);
        let field_path = join(path, &field);

        let live = match original.remove(&field) {
            None => None,
            Some(Value::Array(list)) => Some(list),
            Some(other) => {
                original.insert(field, other);
                return Err(bad_format());
            }
        };
        let patch_list = match patch.remove(&field) {
            None => None,
            Some(Value::Array(list)) => Some(list),
            Some(_) => return Err(bad_format()),
        };
        let item_key = if set_order
            .iter()
            .chain(patch_list.iter().flatten())
            .any(Value::is_object)
        {
            meta.merge_key
        } else {
            None
        };
        if let Some(key) = item_key {
            for entry in &set_order {
                match entry {
                    Value::Object(object) if !object.contains_key(key) => {
                        return Err(no_merge_key(object, key, &field_path));
                    }
                    _ => {}
                }
            }
        }
        if let Some(list) = &patch_list {
            validate_against_order(list, &set_order, item_key, &field_path)?;
        }

        let live_order = live.clone().unwrap_or_default();
        let merged = match (live, patch_list) {
            (None, None) => continue,
            (Some(live), None) => live,
            (None, Some(list)) => match new_value(Value::Array(list), meta, &field_path)? {
                Some(Value::Array(list)) => list,
                _ => Vec::new(),
            },
            (Some(live), Some(list)) => merge_list_field(live, list, meta, &field_path)?,
        };
        let ordered = order(merged, &set_order, &live_order, item_key);
        original.insert(field, Value::Array(ordered));
    }
    Ok(())
}

/// Checks that the patch list's non-delete items appear in `$setElementOrder` in the same
/// relative order (upstream `validatePatchWithSetOrderList`).
fn validate_against_order(
    list: &[Value],
    set_order: &[Value],
    key: Option<&str>,
    path: &str,
) -> Result<(), Error> {
    if list.is_empty() || set_order.is_empty() {
        return Ok(());
    }
    let is_directive = |item: &Value| item.get(DIRECTIVE).is_some();
    let is_delete = |item: &Value| item.get(DIRECTIVE).and_then(Value::as_str) == Some("delete");
    let non_delete: Vec<&Value> = list
        .iter()
        .filter(|item| key.is_none() || !is_delete(item))
        .collect();
    let (mut at_patch, mut at_order) = (0, 0);
    while at_patch < non_delete.len() && at_order < set_order.len() {
        let item = non_delete[at_patch];
        if is_directive(item) {
            at_patch += 1;
            continue;
        }
        let equal = match key {
            None => json_eq(item, &set_order[at_order]),
            Some(key) => {
                let mine = match item {
                    Value::Object(object) => object
                        .get(key)
                        .ok_or_else(|| no_merge_key(object, key, path))?,
                    _ => {
                        return Err(Error::BadPatchFormat {
                            field: path.to_owned(),
                            message: "invalid patch format of setElementOrder list",
                        });
                    }
                };
                set_order[at_order]
                    .get(key)
                    .is_some_and(|theirs| json_eq(mine, theirs))
            }
        };
        if equal {
            at_patch += 1;
        }
        at_order += 1;
    }
    if at_patch < non_delete.len() {
        return Err(Error::OrderMismatch {
            field: path.to_owned(),
            message: format!(
                "The order in patch list:\n{}\n doesn't match $setElementOrder list:\n{}\n",
                go_fmt_list(list),
                go_fmt_list(set_order)
            ),
        });
    }
    Ok(())
}

/// JSON equality that treats `80` and `80.0` as the same number, as Go's decoded float64 do.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => x == y,
        },
        _ => a == b,
    }
}

/// Renders a value the way Go's `%v` prints decoded JSON, so error texts match upstream.
pub(super) fn go_fmt(value: &Value) -> String {
    match value {
        Value::Null => "<nil>".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => go_fmt_number(n),
        Value::String(s) => s.clone(),
        Value::Array(list) => go_fmt_list(list),
        Value::Object(object) => go_fmt_map(object),
    }
}

fn go_fmt_list(list: &[Value]) -> String {
    let items: Vec<String> = list.iter().map(go_fmt).collect();
    format!("[{}]", items.join(" "))
}

fn go_fmt_map(object: &Object) -> String {
    let mut entries: Vec<(&String, &Value)> = object.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let items: Vec<String> = entries
        .into_iter()
        .map(|(k, v)| format!("{k}:{}", go_fmt(v)))
        .collect();
    format!("map[{}]", items.join(" "))
}

/// Go prints a float64 with `%g`-style shortest digits: exponent form from 1e+06 up or below 1e-4.
fn go_fmt_number(n: &serde_json::Number) -> String {
    let Some(f) = n.as_f64() else {
        return n.to_string();
    };
    if f == 0.0 {
        return "0".to_owned();
    }
    let exponent = f.abs().log10().floor() as i32;
    if (-4..6).contains(&exponent) {
        return format!("{f}");
    }
    let scientific = format!("{f:e}");
    let (mantissa, exp) = scientific
        .split_once('e')
        .unwrap_or((scientific.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn go_formatting_matches_fmt_v() {
        assert_eq!(
            go_fmt(&json!({"image": "x", "b": [1, true, null]})),
            "map[b:[1 true <nil>] image:x]"
        );
        assert_eq!(go_fmt(&json!(1_000_000)), "1e+06");
        assert_eq!(go_fmt(&json!(123_456)), "123456");
        assert_eq!(go_fmt(&json!(1.5)), "1.5");
    }

    #[test]
    fn directive_target_requires_exact_prefix() {
        assert_eq!(
            directive_target("$setElementOrder/containers", SET_ELEMENT_ORDER),
            Some("containers")
        );
        assert_eq!(
            directive_target("$setElementOrderX/containers", SET_ELEMENT_ORDER),
            None
        );
        assert_eq!(
            directive_target("$setElementOrder", SET_ELEMENT_ORDER),
            None
        );
    }
}
