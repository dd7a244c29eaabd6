//! `deploy/Dockerfile`: the image's entrypoint, default command and
//! exposed ports, read from the instructions of its last stage.

use crate::read;

pub const DOCKERFILE: &str = "deploy/Dockerfile";

/// What the runtime stage says.
#[derive(Debug, Clone)]
pub struct Dockerfile {
    /// `ENTRYPOINT [...]`.
    pub entrypoint: Vec<String>,
    /// The entrypoint after the program (arguments every command gets).
    pub entrypoint_args: Vec<String>,
    /// `CMD [...]`.
    pub cmd: Vec<String>,
    /// `EXPOSE` ports.
    pub expose: Vec<u16>,
    /// The whole text, for the build checks.
    pub text: String,
}

/// Reads the Dockerfile; instructions of the last `FROM` stage count.
pub fn load() -> Dockerfile {
    let text = read(DOCKERFILE);
    // Join continuation lines, drop comments.
    let mut lines: Vec<String> = Vec::new();
    let mut cur = String::new();
    for raw in text.lines() {
        let l = raw.trim();
        if l.starts_with('#') || l.is_empty() {
            continue;
        }
        if let Some(head) = l.strip_suffix('\\') {
            cur.push_str(head);
            cur.push(' ');
        } else {
            cur.push_str(l);
            lines.push(std::mem::take(&mut cur));
        }
    }
    let last_stage = lines
        .iter()
        .rposition(|l| l.to_ascii_uppercase().starts_with("FROM "))
        .unwrap_or(0);
    let mut d = Dockerfile {
        entrypoint: Vec::new(),
        entrypoint_args: Vec::new(),
        cmd: Vec::new(),
        expose: Vec::new(),
        text: text.clone(),
    };
    for l in &lines[last_stage..] {
        let (instr, rest) = l.split_once(' ').unwrap_or((l, ""));
        match instr.to_ascii_uppercase().as_str() {
            "ENTRYPOINT" => d.entrypoint = exec_form(rest),
            "CMD" => d.cmd = exec_form(rest),
            "EXPOSE" => d.expose.extend(rest.split_whitespace().map(|p| {
                p.split('/')
                    .next()
                    .unwrap_or_default()
                    .parse::<u16>()
                    .unwrap_or_else(|_| panic!("{DOCKERFILE}: EXPOSE {p:?} is not a port"))
            })),
            _ => {}
        }
    }
    d.entrypoint_args = d.entrypoint.iter().skip(1).cloned().collect();
    d
}

/// `["a", "b"]` (exec form); the shell form would run under `sh -c`,
/// which never forwards SIGTERM to Herald, so it is refused.
fn exec_form(rest: &str) -> Vec<String> {
    serde_json::from_str(rest.trim()).unwrap_or_else(|_| {
        panic!("{DOCKERFILE}: `{rest}` is not the exec form [\"...\"]: in the shell form /bin/sh gets SIGTERM, not herald")
    })
}
