//! Reading the mesh file: YAML → [`MeshConfig`], with the file and line of every problem. A
//! field Istio defines but Portcullis does not honour, and a field Istio does not define, are
//! both warnings naming the field (a mesh file shared with istiod carries many of the former).

use std::path::Path;
use std::sync::Arc;

use super::{MeshConfig, UNSUPPORTED_MESH_FIELDS, UNSUPPORTED_PROXY_FIELDS};
use crate::config::diag::{Diagnostic, Diagnostics, Reporter};
use crate::config::load::{ignored_path, yaml_error_message};
use crate::config::source::{DocSpan, Origin, SourceFile};

/// A parsed mesh file and where it came from (for diagnostics).
#[derive(Debug, Clone)]
pub struct MeshFile {
    pub config: MeshConfig,
    pub origin: Origin,
}

impl MeshFile {
    /// Reports problems about fields of this file.
    pub fn reporter<'a>(&self, out: &'a mut Vec<Diagnostic>) -> Reporter<'a> {
        Reporter::new(out, Some(self.origin.clone()), None)
    }
}

/// Reads and parses `path`. `None` when the file cannot be read or parsed (the diagnostics
/// say why); warnings come back either way.
pub fn load_mesh(path: &Path) -> (Option<MeshFile>, Diagnostics) {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_mesh(SourceFile {
            display: path.display().to_string(),
            path: path.to_path_buf(),
            text,
        }),
        Err(e) => (
            None,
            Diagnostics(vec![Diagnostic::config_error(format!(
                "cannot read the mesh file {}: {e}",
                path.display()
            ))]),
        ),
    }
}

/// Parses a mesh file already read (also for tests). An empty file is Istio's defaults.
pub fn parse_mesh(file: SourceFile) -> (Option<MeshFile>, Diagnostics) {
    let lines = file.text.lines().count().max(1);
    let origin = Origin {
        doc: DocSpan {
            index: 0,
            bytes: 0..file.text.len(),
            first_line: 1,
        },
        file: Arc::new(file),
        item: None,
    };
    let mut diags = Vec::new();
    let mut report = Reporter::new(&mut diags, Some(origin.clone()), None);
    let value: serde_yaml::Value = match serde_yaml::from_str(&origin.file.text) {
        Ok(v) => v,
        Err(e) => {
            // The line serde_yaml found, as a field path cannot be had from broken YAML.
            let line = e.location().map_or(1, |l| l.line()).min(lines);
            let at = Origin {
                doc: DocSpan {
                    index: 0,
                    bytes: line_start(&origin.file.text, line)..origin.file.text.len(),
                    first_line: line,
                },
                ..origin.clone()
            };
            Reporter::new(&mut diags, Some(at), None)
                .error_config("", format!("not valid YAML: {}", yaml_error_message(&e)));
            return (None, Diagnostics(diags));
        }
    };
    if value.is_null() {
        return (
            Some(MeshFile {
                config: MeshConfig::default(),
                origin,
            }),
            Diagnostics(diags),
        );
    }
    let mut ignored = Vec::new();
    let parsed: Result<MeshConfig, _> = {
        let mut record = |p: serde_ignored::Path| ignored.push(ignored_path(&p));
        let de = serde_ignored::Deserializer::new(value, &mut record);
        serde_path_to_error::deserialize(de)
    };
    for path in ignored {
        report.note(path.clone(), ignored_message(&path));
    }
    match parsed {
        Ok(config) => (Some(MeshFile { config, origin }), Diagnostics(diags)),
        Err(e) => {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            report.error_config(path, e.inner().to_string());
            (None, Diagnostics(diags))
        }
    }
}

fn line_start(text: &str, line: usize) -> usize {
    text.split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum()
}

/// "not supported" for a field Istio defines, "unknown" for one it does not.
fn ignored_message(path: &str) -> String {
    let field = path.rsplit_once('.').map_or(path, |(_, f)| f);
    let istio_defines = match path.split_once('.') {
        None => UNSUPPORTED_MESH_FIELDS.contains(&path),
        Some(("defaultConfig", rest)) if !rest.contains('.') => {
            UNSUPPORTED_PROXY_FIELDS.contains(&rest)
        }
        _ => false,
    };
    if istio_defines {
        format!("`{field}` is not supported by Portcullis and is ignored")
    } else {
        format!(
            "unknown field `{field}` is ignored (check its spelling against Istio's MeshConfig)"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::mesh::{ForwardClientCert, OutboundMode};

    fn parse(text: &str) -> (Option<MeshFile>, Diagnostics) {
        parse_mesh(SourceFile {
            display: "mesh.yaml".into(),
            path: "mesh.yaml".into(),
            text: text.into(),
        })
    }

    #[test]
    fn reads_the_fields_of_an_istio_mesh_document() {
        let (mesh, diags) = parse(
            "accessLogFile: /dev/stdout\naccessLogEncoding: JSON\noutboundTrafficPolicy:\n  mode: REGISTRY_ONLY\ndefaultConfig:\n  drainDuration: 30s\n  gatewayTopology:\n    numTrustedProxies: 2\n    forwardClientCertDetails: APPEND_FORWARD\n    proxyProtocol: {}\n",
        );
        assert!(diags.0.is_empty(), "{diags}");
        let m = mesh.unwrap().config;
        assert_eq!(m.access_log_file.as_deref(), Some("/dev/stdout"));
        assert_eq!(
            m.outbound_traffic_policy.unwrap().mode,
            Some(OutboundMode::RegistryOnly)
        );
        let pc = m.default_config.unwrap();
        assert_eq!(pc.drain_duration.unwrap().get().as_secs(), 30);
        let topo = pc.gateway_topology.unwrap();
        assert_eq!(topo.num_trusted_proxies, Some(2));
        assert_eq!(
            topo.forward_client_cert_details,
            Some(ForwardClientCert::AppendForward)
        );
        assert!(topo.proxy_protocol.is_some());
    }

    #[test]
    fn fields_portcullis_does_not_honour_are_warned_by_name_and_line() {
        let (mesh, diags) = parse(
            "enableAutoMtls: true\naccessLogFile: ''\ndefaultConfig:\n  concurrency: 2\n  drainDurationn: 5s\n",
        );
        assert!(mesh.is_some());
        let text = diags.to_string();
        assert!(
            text.contains("mesh.yaml:1: Warning enableAutoMtls: `enableAutoMtls` is not supported by Portcullis"),
            "{text}"
        );
        assert!(
            text.contains(
                "mesh.yaml:4: Warning defaultConfig.concurrency: `concurrency` is not supported"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "mesh.yaml:5: Warning defaultConfig.drainDurationn: unknown field `drainDurationn`"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_bad_value_is_an_error_at_its_field() {
        let (mesh, diags) = parse("accessLogFile: ''\noutboundTrafficPolicy:\n  mode: SOMETIMES\n");
        assert!(mesh.is_none());
        let text = diags.to_string();
        assert!(
            text.starts_with(
                "mesh.yaml:3: Error outboundTrafficPolicy.mode: unknown variant `SOMETIMES`"
            ),
            "{text}"
        );
    }

    #[test]
    fn broken_yaml_is_an_error_at_its_line() {
        let (mesh, diags) = parse("accessLogFile: /dev/stdout\ndefaultConfig: [\n");
        assert!(mesh.is_none());
        assert!(diags.has_errors());
        assert!(diags.to_string().starts_with("mesh.yaml:"), "{diags}");
    }

    #[test]
    fn an_empty_file_is_istios_defaults() {
        let (mesh, diags) = parse("# nothing\n");
        assert!(diags.0.is_empty());
        assert_eq!(mesh.unwrap().config, MeshConfig::default());
    }
}
