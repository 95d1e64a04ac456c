//! The `pod-template-hash`: an FNV-32a hash of the pod template (and the collision count),
//! rendered with upstream's SafeEncodeString alphabet (no vowels, no look-alike digits).
//!
//! Upstream hashes Go's `spew` rendering of the template struct, which cannot be reproduced
//! outside Go; we hash the template's canonical JSON instead. Clients never recompute the hash:
//! they read it from labels, and `rollout undo` matches templates ignoring it.

use k8s_openapi::api::core::v1::PodTemplateSpec;

/// The label (and selector key) a Deployment adds to each ReplicaSet's pods.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn fnv32a(h: u32, bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .fold(h, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

/// Upstream's `rand.SafeEncodeString`: each byte mapped into a 27-letter alphabet.
pub fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| char::from(ALPHANUMS[usize::from(b) % ALPHANUMS.len()]))
        .collect()
}

/// The hash of `template` with `collision_count` mixed in (as upstream: little-endian u32).
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    // serde_json::Value maps are ordered by key, so this rendering is canonical.
    let canonical = serde_json::to_value(template)
        .map(|v| v.to_string())
        .unwrap_or_default();
    let mut h = fnv32a(0x811c_9dc5, canonical.as_bytes());
    if let Some(c) = collision_count {
        h = fnv32a(h, &(c as u32).to_le_bytes());
    }
    safe_encode(&h.to_string())
}

fn without_hash(t: &PodTemplateSpec) -> serde_json::Value {
    let mut t = t.clone();
    if let Some(meta) = t.metadata.as_mut()
        && let Some(labels) = meta.labels.as_mut()
    {
        labels.remove(POD_TEMPLATE_HASH);
        if labels.is_empty() {
            meta.labels = None;
        }
    }
    // Go compares metadata by value: absent and empty are the same.
    if t.metadata
        .as_ref()
        .is_some_and(|m| *m == Default::default())
    {
        t.metadata = None;
    }
    serde_json::to_value(&t).unwrap_or_default()
}

/// Whether two templates are the same but for the hash label (upstream's EqualIgnoreHash).
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    without_hash(a) == without_hash(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_encoding_maps_digits_into_the_consonant_alphabet() {
        // '0' is byte 48, 48 % 27 = 21 -> '4'; '1' is 49 -> '5'; '9' is 57 -> 3 -> 'f'.
        assert_eq!(safe_encode("019"), "45f");
    }

    #[test]
    fn the_hash_ignores_its_own_label_and_changes_with_collisions() {
        let mut t = PodTemplateSpec::default();
        let h = compute_hash(&t, None);
        assert!(h.len() <= 10 && h.bytes().all(|b| ALPHANUMS.contains(&b)));
        assert_ne!(h, compute_hash(&t, Some(1)));
        let before = t.clone();
        t.metadata.get_or_insert_with(Default::default).labels =
            Some([(POD_TEMPLATE_HASH.to_string(), h)].into_iter().collect());
        assert!(equal_ignore_hash(&t, &before));
    }
}
