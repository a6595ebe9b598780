//! PowerfulServiceAccount (SPEC 3.7): the pod's service account, with a
//! token mounted, may do something dangerous. The answers come from the
//! engine's [`PowerSource`](crate::engine::power::PowerSource); without one
//! (scan with no RBAC objects in its input) the rule cannot speak.

use super::Ctx;
use crate::engine::POD_PATH;
use crate::engine::power::Answer;
use crate::engine::verdict::Finder;

pub fn powerful(ctx: &Ctx, out: &mut Finder) {
    let (Some(src), Some(pod)) = (ctx.engine.powers.as_deref(), &ctx.cj.pod) else {
        return;
    };
    if !pod.token_mounted {
        return;
    }
    let ns = &ctx.cj.namespace;
    let sa = &pod.service_account;
    let field = format!("{POD_PATH}.serviceAccountName");
    match src.power(ns, sa) {
        Answer::Pending => {}
        Answer::Known(p) if p.is_empty() => {}
        Answer::Known(p) => {
            let what = p.describe(ns);
            out.push(
                None,
                format!(
                    "service account {ns}/{sa} (token mounted) may {what} ({})",
                    src.label()
                ),
                field,
                "no dangerous permission",
                what,
            );
        }
        Answer::Failed(why) => out.push(
            None,
            format!("what service account {ns}/{sa} may do could not be evaluated: {why}"),
            field,
            "an answer from the authorizer",
            "unknown",
        ),
    }
}
