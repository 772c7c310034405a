//! A tiny Go `text/template` expander for Istio's xDS benchmark configs: exactly what they use,
//! `{{- range $i := until .Services }} … {{- end }}` (nestable), `{{$i}}`, `{{div $i 255 }}`,
//! `{{mod $i 255 }}`, `{{mod $j $.Services}}`, with `{{-` / `-}}` trimming whitespace.

use std::collections::HashMap;

/// The template's data: `.Services` and `.Instances`.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub services: i64,
    pub instances: i64,
}

enum Token {
    Text(String),
    Action(String),
}

enum Node {
    Text(String),
    Expr(Vec<String>),
    Range {
        var: String,
        count: Vec<String>,
        body: Vec<Node>,
    },
}

/// Splits into text and actions, applying `{{-` (trim whitespace before) and `-}}` (after).
fn tokenize(src: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while let Some(open) = rest.find("{{") {
        let mut text = rest[..open].to_string();
        if trim_next {
            text = text.trim_start().to_string();
        }
        let after = &rest[open + 2..];
        let close = after.find("}}").ok_or("unclosed {{")?;
        let mut action = &after[..close];
        if let Some(a) = action.strip_prefix('-') {
            if a.starts_with(char::is_whitespace) {
                text = text.trim_end().to_string();
                action = a;
            }
        }
        trim_next = false;
        if let Some(a) = action.strip_suffix('-') {
            if a.ends_with(char::is_whitespace) {
                trim_next = true;
                action = a;
            }
        }
        tokens.push(Token::Text(text));
        tokens.push(Token::Action(action.trim().to_string()));
        rest = &after[close + 2..];
    }
    let text = if trim_next { rest.trim_start() } else { rest };
    tokens.push(Token::Text(text.to_string()));
    Ok(tokens)
}

fn parse(
    tokens: &mut std::iter::Peekable<std::vec::IntoIter<Token>>,
    nested: bool,
) -> Result<Vec<Node>, String> {
    let mut nodes = Vec::new();
    while let Some(tok) = tokens.next() {
        match tok {
            Token::Text(t) => nodes.push(Node::Text(t)),
            Token::Action(a) => {
                let words: Vec<String> = a.split_whitespace().map(str::to_string).collect();
                match words.first().map(String::as_str) {
                    Some("end") if nested => return Ok(nodes),
                    Some("end") => return Err("{{end}} without {{range}}".into()),
                    Some("range") => {
                        // range $i := until .Services
                        if words.len() < 5 || words[2] != ":=" || words[3] != "until" {
                            return Err(format!("unsupported range `{a}`"));
                        }
                        let body = parse(tokens, true)?;
                        nodes.push(Node::Range {
                            var: words[1].clone(),
                            count: words[4..].to_vec(),
                            body,
                        });
                    }
                    Some(_) => nodes.push(Node::Expr(words)),
                    None => return Err("empty action".into()),
                }
            }
        }
    }
    if nested {
        Err("{{range}} without {{end}}".into())
    } else {
        Ok(nodes)
    }
}

struct Scope {
    params: Params,
    vars: HashMap<String, i64>,
    /// `.` inside a range is the element, outside it is the root data.
    dot: Option<i64>,
}

impl Scope {
    fn value(&self, word: &str) -> Result<i64, String> {
        let field = |name: &str| match name {
            "Services" => Ok(self.params.services),
            "Instances" => Ok(self.params.instances),
            other => Err(format!("unknown field .{other}")),
        };
        if let Some(f) = word.strip_prefix("$.") {
            return field(f);
        }
        if let Some(f) = word.strip_prefix('.') {
            return match self.dot {
                None => field(f),
                Some(_) => Err(format!(
                    "`.{f}` inside range: `.` is the element there (use $.{f})"
                )),
            };
        }
        if word.starts_with('$') {
            return self
                .vars
                .get(word)
                .copied()
                .ok_or(format!("undefined variable {word}"));
        }
        word.parse()
            .map_err(|_| format!("unsupported operand `{word}`"))
    }

    fn eval(&self, words: &[String]) -> Result<i64, String> {
        match words {
            [single] => self.value(single),
            [f, a, b] if f == "div" || f == "mod" => {
                let (a, b) = (self.value(a)?, self.value(b)?);
                if b == 0 {
                    return Err(format!("{f} by zero"));
                }
                Ok(if f == "div" { a / b } else { a % b })
            }
            _ => Err(format!("unsupported expression `{}`", words.join(" "))),
        }
    }
}

fn render(nodes: &[Node], scope: &mut Scope, out: &mut String) -> Result<(), String> {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Expr(words) => out.push_str(&scope.eval(words)?.to_string()),
            Node::Range { var, count, body } => {
                let n = scope.eval(count)?;
                let saved_dot = scope.dot;
                let saved_var = scope.vars.get(var).copied();
                for i in 0..n {
                    scope.vars.insert(var.clone(), i);
                    scope.dot = Some(i);
                    render(body, scope, out)?;
                }
                scope.dot = saved_dot;
                match saved_var {
                    Some(v) => scope.vars.insert(var.clone(), v),
                    None => scope.vars.remove(var),
                };
            }
        }
    }
    Ok(())
}

/// Expands `template` with `params`.
pub fn expand(template: &str, params: Params) -> Result<String, String> {
    let mut tokens = tokenize(template)?.into_iter().peekable();
    let nodes = parse(&mut tokens, false)?;
    let mut scope = Scope {
        params,
        vars: HashMap::new(),
        dot: None,
    };
    let mut out = String::new();
    render(&nodes, &mut scope, &mut out)?;
    Ok(out)
}

#[test]
fn expands_ranges_arithmetic_and_trimming() {
    let p = Params {
        services: 3,
        instances: 2,
    };
    assert_eq!(
        expand("a\n---\n{{- range $i := until .Services }}\nx: {{$i}}/{{div $i 2 }}/{{mod $i 2 }}\n---\n{{- end }}", p).unwrap(),
        "a\n---\nx: 0/0/0\n---\nx: 1/0/1\n---\nx: 2/1/0\n---"
    );
    assert_eq!(
        expand("{{- range $j := until .Instances }}[{{- range $i := until $.Services }} {{$j}}{{$i}}{{mod $i $.Services}}{{- end }}]{{- end }}", p).unwrap(),
        "[ 000 011 022][ 100 111 122]"
    );
    assert_eq!(expand("a  {{ 1 -}}   b", p).unwrap(), "a  1b");
    assert!(expand(
        "{{- range $i := until .Services }}{{.Services}}{{- end }}",
        p
    )
    .is_err());
    assert!(expand("{{- range $i := until .Services }}", p).is_err());
}
