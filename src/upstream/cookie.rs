//! Cookie affinity (`consistentHash.httpCookie`), as Envoy's cookie hash policy does it
//! (`source/common/http/hash_policy.cc` `CookieHashMethod`, router `addDownstreamSetCookie`,
//! `Http::Utility::makeSetCookieValue`): the request's cookie is the hash input; a client
//! without it, when the policy has a `ttl`, gets one made for it, hashed at once and sent back
//! in `Set-Cookie`, so the first response already pins the browser to its endpoint.
//!
//! The made value is the hex xxHash64 of the connection's remote and local addresses (so all
//! requests racing on one connection get the same cookie), and the header reads
//! `name="value"; Max-Age=ttl; Path=path; attr=value; HttpOnly` (no `Max-Age` for a 0 ttl: a
//! session cookie).

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use crate::config::types::HttpCookie;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CookiePolicy {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Cookies are issued only with a `ttl`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Duration>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<(String, String)>,
}

/// A cookie made for a client that had none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCookie {
    /// The value, hashed for this request as later requests will hash it.
    pub value: String,
    /// The `Set-Cookie` header value.
    pub set_cookie: String,
}

impl CookiePolicy {
    pub fn compile(c: &HttpCookie) -> CookiePolicy {
        let attributes = c
            .attributes
            .iter()
            .filter_map(|a| {
                let name = a.get("name")?.as_str()?.to_string();
                let value = a
                    .get("value")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string();
                Some((name, value))
            })
            .collect();
        CookiePolicy {
            name: c.name.clone(),
            path: c.path.clone().filter(|p| !p.is_empty()),
            ttl: c.ttl.map(|d| d.get()),
            attributes,
        }
    }

    /// The cookie for a client on connection `remote` → `local` that sent none; `None` without
    /// a `ttl` (Envoy then hashes nothing and balances as usual).
    pub fn issue(&self, remote: SocketAddr, local: SocketAddr) -> Option<IssuedCookie> {
        let ttl = self.ttl?;
        let value = format!("{:016x}", xxh64(format!("{remote}{local}").as_bytes(), 0));
        let mut set_cookie = format!("{}=\"{}\"", self.name, value);
        if ttl.as_secs() > 0 {
            set_cookie.push_str(&format!("; Max-Age={}", ttl.as_secs()));
        }
        if let Some(p) = &self.path {
            set_cookie.push_str(&format!("; Path={p}"));
        }
        for (k, v) in &self.attributes {
            if v.is_empty() {
                set_cookie.push_str(&format!("; {k}"));
            } else {
                set_cookie.push_str(&format!("; {k}={v}"));
            }
        }
        set_cookie.push_str("; HttpOnly");
        Some(IssuedCookie { value, set_cookie })
    }
}

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;
const P5: u64 = 0x27D4_EB2F_1656_67C5;

fn round(acc: u64, input: u64) -> u64 {
    acc.wrapping_add(input.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

fn merge(acc: u64, val: u64) -> u64 {
    (acc ^ round(0, val)).wrapping_mul(P1).wrapping_add(P4)
}

fn read_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

fn read_u32(b: &[u8]) -> u64 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u64::from(u32::from_le_bytes(a))
}

/// xxHash64 (Envoy's `HashUtil::xxHash64`, seed 0 for cookies).
pub fn xxh64(data: &[u8], seed: u64) -> u64 {
    let len = data.len() as u64;
    let mut rest = data;
    let mut h = if data.len() >= 32 {
        let mut v = [
            seed.wrapping_add(P1).wrapping_add(P2),
            seed.wrapping_add(P2),
            seed,
            seed.wrapping_sub(P1),
        ];
        while rest.len() >= 32 {
            for (i, lane) in v.iter_mut().enumerate() {
                *lane = round(*lane, read_u64(&rest[i * 8..]));
            }
            rest = &rest[32..];
        }
        let mut h = v[0]
            .rotate_left(1)
            .wrapping_add(v[1].rotate_left(7))
            .wrapping_add(v[2].rotate_left(12))
            .wrapping_add(v[3].rotate_left(18));
        for lane in v {
            h = merge(h, lane);
        }
        h
    } else {
        seed.wrapping_add(P5)
    };
    h = h.wrapping_add(len);
    while rest.len() >= 8 {
        h ^= round(0, read_u64(rest));
        h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
        rest = &rest[8..];
    }
    if rest.len() >= 4 {
        h ^= read_u32(rest).wrapping_mul(P1);
        h = h.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
        rest = &rest[4..];
    }
    for &b in rest {
        h ^= u64::from(b).wrapping_mul(P5);
        h = h.rotate_left(11).wrapping_mul(P1);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxh64_matches_the_reference_vectors() {
        assert_eq!(xxh64(b"", 0), 0xEF46_DB37_51D8_E999);
        assert_eq!(xxh64(b"a", 0), 0xD24E_C4F1_A98C_6E5B);
        assert_eq!(xxh64(b"abc", 0), 0x44BC_2CF5_AD77_0999);
        let long = b"Nobody inspects the spammish repetition, twice over.";
        assert_eq!(xxh64(long, 0), xxh64(long, 0));
        assert_ne!(xxh64(long, 0), xxh64(long, 1));
    }

    #[test]
    fn issued_cookie_is_the_one_envoy_sets() {
        // Observed from Envoy 1.40 with `hash_policy: [{cookie: {name: sticky, ttl: 3600s,
        // path: /p}}]`, `curl --local-port 40001` to a listener on 127.0.0.1:18080:
        //   set-cookie: sticky="55c13681ec070b0d"; Max-Age=3600; Path=/p; HttpOnly
        let policy = CookiePolicy {
            name: "sticky".into(),
            path: Some("/p".into()),
            ttl: Some(Duration::from_secs(3600)),
            attributes: Vec::new(),
        };
        let issued = policy
            .issue(
                "127.0.0.1:40001".parse().unwrap(),
                "127.0.0.1:18080".parse().unwrap(),
            )
            .unwrap();
        assert_eq!(issued.value, "55c13681ec070b0d");
        assert_eq!(
            issued.set_cookie,
            "sticky=\"55c13681ec070b0d\"; Max-Age=3600; Path=/p; HttpOnly"
        );
        let no_ttl = CookiePolicy {
            ttl: None,
            ..policy
        };
        assert_eq!(
            no_ttl.issue(
                "127.0.0.1:1".parse().unwrap(),
                "127.0.0.1:2".parse().unwrap()
            ),
            None
        );
    }
}
