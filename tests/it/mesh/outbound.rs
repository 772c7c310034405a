//! `outboundTrafficPolicy.mode` from the mesh file on an egress gateway, changed live; an
//! explicit `--outbound-policy` wins over the file.

use super::*;
use crate::egress::{egress_gateway, egress_with, get_absolute};

/// A mesh edit from REGISTRY_ONLY to ALLOW_ANY opens the door to unregistered hosts (as
/// `--outbound-policy ALLOW_ANY` does; see egress::refusals).
#[tokio::test]
async fn a_mesh_file_edit_changes_the_outbound_traffic_policy() {
    let anywhere = Backend::http("anywhere").await;
    let target = format!("localhost:{}", anywhere.port());
    let mesh = MeshDir::new("outboundTrafficPolicy:\n  mode: REGISTRY_ONLY\n");
    let path = mesh.path();
    let eg = egress_with(&[&egress_gateway()], &["--mesh", &path]).await;
    assert_ne!(get_absolute(&eg, &target, "/x").await.status, 200);

    mesh.write("outboundTrafficPolicy:\n  mode: ALLOW_ANY\n");
    // The egress harness runs with --watch false: SIGHUP reloads, mesh file included.
    eg.gw.sighup();
    eventually(APPLY, "ALLOW_ANY from the mesh file", async || {
        get_absolute(&eg, &target, "/x").await.status == 200
    })
    .await;
}

/// `--outbound-policy` given on the command line wins over the mesh file.
#[tokio::test]
async fn the_outbound_policy_flag_wins_over_the_mesh_file() {
    let anywhere = Backend::http("anywhere").await;
    let target = format!("localhost:{}", anywhere.port());
    let mesh = MeshDir::new("outboundTrafficPolicy:\n  mode: ALLOW_ANY\n");
    let path = mesh.path();
    let flags = [
        "--mesh",
        path.as_str(),
        "--outbound-policy",
        "REGISTRY_ONLY",
    ];
    let eg = egress_with(&[&egress_gateway()], &flags).await;
    assert_eq!(get_absolute(&eg, &target, "/x").await.status, 403);
}
