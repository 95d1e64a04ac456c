//! VolumeBinding: the hook where PersistentVolumeClaims will be checked and bound. Until the
//! storage issue lands it only reports which pods it would act on; it never rejects a node.

use crate::framework::{CycleState, Plugin, Status};
use crate::snapshot::{PodInfo, Snapshot};

pub const NAME: &str = "VolumeBinding";

pub struct VolumeBinding;

impl Plugin for VolumeBinding {
    fn name(&self) -> &'static str {
        NAME
    }
    fn pre_filter(&self, _cx: &mut CycleState, pod: &PodInfo, _snap: &Snapshot) -> Status {
        // Upstream skips pods without PVCs; pods with PVCs would be checked by Filter/PreBind,
        // which the storage issue fills in. Until then, Filter is the default Success.
        if pod.pvc_names.is_empty() {
            Status::skip()
        } else {
            Status::success()
        }
    }
}
