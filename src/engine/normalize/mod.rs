//! Normalisation before comparison: image references, schedules, the
//! security-relevant template hash (SPEC 3.5) and the deployment path
//! (SPEC 3.4). Pure functions and memo caches; no rule lives here.

mod hash;
mod image;
mod managers;
pub mod reference;
mod schedule;

pub use hash::template_hash;
pub use image::{
    Glob, ImageCache, ImagePattern, ImageRef, has_digest, is_mutable, normalize_image,
};
pub use managers::spec_managers;
pub use schedule::{
    CronFields, IntervalCache, ParsedSchedule, format_duration, min_interval, normalize_schedule,
    parse_duration, parse_existing_schedule, parse_go_duration, parse_schedule, same_schedule,
};
