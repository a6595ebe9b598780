//! SuspiciousCommand (SPEC 3.3): the behaviours [`analysis`] found on each
//! exec surface of each container when the CronJob arrived.
//!
//! [`analysis`]: crate::engine::analysis

use super::Ctx;
use crate::engine::verdict::Finder;

pub fn suspicious(ctx: &Ctx, out: &mut Finder) {
    let Some(pod) = &ctx.cj.pod else { return };
    for (path, c) in pod.containers() {
        for t in &c.threats {
            let what = t
                .hits
                .iter()
                .map(|h| format!("{} ({})", h.category, h.detail))
                .collect::<Vec<_>>()
                .join("; ");
            out.push(
                None,
                format!("container {} {}: {what}", c.name, t.surface),
                format!("{path}.{}", t.surface.field()),
                "no download-and-execute, encoded payload, reverse shell, cryptominer, credential theft or cluster takeover",
                t.line.clone(),
            );
        }
    }
}
