//! Where the controller's audit sources deliver: classify, keep writes in
//! the correlation window, count, and tell the controller which subject to
//! re-evaluate.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::store::ActorStore;
use super::{AuditEvent, Classified, PREFILTER, parse_line};
use crate::telemetry::Metrics;

/// Called with the namespace of every kept write (re-evaluate it).
pub type Touched = Box<dyn Fn(&str) + Send + Sync>;

pub struct Sink {
    pub store: Arc<Mutex<ActorStore>>,
    metrics: Arc<Metrics>,
    touched: Touched,
    finder: memchr::memmem::Finder<'static>,
}

impl Sink {
    pub fn new(store: Arc<Mutex<ActorStore>>, metrics: Arc<Metrics>, touched: Touched) -> Self {
        Sink {
            store,
            metrics,
            touched,
            finder: memchr::memmem::Finder::new(PREFILTER),
        }
    }

    /// One line of a followed log. Returns false for a malformed line.
    pub fn line(&self, source: &str, line: &[u8]) -> bool {
        if self.finder.find(line).is_none() {
            if !line.iter().all(u8::is_ascii_whitespace) {
                self.metrics
                    .audit(&self.metrics.audit_received, source, "other");
            }
            return true;
        }
        match parse_line(line) {
            Ok(events) => {
                self.events(source, events);
                true
            }
            Err(_) => {
                self.metrics
                    .audit(&self.metrics.audit_rejected, source, "malformed");
                false
            }
        }
    }

    pub fn events(&self, source: &str, events: Vec<AuditEvent>) {
        let now = Instant::now();
        let mut touched = Vec::new();
        {
            let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
            for ev in events {
                let what = match ev.classify() {
                    Classified::Other => "other",
                    Classified::Failed(_) => "failed",
                    Classified::Subresource => "status",
                    Classified::DryRun => "dry_run",
                    Classified::Write(w) => {
                        if !w.deleted {
                            if store.record(&w, now) {
                                touched.push(w.namespace.clone());
                            } else {
                                self.metrics.audit_dropped.inc();
                            }
                        }
                        "write"
                    }
                };
                self.metrics
                    .audit(&self.metrics.audit_received, source, what);
            }
            self.metrics.audit_kept.set(store.len() as i64);
        }
        touched.dedup();
        for ns in touched {
            (self.touched)(&ns);
        }
    }

    /// Forget what fell out of the window (called periodically).
    pub fn sweep(&self) {
        let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        store.sweep(Instant::now());
        self.metrics.audit_kept.set(store.len() as i64);
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}
