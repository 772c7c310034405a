//! Hostile config files: nesting depth and document size are checked before the YAML parser
//! runs (60,000 nested flow sequences kept libyaml's scanner busy for ~10 s, and every later
//! reload waited behind it), and a value echoed in a diagnostic is shortened (a 10 MB host name
//! made a 10 MB line in `check` and in `/reload`).

use super::*;
use crate::support::cli::run_check;

fn nested_flow_sequences(depth: usize) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: deep}}\nspec:\n  hosts: {}a{}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

fn entry_with_host(host: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: big}}\nspec:\n  hosts: [\"{host}\"]\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n  resolution: DNS\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_yaml_is_refused_before_parsing_and_later_reloads_go_on() {
    let h = answering_200(&[]).await;
    let before = h.reload_status().await;
    h.config.write("deep.yaml", &nested_flow_sequences(60_000));
    // Isolation (issue 10): the document is left out and the rest keeps serving.
    let partial = h.wait_generation_after(before.generation, WAIT).await;
    assert_eq!(partial.last_result, "partial", "{partial:?}");
    let error = partial.last_error.unwrap_or_default();
    assert!(
        error.contains(
            "deep.yaml:5: Error document not read: mappings and sequences nest deeper than 64 levels"
        ),
        "{error}"
    );
    assert_eq!(h.raw_get("a.example", "/", "").await.status, 200);
    // The next change is served as usual.
    h.config.remove("deep.yaml");
    let ok = h.wait_generation_after(partial.generation, WAIT).await;
    assert_eq!(ok.last_result, "ok", "{ok:?}");
    let r = h.raw_get("a.example", "/", "").await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_value_is_shortened_in_check_output_and_reload_status() {
    let host = "h".repeat(10_000_000);
    let dir = ConfigDir::new();
    dir.write("se.yaml", &entry_with_host(&host));
    let (code, stdout, stderr) = run_check(dir.path(), None).await;
    assert_eq!(code, 1, "{stderr}");
    let longest = stdout.lines().chain(stderr.lines()).map(str::len).max();
    assert!(longest < Some(2048), "a {longest:?}-byte diagnostic line");
    assert!(stdout.contains("bytes left out"), "{stdout}");

    let h = answering_200(&[]).await;
    let before = h.reload_status().await;
    h.config.write("se.yaml", &entry_with_host(&host));
    // Isolation (issue 10): the ServiceEntry is left out, the rest is served.
    let partial = h.wait_generation_after(before.generation, WAIT).await;
    assert_eq!(partial.last_result, "partial", "{partial:?}");
    let error = partial.last_error.unwrap_or_default();
    assert!(error.len() < 4096, "a {}-byte /reload error", error.len());
    assert!(error.contains("bytes left out"), "{error}");
    let message = &partial.left_out.resources[0].message;
    assert!(
        message.len() < 2048,
        "a {}-byte left_out message",
        message.len()
    );
}
