//! What `/healthz` judges (SPEC 5.1, 5.3): a watch that has been failing
//! for too long, or a reconcile loop that has not come round for too long.
//! `/readyz` is separate: it waits for every first list.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Errors closer together than this belong to one failing streak (the
/// watcher's backoff tops out below it).
const STREAK_GAP: Duration = Duration::from_secs(90);

pub struct Health {
    inner: Mutex<Inner>,
}

struct Inner {
    stall: Duration,
    heartbeat: Instant,
    /// kind → (first error of the streak, last error).
    failing: BTreeMap<&'static str, (Instant, Instant)>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            inner: Mutex::new(Inner {
                stall: Duration::from_secs(180),
                heartbeat: Instant::now(),
                failing: BTreeMap::new(),
            }),
        }
    }
}

impl Health {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long a watch may fail, or the loop stay away, before /healthz fails.
    pub fn set_stall(&self, stall: Duration) {
        self.lock().stall = stall;
    }

    /// The reconcile loop came round (a round as leader, a pass as standby).
    pub fn beat(&self) {
        self.beat_at(Instant::now());
    }

    pub fn beat_at(&self, at: Instant) {
        self.lock().heartbeat = at;
    }

    pub fn watch_error(&self, kind: &'static str) {
        self.watch_error_at(kind, Instant::now());
    }

    pub fn watch_error_at(&self, kind: &'static str, at: Instant) {
        let mut g = self.lock();
        let e = g.failing.entry(kind).or_insert((at, at));
        if at.duration_since(e.1) > STREAK_GAP {
            e.0 = at;
        }
        e.1 = at;
    }

    /// The watch delivered something: it works.
    pub fn watch_ok(&self, kind: &'static str) {
        let mut g = self.lock();
        if !g.failing.is_empty() {
            g.failing.remove(kind);
        }
    }

    /// Ok, or what is wrong, in one line.
    pub fn check(&self) -> Result<(), String> {
        self.check_at(Instant::now())
    }

    pub fn check_at(&self, now: Instant) -> Result<(), String> {
        let g = self.lock();
        let mut problems = Vec::new();
        for (kind, (first, last)) in &g.failing {
            if now.saturating_duration_since(*last) <= STREAK_GAP
                && last.duration_since(*first) >= g.stall
            {
                problems.push(format!(
                    "the {kind} watch has been failing for {}s",
                    last.duration_since(*first).as_secs()
                ));
            }
        }
        let idle = now.saturating_duration_since(g.heartbeat);
        if idle > g.stall {
            problems.push(format!(
                "the reconcile loop has not completed a round for {}s",
                idle.as_secs()
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_failing_longer_than_the_stall_fails_and_recovers() {
        let h = Health::default();
        h.set_stall(Duration::from_secs(60));
        let t0 = Instant::now();
        h.beat_at(t0);
        for i in 0..2 {
            h.watch_error_at("CronJobs", t0 + Duration::from_secs(30 * i));
        }
        assert!(h.check_at(t0 + Duration::from_secs(31)).is_ok());
        h.watch_error_at("CronJobs", t0 + Duration::from_secs(90));
        h.beat_at(t0 + Duration::from_secs(90));
        let e = h.check_at(t0 + Duration::from_secs(91)).unwrap_err();
        assert!(e.contains("CronJobs watch has been failing for 90s"), "{e}");
        h.watch_ok("CronJobs");
        assert!(h.check_at(t0 + Duration::from_secs(92)).is_ok());
    }

    #[test]
    fn errors_far_apart_are_not_one_streak() {
        let h = Health::default();
        h.set_stall(Duration::from_secs(60));
        let t0 = Instant::now();
        h.watch_error_at("Jobs", t0);
        h.watch_error_at("Jobs", t0 + Duration::from_secs(200));
        h.beat_at(t0 + Duration::from_secs(200));
        assert!(h.check_at(t0 + Duration::from_secs(201)).is_ok());
    }

    #[test]
    fn a_stalled_loop_fails() {
        let h = Health::default();
        h.set_stall(Duration::from_secs(60));
        let t0 = Instant::now();
        h.beat_at(t0);
        assert!(h.check_at(t0 + Duration::from_secs(59)).is_ok());
        let e = h.check_at(t0 + Duration::from_secs(61)).unwrap_err();
        assert!(e.contains("reconcile loop"), "{e}");
    }
}
