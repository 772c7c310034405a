//! `mirror` + `mirrorPercentage` (or the deprecated `mirrorPercent`) and `mirrors`: which
//! clusters get a fire-and-forget copy of a request, and how often. Istio's rules
//! (`route.go` `MirrorPercent`, `MirrorPercentByPolicy`, `TranslateRequestMirrorPolicy`): no
//! percentage means 100%, an explicit 0 means no mirror; `mirrorPercentage` is a double turned
//! into parts per million; the copy keeps the original Host (`DISABLE_SHADOW_HOST_SUFFIX`,
//! true by default, so no `-shadow` suffix). The runtime side is `runtime::mirror`.

use std::sync::Arc;

use serde::Serialize;

use super::cluster_name;
use crate::config::types::{HttpMirrorPolicy, HttpRoute, Percent};
use crate::upstream::Cluster;

/// Parts per million of requests that are mirrored.
const MILLION: u32 = 1_000_000;

#[derive(Debug, Clone, Serialize)]
pub struct Mirror {
    #[serde(serialize_with = "cluster_name")]
    pub cluster: Arc<Cluster>,
    /// Parts per million of requests copied.
    pub per_million: u32,
}

fn per_million(p: &Percent) -> u32 {
    // translatePercentToFractionalPercent: value × 10000 parts per million.
    ((p.value * 10_000.0) as u32).min(MILLION)
}

impl Mirror {
    /// The share of requests `mirror` copies (`MirrorPercent`): `None` when an explicit 0
    /// turns it off.
    pub fn route_share(rule: &HttpRoute) -> Option<u32> {
        match (&rule.mirror_percentage, rule.mirror_percent) {
            (Some(p), _) => Some(per_million(p)).filter(|v| *v > 0),
            (None, Some(p)) => Some(p.min(100) * 10_000).filter(|v| *v > 0),
            (None, None) => Some(MILLION),
        }
    }

    /// The share of requests one of `mirrors` copies (`MirrorPercentByPolicy`).
    pub fn policy_share(policy: &HttpMirrorPolicy) -> Option<u32> {
        match &policy.percentage {
            Some(p) => Some(per_million(p)).filter(|v| *v > 0),
            None => Some(MILLION),
        }
    }

    /// Whether this request is copied.
    pub fn roll(&self) -> bool {
        self.per_million >= MILLION || fastrand::u32(0..MILLION) < self.per_million
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_follow_istios_mirror_percent() {
        let mut rule = HttpRoute::default();
        assert_eq!(Mirror::route_share(&rule), Some(MILLION), "absent: 100%");
        rule.mirror_percent = Some(0);
        assert_eq!(Mirror::route_share(&rule), None, "explicit 0: off");
        rule.mirror_percent = Some(25);
        assert_eq!(Mirror::route_share(&rule), Some(250_000));
        rule.mirror_percentage = Some(Percent { value: 0.5 });
        assert_eq!(
            Mirror::route_share(&rule),
            Some(5_000),
            "mirrorPercentage wins"
        );
        rule.mirror_percentage = Some(Percent { value: 0.0 });
        assert_eq!(Mirror::route_share(&rule), None);
        let policy = HttpMirrorPolicy::default();
        assert_eq!(Mirror::policy_share(&policy), Some(MILLION));
    }
}
