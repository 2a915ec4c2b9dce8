//! Private test hooks: the core's fault-injection seam (`jobpersist_core::fault`), so the
//! Python tests can fail the Nth I/O operation of a native save as the cargo tests do, and
//! the switch of its spare files (`jobpersist_core::spare_files`).
//! Nothing is armed unless a test calls `_arm_faults`; plans are per thread.

use jobpersist_core::fault::{self, Plan};
use jobpersist_core::spare_files;
use pyo3::prelude::*;

/// Arms a fault plan for the calling thread's saves: the operation with 1-based index
/// `fail_at` fails with `errno`; `interrupt` makes every other write or lock wait return
/// EINTR first; `short_writes` halves every write.
#[pyfunction(name = "_arm_faults")]
#[pyo3(signature = (fail_at = None, errno = 5, interrupt = false, short_writes = false))]
pub fn arm_faults(fail_at: Option<u64>, errno: i32, interrupt: bool, short_writes: bool) {
    fault::arm(Plan {
        fail_at,
        errno,
        interrupt,
        short_writes,
        ..Plan::default()
    });
}

/// Disarms the calling thread's plan: the operations seen (by name), the one failed (or
/// None), the EINTRs returned and the writes shortened.
#[pyfunction(name = "_disarm_faults")]
pub fn disarm_faults() -> (Vec<&'static str>, Option<&'static str>, u64, u64) {
    let record = fault::disarm();
    (
        record.ops.iter().map(|op| op.name()).collect(),
        record.failed.map(|op| op.name()),
        record.interrupts,
        record.short_writes,
    )
}

/// Sets when this process's saves use spare files: "off" (which closes those made),
/// "where slow" (the default) or "always".
#[pyfunction(name = "_set_spares")]
pub fn set_spares(policy: &str) -> PyResult<()> {
    let policy = match policy {
        "off" => spare_files::Policy::Off,
        "where slow" => spare_files::Policy::WhereSlow,
        "always" => spare_files::Policy::Always,
        _ => {
            return Err(crate::errors::misuse(
                "the spare policies are \"off\", \"where slow\" and \"always\"",
            ))
        }
    };
    spare_files::set_policy(policy);
    Ok(())
}

/// How many spare files this process holds.
#[pyfunction(name = "_spare_count")]
pub fn spare_count() -> usize {
    spare_files::count()
}
