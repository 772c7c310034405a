//! Typed Istio resources, exactly as they appear in YAML (`camelCase` fields, Istio enum spellings).
//! Parsing only: what a field *means* is decided in `config::validate` and `compile`.

pub mod common;
pub mod destination_rule;
pub mod gateway;
pub mod security;
pub mod service_entry;
pub mod virtual_service;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use common::*;
pub use destination_rule::*;
pub use gateway::*;
pub use security::*;
pub use service_entry::*;
pub use virtual_service::*;

/// The kinds Portcullis serves: four `networking.istio.io` kinds and the two
/// `security.istio.io` kinds a gateway enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Kind {
    Gateway,
    VirtualService,
    ServiceEntry,
    DestinationRule,
    AuthorizationPolicy,
    RequestAuthentication,
}

impl Kind {
    pub fn parse(kind: &str) -> Option<Kind> {
        Some(match kind {
            "Gateway" => Kind::Gateway,
            "VirtualService" => Kind::VirtualService,
            "ServiceEntry" => Kind::ServiceEntry,
            "DestinationRule" => Kind::DestinationRule,
            "AuthorizationPolicy" => Kind::AuthorizationPolicy,
            "RequestAuthentication" => Kind::RequestAuthentication,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Gateway => "Gateway",
            Kind::VirtualService => "VirtualService",
            Kind::ServiceEntry => "ServiceEntry",
            Kind::DestinationRule => "DestinationRule",
            Kind::AuthorizationPolicy => "AuthorizationPolicy",
            Kind::RequestAuthentication => "RequestAuthentication",
        }
    }

    /// The API group and the versions of it this kind is read in.
    pub fn api(self) -> (&'static str, &'static [&'static str]) {
        match self {
            Kind::AuthorizationPolicy | Kind::RequestAuthentication => {
                (SECURITY_API_GROUP, &SECURITY_API_VERSIONS)
            }
            _ => (API_GROUP, &API_VERSIONS),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub const API_GROUP: &str = "networking.istio.io";
pub const API_VERSIONS: [&str; 3] = ["v1alpha3", "v1beta1", "v1"];
pub const SECURITY_API_GROUP: &str = "security.istio.io";
pub const SECURITY_API_VERSIONS: [&str; 2] = ["v1beta1", "v1"];

/// The parts of Kubernetes `metadata` that change behaviour; the rest is accepted silently.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ObjectMeta {
    pub name: String,
    pub namespace: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Istio orders VirtualServices merged onto one host by creation time.
    pub creation_timestamp: Option<String>,
    #[serde(flatten, skip_serializing)]
    pub other: BTreeMap<String, serde_yaml::Value>,
}

/// A Kubernetes object wrapper around one kind's `spec`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Envelope<T> {
    pub api_version: String,
    pub kind: String,
    pub metadata: Option<ObjectMeta>,
    pub spec: Option<T>,
    /// Written by Kubernetes; never read.
    pub status: Option<serde_yaml::Value>,
}
