//! `directResponse`: a fixed status and body, answered by the gateway.

use bytes::Bytes;
use serde::{Serialize, Serializer};

use crate::compile::reply::LocalReply;

#[derive(Debug, Clone, Serialize)]
pub struct DirectResponse {
    pub status: u16,
    #[serde(serialize_with = "body_str")]
    pub body: Bytes,
}

fn body_str<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(b))
}

impl DirectResponse {
    pub fn reply(&self) -> LocalReply {
        LocalReply::new(self.status, None, "direct_response", self.body.clone())
    }
}
