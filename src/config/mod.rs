//! Configuration: Istio YAML on disk → typed [`Resources`] → [`Diagnostics`].
//!
//! `types` is the serde model, `load` reads a directory, `validate` applies Istio's webhook and
//! analyzer rules, `host` holds the host-name rules everything else shares, and `resolve` the
//! rules that find what a name refers to (a gateway, a service, a DestinationRule), which
//! `validate` and `compile` both use.

pub mod diag;
pub mod host;
pub mod load;
pub mod mesh;
pub mod regex_cache;
pub mod resolve;
pub mod source;
pub mod types;
pub mod validate;

pub use diag::{Diagnostic, Diagnostics, Severity};
pub use load::{load_dir, load_files, Resource, Resources};
