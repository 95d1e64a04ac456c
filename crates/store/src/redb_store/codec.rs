//! The on-disk layout of the redb backend: table definitions and record encodings.
//!
//! Records are little-endian fixed headers followed by the value bytes; see `docs/store.md`.

use bytes::Bytes;
use redb::{ReadableTable, TableDefinition};

use crate::error::{Error, Result};
use crate::types::{EventKind, KeyValue, Revision, WatchEvent};

/// Latest state of every live key: `key → LiveRecord`. Serves `get` and latest-revision ranges.
pub(super) const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
/// Every retained version of every key: `(key, revision) → HistoryRecord`. Serves ranges at old
/// revisions and the values of replayed watch events.
pub(super) const HISTORY: TableDefinition<(&str, i64), &[u8]> = TableDefinition::new("history");
/// Which key each retained revision wrote: `revision → key`. Serves watch replay in revision order.
pub(super) const LOG: TableDefinition<i64, &str> = TableDefinition::new("log");
/// Counters: [`META_CURRENT`] and [`META_COMPACTED`].
pub(super) const META: TableDefinition<&str, i64> = TableDefinition::new("meta");

/// The revision of the last committed write.
pub(super) const META_CURRENT: &str = "current_revision";
/// History before this revision is gone.
pub(super) const META_COMPACTED: &str = "compacted_revision";

const LIVE_HEADER: usize = 24;
const HISTORY_HEADER: usize = 25;
const KIND_PUT: u8 = 1;
const KIND_DELETE: u8 = 2;

/// Encodes the `kv` table's record.
pub(super) fn encode_live(
    create: Revision,
    modified: Revision,
    version: i64,
    value: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(LIVE_HEADER + value.len());
    out.extend_from_slice(&create.to_le_bytes());
    out.extend_from_slice(&modified.to_le_bytes());
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(value);
    out
}

/// Decodes a `kv` table record into the key's [`KeyValue`].
pub(super) fn decode_live(key: &str, bytes: &[u8]) -> Result<KeyValue> {
    if bytes.len() < LIVE_HEADER {
        return Err(corrupt(key, "short kv record"));
    }
    Ok(KeyValue {
        key: key.to_owned(),
        value: Bytes::copy_from_slice(&bytes[LIVE_HEADER..]),
        create_revision: read_i64(bytes, 0),
        mod_revision: read_i64(bytes, 8),
        version: read_i64(bytes, 16),
    })
}

/// One entry of the `history` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct HistoryRecord<'a> {
    pub kind: EventKind,
    /// For a put, the key's create revision; 0 for a delete.
    pub create_revision: Revision,
    /// For a put, the key's version; 0 for a delete.
    pub version: i64,
    /// The key's previous live `mod_revision`, 0 when the key did not exist.
    pub prev_mod_revision: Revision,
    /// For a put, the value; empty for a delete (the deleted value is the previous record's).
    pub value: &'a [u8],
}

/// Encodes a `history` table record.
pub(super) fn encode_history(record: &HistoryRecord<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(HISTORY_HEADER + record.value.len());
    out.push(match record.kind {
        EventKind::Put => KIND_PUT,
        EventKind::Delete => KIND_DELETE,
    });
    out.extend_from_slice(&record.create_revision.to_le_bytes());
    out.extend_from_slice(&record.version.to_le_bytes());
    out.extend_from_slice(&record.prev_mod_revision.to_le_bytes());
    out.extend_from_slice(record.value);
    out
}

/// Decodes a `history` table record.
pub(super) fn decode_history<'a>(key: &str, bytes: &'a [u8]) -> Result<HistoryRecord<'a>> {
    if bytes.len() < HISTORY_HEADER {
        return Err(corrupt(key, "short history record"));
    }
    let kind = match bytes[0] {
        KIND_PUT => EventKind::Put,
        KIND_DELETE => EventKind::Delete,
        _ => return Err(corrupt(key, "unknown history record kind")),
    };
    Ok(HistoryRecord {
        kind,
        create_revision: read_i64(bytes, 1),
        version: read_i64(bytes, 9),
        prev_mod_revision: read_i64(bytes, 17),
        value: &bytes[HISTORY_HEADER..],
    })
}

/// The [`KeyValue`] a put history record describes.
pub(super) fn history_kv(key: &str, revision: Revision, record: &HistoryRecord<'_>) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Bytes::copy_from_slice(record.value),
        create_revision: record.create_revision,
        mod_revision: revision,
        version: record.version,
    }
}

/// Rebuilds the watch event of the write at `(key, revision)` from the history table.
pub(super) fn history_event(
    history: &impl ReadableTable<(&'static str, i64), &'static [u8]>,
    key: &str,
    revision: Revision,
) -> Result<WatchEvent> {
    let guard = history
        .get((key, revision))
        .map_err(Error::storage)?
        .ok_or_else(|| corrupt(key, "log entry without history record"))?;
    let record = decode_history(key, guard.value())?;
    let prev_kv = if record.prev_mod_revision > 0 {
        let prev_guard = history
            .get((key, record.prev_mod_revision))
            .map_err(Error::storage)?
            .ok_or_else(|| corrupt(key, "history record without its previous version"))?;
        let prev = decode_history(key, prev_guard.value())?;
        Some(history_kv(key, record.prev_mod_revision, &prev))
    } else {
        None
    };
    Ok(match record.kind {
        EventKind::Put => WatchEvent {
            kind: EventKind::Put,
            kv: history_kv(key, revision, &record),
            prev_kv,
        },
        EventKind::Delete => {
            let prev = prev_kv.ok_or_else(|| corrupt(key, "delete without previous version"))?;
            WatchEvent {
                kind: EventKind::Delete,
                kv: KeyValue {
                    mod_revision: revision,
                    ..prev.clone()
                },
                prev_kv: Some(prev),
            }
        }
    })
}

fn read_i64(bytes: &[u8], at: usize) -> i64 {
    let mut buf = [0u8; 8];
    buf.copy_from_slice(&bytes[at..at + 8]);
    i64::from_le_bytes(buf)
}

fn corrupt(key: &str, what: &str) -> Error {
    Error::Corrupt {
        detail: format!("{what} for key {key:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_record_round_trips_value_and_revisions() {
        let bytes = encode_live(2, 7, 3, b"{\"kind\":\"Pod\"}");
        let kv = decode_live("/registry/pods/default/a", &bytes).expect("decodes");
        assert_eq!(kv.create_revision, 2);
        assert_eq!(kv.mod_revision, 7);
        assert_eq!(kv.version, 3);
        assert_eq!(&kv.value[..], b"{\"kind\":\"Pod\"}");
    }

    #[test]
    fn history_record_round_trips_kind_and_prev_revision() {
        let record = HistoryRecord {
            kind: EventKind::Delete,
            create_revision: 0,
            version: 0,
            prev_mod_revision: 41,
            value: b"",
        };
        let bytes = encode_history(&record);
        assert_eq!(decode_history("k", &bytes).expect("decodes"), record);
    }

    #[test]
    fn truncated_records_are_reported_as_corrupt() {
        assert!(matches!(
            decode_live("k", &[0; 10]),
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(
            decode_history("k", &[9; 30]),
            Err(Error::Corrupt { .. })
        ));
    }
}
