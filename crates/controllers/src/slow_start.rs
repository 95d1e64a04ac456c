//! Creating many pods as upstream's controllers do ("slow start"): batches of 1, 2, 4, … so a
//! controller whose pods are all refused (quota, admission) fails after one request instead of
//! hundreds. Shared by the ReplicaSet and Job controllers.

use futures::future::join_all;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};

use crate::control::{self, EventRecorder, PodControl};
use crate::expectations::Expectations;
use crate::queue::Key;

/// Create `templates` in `key`'s namespace in slow-start batches, recording `SuccessfulCreate`
/// / `FailedCreate` on `about`. The caller expected `templates.len()` creations; every create
/// that fails or is never tried is marked observed so the expectations settle. Returns how many
/// pods were created and the last error.
pub async fn create_pods<C>(
    control: &C,
    expectations: &Expectations,
    key: &Key,
    about: &ObjectReference,
    templates: &[Pod],
) -> (usize, Option<control::Error>)
where
    C: PodControl + EventRecorder + ?Sized,
{
    let mut created = 0;
    let mut error = None;
    let mut next = 0;
    let mut batch = 1usize.min(templates.len());
    while batch > 0 {
        let creates = templates[next..next + batch]
            .iter()
            .map(|t| control.create_pod(&key.namespace, t));
        let outcomes = join_all(creates).await;
        next += batch;
        for outcome in outcomes {
            match outcome {
                Ok(pod) => {
                    created += 1;
                    let name = pod.metadata.name.unwrap_or_default();
                    control.record(
                        about,
                        "Normal",
                        "SuccessfulCreate",
                        format!("Created pod: {name}"),
                    );
                }
                Err(e) => {
                    // The create will never be observed.
                    expectations.creation_observed(key);
                    control.record(
                        about,
                        "Warning",
                        "FailedCreate",
                        format!("Error creating: {e}"),
                    );
                    error = Some(e);
                }
            }
        }
        if error.is_some() {
            // The rest of the creates were never tried: stop expecting them.
            for _ in next..templates.len() {
                expectations.creation_observed(key);
            }
            break;
        }
        batch = (batch * 2).min(templates.len() - next);
    }
    (created, error)
}
