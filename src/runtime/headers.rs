//! Applying compiled header operations (`headers.request` / `headers.response`) to Pingora's
//! request and response headers: remove, then set (overwrite), then add (append).

use pingora::http::{RequestHeader, ResponseHeader};

use crate::compile::action::HeaderOps;

pub fn apply_request_ops(req: &mut RequestHeader, ops: &HeaderOps) {
    for name in &ops.remove {
        req.remove_header(name);
    }
    for (k, v) in &ops.set {
        let _ = req.insert_header(k.clone(), v.clone());
    }
    for (k, v) in &ops.add {
        let _ = req.append_header(k.clone(), v.clone());
    }
}

pub fn apply_response_ops(resp: &mut ResponseHeader, ops: &HeaderOps) {
    for name in &ops.remove {
        resp.remove_header(name);
    }
    for (k, v) in &ops.set {
        let _ = resp.insert_header(k.clone(), v.clone());
    }
    for (k, v) in &ops.add {
        let _ = resp.append_header(k.clone(), v.clone());
    }
}
