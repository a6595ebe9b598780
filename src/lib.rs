//! cronwarden: CronJobs checked against a declared, attribute-level baseline.
//!
//! Data flows one way: manifests (`scan`) or watches (`run`) build an
//! [`engine::Inventory`]; [`engine::evaluate`] is a pure function from it to
//! desired findings; the front ends render or publish them.

pub mod api;
pub mod audit;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod engine;
pub mod error;
pub mod manifest;
pub mod scan;
pub mod snapshot;
pub mod synthetic;
pub mod telemetry;
