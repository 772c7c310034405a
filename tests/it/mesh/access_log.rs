//! The access log from the mesh file: `accessLogFile` ("" off, /dev/stdout, a path reopened
//! after logrotate renames it), `accessLogEncoding`, `accessLogFormat` with Envoy's operators
//! (pilot/pkg/model/telemetry_logging.go `FileAccessLogFromMeshConfig`), and live edits.

use super::*;
use crate::support::cli::run_cli;

fn text_format(tag: &str) -> String {
    format!(
        "accessLogFile: /dev/stdout\naccessLogFormat: '{tag} %REQ(X-TEST-ID)% %RESPONSE_CODE%'\n"
    )
}

/// A mesh-file edit changes the access log of a running gateway, without a restart.
#[tokio::test]
async fn a_mesh_file_edit_changes_the_access_log_format_of_a_running_gateway() {
    let mesh = MeshDir::new(&text_format("fmt-one"));
    let h = gateway_with_mesh(&mesh, &[]).await;
    let id = request_id();
    get_with_id(&h, &id, &[]).await;
    h.gw.wait_for_log(&format!("fmt-one {id} 200"), WAIT).await;

    let generation = h.generation().await;
    mesh.write(&text_format("fmt-two"));
    let status = h.wait_generation_after(generation, APPLY).await;
    assert!(
        status
            .last_changes
            .modified
            .contains(&"MeshConfig mesh".to_string()),
        "{status:?}"
    );
    let id = request_id();
    get_with_id(&h, &id, &[]).await;
    h.gw.wait_for_log(&format!("fmt-two {id} 200"), WAIT).await;
}

/// A broken mesh file is reported with its file, line and field; the last good settings keep
/// serving (as a config file that stops parsing keeps its last good contents: issue 10's
/// isolation), and `/reload` names the mesh file among the stale files.
#[tokio::test]
async fn a_broken_mesh_file_keeps_the_last_good_settings() {
    let mesh = MeshDir::new(&text_format("good"));
    let h = gateway_with_mesh(&mesh, &[]).await;
    let generation = h.generation().await;
    // Envoy refuses an unknown command operator (source/common/formatter/).
    mesh.write("accessLogFile: /dev/stdout\naccessLogFormat: 'bad %NOT_AN_OPERATOR%'\n");
    let status = h.wait_generation_after(generation, APPLY).await;
    assert_eq!(status.last_result, "partial", "{status:?}");
    assert_eq!(
        status.left_out.stale_files[0].file,
        mesh.path(),
        "{status:?}"
    );
    let error = status.last_error.unwrap_or_default();
    assert!(
        error.contains(
            "mesh:2: Error accessLogFormat: unknown command operator `%NOT_AN_OPERATOR%`"
        ),
        "{error}"
    );
    let id = request_id();
    get_with_id(&h, &id, &[]).await;
    h.gw.wait_for_log(&format!("good {id} 200"), WAIT).await;

    // A value Istio's schema does not have: also reported, at its line.
    mesh.write("accessLogFile: /dev/stdout\noutboundTrafficPolicy:\n  mode: SOMETIMES\n");
    let status = h.wait_generation_after(status.generation, APPLY).await;
    let error = status.last_error.unwrap_or_default();
    assert!(
        error.contains("mesh:3: Error outboundTrafficPolicy.mode: unknown variant `SOMETIMES`"),
        "{error}"
    );
    let id = request_id();
    get_with_id(&h, &id, &[]).await;
    h.gw.wait_for_log(&format!("good {id} 200"), WAIT).await;
}

/// `accessLogFile: ""` (Istio's default) writes nothing; lines appear once it is set again.
#[tokio::test]
async fn an_empty_access_log_file_turns_the_access_log_off() {
    let mesh = MeshDir::new("accessLogFile: ''\n");
    let h = gateway_with_mesh(&mesh, &[]).await;
    let unlogged = request_id();
    get_with_id(&h, &unlogged, &[]).await;
    let generation = h.generation().await;
    mesh.write("accessLogFile: /dev/stdout\n");
    h.wait_generation_after(generation, APPLY).await;
    let logged = request_id();
    get_with_id(&h, &logged, &[]).await;
    h.gw.wait_for_log(&logged, WAIT).await;
    // One writer, in order: had the first request been logged, it would be there by now.
    assert!(
        !h.gw.logs_contain(&unlogged),
        "a request was logged with accessLogFile: \"\""
    );
}

/// A file path: lines go to the file; after logrotate renames it, the file is created again
/// at the path and new lines go there.
#[tokio::test]
async fn the_access_log_file_is_reopened_after_it_is_rotated() {
    let logs = ConfigDir::new();
    let path = logs.file("access.log");
    let mesh = MeshDir::new(&format!("accessLogFile: {}\n", path.display()));
    let h = gateway_with_mesh(&mesh, &[]).await;
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();

    let first = request_id();
    get_with_id(&h, &first, &[]).await;
    eventually(WAIT, "the first line in the file", async || {
        read(&path).contains(&first)
    })
    .await;
    let line = read(&path);
    assert!(line.starts_with('['), "Istio's text format: {line}");
    assert!(!h.gw.logs_contain(&first), "the line went to stdout too");

    let rotated = logs.file("access.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    let second = request_id();
    get_with_id(&h, &second, &[]).await;
    eventually(
        WAIT,
        "the second line in a new file at the path",
        async || read(&path).contains(&second),
    )
    .await;
    assert!(read(&rotated).contains(&first));
    assert!(!read(&rotated).contains(&second));
}

/// JSON encoding: Istio's default object, typed as Envoy types it; and a custom object.
#[tokio::test]
async fn json_encoding_logs_istios_object_or_the_one_given() {
    let mesh = MeshDir::new("accessLogFile: /dev/stdout\naccessLogEncoding: JSON\n");
    let h = gateway_with_mesh(&mesh, &[]).await;
    let id = request_id();
    get_with_id(&h, &id, &[]).await;
    let line = access_line(&h, &id).await;
    assert_eq!(line.get("response_code"), "200");
    assert_eq!(line.get("route_name"), "logged");
    let raw = h.gw.wait_for_log(&id, WAIT).await;
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        v["response_code"], 200,
        "a number, as Envoy's typed JSON: {raw}"
    );
    assert_eq!(v["requested_server_name"], serde_json::Value::Null, "{raw}");

    let generation = h.generation().await;
    mesh.write(
        "accessLogFile: /dev/stdout\naccessLogEncoding: JSON\naccessLogFormat: |\n  {\"code\": \"%RESPONSE_CODE%\", \"rid\": \"%REQ(X-TEST-ID)%\", \"who\": \"%RESP(X-BACKEND)%\", \"fixed\": 1}\n",
    );
    h.wait_generation_after(generation, APPLY).await;
    let id = request_id();
    get_with_id(&h, &id, &[]).await;
    let raw = h.gw.wait_for_log(&format!("\"rid\":\"{id}\""), WAIT).await;
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"code": 200, "rid": id, "who": "be", "fixed": 1})
    );
}

/// Envoy's command operators in a custom TEXT format: request and response headers (with an
/// alternative and a length limit), status, flags, duration, upstream, route, protocol.
#[tokio::test]
async fn a_custom_text_format_renders_envoys_operators() {
    let format = "op %REQ(X-TEST-ID)% [%REQ(X-MISSING?USER-AGENT):8%] %RESP(X-BACKEND)% %RESPONSE_CODE% %RESPONSE_FLAGS% %DURATION% %UPSTREAM_HOST% %UPSTREAM_CLUSTER% %ROUTE_NAME% %PROTOCOL% %REQ(:METHOD)% %REQ(:AUTHORITY)% %REQ_WITHOUT_QUERY(:PATH)% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %UPSTREAM_REQUEST_ATTEMPT_COUNT% 100%% end";
    let mesh = MeshDir::new(&format!(
        "accessLogFile: /dev/stdout\naccessLogFormat: '{format}'\n"
    ));
    let h = gateway_with_mesh(&mesh, &[]).await;
    let be = h.backend("be").addr();
    let id = request_id();
    let r = send(
        h.request(reqwest::Method::GET, "mesh.example.com", "/p?q=1")
            .header("x-test-id", &id)
            .header("user-agent", "agent-with-a-long-name"),
    )
    .await;
    assert_eq!(r.status(), 200);
    let line = h.gw.wait_for_log(&format!("op {id} "), WAIT).await;
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(fields[2], "[agent-wi]", "{line}");
    assert_eq!(fields[3], "be", "{line}");
    assert_eq!(&fields[4..6], ["200", "-"], "{line}");
    assert!(fields[6].parse::<u64>().is_ok(), "{line}");
    assert_eq!(fields[7], be.to_string(), "{line}");
    assert_eq!(fields[8], format!("outbound|80||{}", svc("be")), "{line}");
    assert_eq!(
        &fields[9..],
        [
            "logged",
            "HTTP/1.1",
            "GET",
            "mesh.example.com",
            "/p",
            "127.0.0.1",
            "1",
            "100%",
            "end"
        ],
        "{line}"
    );
}

/// `check --mesh` validates the mesh file as Istio would and names every field it ignores.
#[tokio::test]
async fn check_validates_the_mesh_file() {
    let config = ConfigDir::new();
    let mesh = MeshDir::new(
        "enableAutoMtls: true\naccessLogFile: /dev/stdout\ndefaultConfig:\n  drainDuration: 1500ms\n  gatewayTopology:\n    numTrustedProxies: 1\n",
    );
    let cfg = config.path().to_string_lossy().into_owned();
    let path = mesh.path();
    let (code, out, _) = run_cli(&["check", "--config", &cfg, "--mesh", &path]).await;
    assert_eq!(code, 1, "{out}");
    // pkg/config/validation/agent/validation.go ValidateDrainDuration.
    assert!(out.contains(&format!("{path}:4: Error defaultConfig.drainDuration: drain time only supports durations to seconds precision")), "{out}");
    assert!(
        out.contains(&format!(
            "{path}:1: Warning enableAutoMtls: `enableAutoMtls` is not supported by Portcullis"
        )),
        "{out}"
    );

    mesh.write("accessLogFile: /dev/stdout\ndefaultConfig:\n  drainDuration: 20s\n");
    let (code, out, _) = run_cli(&["check", "--config", &cfg, "--mesh", &path]).await;
    assert_eq!(code, 0, "{out}");
}
