//! The `herald` command line as its clap derive definitions say, read as
//! text from `crates/*/src` (this test can't link the `herald` binary
//! crate), and a check of one argument vector against it.
//!
//! Understood: `#[derive(Subcommand)]` enums (variant names in kebab case,
//! `#[command(name = ...)]`, tuple and struct variants, `flatten` and
//! `subcommand` fields), `#[derive(Args)]` structs (`long`, `long = "x"`,
//! `short`, `alias`, `env = "X"`, `default_value[_t]`, `global`), `bool`
//! fields as switches and fields without `long`/`short` as positionals.
//! Types are resolved lazily, so only the commands the deploy files run
//! need to be understood.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One flag or positional of a subcommand.
#[derive(Debug, Clone)]
pub struct ArgSpec {
    /// The Rust field name.
    pub field: String,
    /// `--long` names (with aliases), empty for positionals and short-only flags.
    pub longs: Vec<String>,
    /// `-s`.
    pub short: Option<char>,
    /// Takes a value (everything but `bool`).
    pub takes_value: bool,
    /// `env = "..."`: the variable clap reads when the flag is absent.
    pub env: Option<String>,
    /// `default_value` / `default_value_t`, as written.
    pub default: Option<String>,
    /// Positional (neither `long` nor `short`).
    pub positional: bool,
    /// `global = true`: also accepted after a nested subcommand.
    pub global: bool,
}

impl ArgSpec {
    /// `--name` for messages.
    pub fn display(&self) -> String {
        match (self.longs.first(), self.short) {
            (Some(l), _) => format!("--{l}"),
            (None, Some(s)) => format!("-{s}"),
            (None, None) => format!("<{}>", self.field),
        }
    }
}

/// A parsed invocation: which subcommand, with which flags.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// Subcommand path, e.g. `["dispatch"]` or `["endpoint", "create"]`.
    pub path: Vec<String>,
    /// Flags given, by their first long name (or field name), with the value.
    pub flags: BTreeMap<String, Option<String>>,
    /// Every argument the subcommand accepts (for defaults and env names).
    pub specs: Vec<ArgSpec>,
}

impl Invocation {
    /// The value of `--long` as given, else its default.
    pub fn value(&self, long: &str) -> Option<String> {
        if let Some(v) = self.flags.get(long) {
            return v.clone();
        }
        self.specs
            .iter()
            .find(|s| s.longs.iter().any(|l| l == long))
            .and_then(|s| s.default.clone())
    }

    /// Environment variables clap reads for this subcommand.
    pub fn env_names(&self) -> Vec<String> {
        self.specs.iter().filter_map(|s| s.env.clone()).collect()
    }
}

/// The clap model: source files of the crates the binary is made of.
pub struct Cli {
    sources: Vec<(PathBuf, String)>,
    root_enum: String,
}

impl Cli {
    /// Reads every `.rs` file under `crates/*/src` and finds the root
    /// subcommand enum from `crates/herald/src/cli.rs`'s `#[derive(Parser)]`.
    pub fn load(repo: &Path) -> Cli {
        let mut sources = Vec::new();
        let crates = repo.join("crates");
        for entry in std::fs::read_dir(&crates).expect("read crates/") {
            let src = entry.expect("dir entry").path().join("src");
            if src.is_dir() {
                collect_rs(&src, &mut sources);
            }
        }
        let cli_rs = repo.join("crates/herald/src/cli.rs");
        let text = std::fs::read_to_string(&cli_rs)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", cli_rs.display()));
        let parser = find_item(&text, "struct", None)
            .into_iter()
            .find(|(attrs, _, _)| attrs.iter().any(|a| a.contains("Parser")))
            .unwrap_or_else(|| panic!("crates/herald/src/cli.rs: no `#[derive(Parser)]` struct"));
        let fields = split_items(&parser.2);
        let root_enum = fields
            .iter()
            .find(|f| f.attrs.iter().any(|a| is_attr(a, "command") && a.contains("subcommand")))
            .map(|f| field_type(&f.text).1)
            .unwrap_or_else(|| {
                panic!("crates/herald/src/cli.rs: the Parser struct has no #[command(subcommand)] field")
            });
        Cli {
            sources,
            root_enum: last_segment(&root_enum),
        }
    }

    /// The names of the top-level subcommands (hidden ones included).
    pub fn subcommands(&self) -> Vec<String> {
        self.variants(&self.root_enum)
            .expect("the root enum")
            .into_iter()
            .map(|v| v.name)
            .collect()
    }

    /// Checks `argv` (without the program name) against the definitions.
    pub fn check(&self, argv: &[String]) -> Result<Invocation, String> {
        let mut enum_name = Some(self.root_enum.clone());
        let mut path: Vec<String> = Vec::new();
        let mut specs: Vec<ArgSpec> = Vec::new();
        let mut flags = BTreeMap::new();
        let mut positionals = 0usize;
        let mut i = 0;
        let mut only_positionals = false;
        let builtin = ["help", "version"];
        while i < argv.len() {
            let tok = &argv[i];
            i += 1;
            if !only_positionals && tok == "--" {
                only_positionals = true;
                continue;
            }
            if !only_positionals && tok.starts_with("--") {
                let body = &tok[2..];
                let (name, inline) = match body.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_string())),
                    None => (body, None),
                };
                if builtin.contains(&name) {
                    continue;
                }
                let spec = specs
                    .iter()
                    .find(|s| s.longs.iter().any(|l| l == name))
                    .cloned()
                    .ok_or_else(|| {
                        format!(
                            "`herald {}` has no flag --{name} (it takes: {})",
                            path.join(" "),
                            list_flags(&specs)
                        )
                    })?;
                let value = if spec.takes_value {
                    match inline {
                        Some(v) => Some(v),
                        None => {
                            let v = argv.get(i).cloned().ok_or_else(|| {
                                format!(
                                    "`herald {}`: {} needs a value",
                                    path.join(" "),
                                    spec.display()
                                )
                            })?;
                            i += 1;
                            Some(v)
                        }
                    }
                } else {
                    if inline.is_some() {
                        return Err(format!(
                            "`herald {}`: {} is a switch and takes no value",
                            path.join(" "),
                            spec.display()
                        ));
                    }
                    None
                };
                flags.insert(
                    spec.longs.first().cloned().unwrap_or(spec.field.clone()),
                    value,
                );
                continue;
            }
            if !only_positionals && tok.len() == 2 && tok.starts_with('-') && tok != "-" {
                let c = tok.chars().nth(1).expect("two chars");
                if c == 'h' || c == 'V' {
                    continue;
                }
                let spec = specs
                    .iter()
                    .find(|s| s.short == Some(c))
                    .cloned()
                    .ok_or_else(|| format!("`herald {}` has no flag -{c}", path.join(" ")))?;
                let value = if spec.takes_value {
                    let v = argv.get(i).cloned().ok_or_else(|| {
                        format!("`herald {}`: -{c} needs a value", path.join(" "))
                    })?;
                    i += 1;
                    Some(v)
                } else {
                    None
                };
                flags.insert(
                    spec.longs.first().cloned().unwrap_or(spec.field.clone()),
                    value,
                );
                continue;
            }
            // A subcommand name, or a positional.
            if let Some(e) = enum_name.take() {
                let variants = self.variants(&e)?;
                let v = variants
                    .iter()
                    .find(|v| v.name == *tok || v.aliases.contains(tok))
                    .ok_or_else(|| {
                        let names: Vec<_> = variants.iter().map(|v| v.name.as_str()).collect();
                        if path.is_empty() {
                            format!(
                                "`{tok}` is not a herald subcommand (they are: {})",
                                names.join(", ")
                            )
                        } else {
                            format!(
                                "`{tok}` is not a subcommand of `herald {}` (they are: {})",
                                path.join(" "),
                                names.join(", ")
                            )
                        }
                    })?;
                path.push(v.name.clone());
                // Only globals survive into a nested subcommand.
                specs.retain(|s| s.global);
                positionals = 0;
                for t in &v.arg_types {
                    specs.extend(self.args_of_in(t, Some(&v.file))?);
                }
                specs.extend(self.fields_args(&v.fields)?);
                enum_name = v.subcommand.clone();
                continue;
            }
            positionals += 1;
            let allowed = specs.iter().filter(|s| s.positional).count();
            if positionals > allowed {
                return Err(format!(
                    "`herald {}` takes {allowed} positional argument(s); `{tok}` is one too many",
                    path.join(" ")
                ));
            }
        }
        if path.is_empty() {
            return Err("no subcommand: `herald` alone only prints its help".into());
        }
        if let Some(e) = enum_name {
            return Err(format!(
                "`herald {}` needs a subcommand ({})",
                path.join(" "),
                self.variants(&e)?
                    .iter()
                    .map(|v| v.name.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(Invocation { path, flags, specs })
    }

    fn variants(&self, enum_name: &str) -> Result<Vec<Variant>, String> {
        let (file, body) = self.body_in("enum", enum_name, None)?;
        let mut out = Vec::new();
        for item in split_items(&body) {
            let text = item.text.trim();
            let ident: String = text
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if ident.is_empty() {
                continue;
            }
            let rest = text[ident.len()..].trim();
            let mut name = kebab(&ident);
            let mut aliases = Vec::new();
            for a in item.attrs.iter().filter(|a| is_attr(a, "command")) {
                for (k, v) in attr_pairs(a) {
                    match (k.as_str(), v) {
                        ("name", Some(v)) => name = unquote(&v),
                        ("alias" | "visible_alias", Some(v)) => aliases.push(unquote(&v)),
                        _ => {}
                    }
                }
            }
            let mut v = Variant {
                file: file.clone(),
                name,
                aliases,
                arg_types: Vec::new(),
                fields: Vec::new(),
                subcommand: None,
            };
            if let Some(inner) = rest.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
                v.arg_types.push(inner.trim().to_string());
            } else if let Some(inner) = rest.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
                for f in split_items(inner) {
                    if f.attrs
                        .iter()
                        .any(|a| is_attr(a, "command") && a.contains("subcommand"))
                    {
                        v.subcommand = Some(last_segment(&field_type(&f.text).1));
                    } else {
                        v.fields.push(f);
                    }
                }
            }
            out.push(v);
        }
        Ok(out)
    }

    /// The arguments of an `Args` struct (flattened fields included).
    fn args_of(&self, type_name: &str) -> Result<Vec<ArgSpec>, String> {
        self.args_of_in(type_name, None)
    }

    /// [`Cli::args_of`], looking in `prefer` first: two modules may each
    /// have a `CreateArgs`, and a variant means the one beside its enum.
    fn args_of_in(&self, type_name: &str, prefer: Option<&Path>) -> Result<Vec<ArgSpec>, String> {
        let (_, body) = self.body_in("struct", &last_segment(type_name), prefer)?;
        self.fields_args(&split_items(&body))
    }

    fn fields_args(&self, fields: &[Item]) -> Result<Vec<ArgSpec>, String> {
        let mut out = Vec::new();
        for f in fields {
            let (field, ty) = field_type(&f.text);
            if field.is_empty() {
                continue;
            }
            if f.attrs
                .iter()
                .any(|a| is_attr(a, "command") && a.contains("flatten"))
            {
                out.extend(self.args_of(&ty)?);
                continue;
            }
            let mut spec = ArgSpec {
                field: field.clone(),
                longs: Vec::new(),
                short: None,
                takes_value: ty.trim() != "bool",
                env: None,
                default: None,
                positional: true,
                global: false,
            };
            for a in f
                .attrs
                .iter()
                .filter(|a| is_attr(a, "arg") || is_attr(a, "clap"))
            {
                for (k, v) in attr_pairs(a) {
                    match (k.as_str(), v) {
                        ("long", None) => spec.longs.insert(0, field.replace('_', "-")),
                        ("long", Some(v)) => spec.longs.insert(0, unquote(&v)),
                        ("alias" | "visible_alias", Some(v)) => spec.longs.push(unquote(&v)),
                        ("short", None) => spec.short = field.chars().next(),
                        ("short", Some(v)) => spec.short = unquote(&v).chars().next(),
                        ("env", Some(v)) => spec.env = Some(unquote(&v)),
                        ("default_value", Some(v)) => spec.default = Some(unquote(&v)),
                        // `default_value_t = 1_000`: a Rust literal.
                        ("default_value_t", Some(v)) => {
                            spec.default = Some(unquote(&v).replace('_', ""))
                        }
                        ("global", Some(v)) => spec.global = v.trim() == "true",
                        _ => {}
                    }
                }
            }
            spec.positional = spec.longs.is_empty() && spec.short.is_none();
            out.push(spec);
        }
        Ok(out)
    }

    /// The file and `{ ... }` body of `kind name`, in `prefer` if it has
    /// one, else in the first source file that does.
    fn body_in(
        &self,
        kind: &str,
        name: &str,
        prefer: Option<&Path>,
    ) -> Result<(PathBuf, String), String> {
        let preferred = self
            .sources
            .iter()
            .filter(|(p, _)| Some(p.as_path()) == prefer);
        let rest = self
            .sources
            .iter()
            .filter(|(p, _)| Some(p.as_path()) != prefer);
        for (path, text) in preferred.chain(rest) {
            if let Some((_, _, body)) = find_item(text, kind, Some(name)).into_iter().next() {
                return Ok((path.clone(), body));
            }
        }
        Err(format!(
            "no `{kind} {name}` under crates/*/src (the clap definitions moved?)"
        ))
    }
}

/// A subcommand variant.
struct Variant {
    /// The source file of its enum.
    file: PathBuf,
    name: String,
    aliases: Vec<String>,
    /// `Variant(Type)`: the `Args` struct.
    arg_types: Vec<String>,
    /// `Variant { ... }`: its non-subcommand fields.
    fields: Vec<Item>,
    /// The nested `Subcommand` enum, if any.
    subcommand: Option<String>,
}

/// One comma-separated member of a struct or enum body, with its attributes.
#[derive(Debug, Clone)]
struct Item {
    attrs: Vec<String>,
    text: String,
}

fn collect_rs(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
    for entry in std::fs::read_dir(dir).expect("read a source dir") {
        let p = entry.expect("dir entry").path();
        if p.is_dir() {
            collect_rs(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&p).expect("read a source file");
            out.push((p, text));
        }
    }
}

fn list_flags(specs: &[ArgSpec]) -> String {
    let mut v: Vec<String> = specs
        .iter()
        .filter(|s| !s.positional)
        .map(ArgSpec::display)
        .collect();
    v.sort();
    v.join(", ")
}

fn is_attr(attr: &str, name: &str) -> bool {
    attr.trim_start_matches("#[").trim_start().starts_with(name)
        && attr.trim_start_matches("#[").trim_start()[name.len()..]
            .trim_start()
            .starts_with('(')
}

/// `#[arg(long, env = "X", default_value_t = 8)]` → `[("long", None), ("env", Some("\"X\"")), ...]`.
fn attr_pairs(attr: &str) -> Vec<(String, Option<String>)> {
    let Some(open) = attr.find('(') else {
        return Vec::new();
    };
    let inner = &attr[open + 1..attr.rfind(')').unwrap_or(attr.len())];
    split_top(inner, ',')
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.contains('(') => (k.trim().to_string(), Some(v.trim().to_string())),
            _ => (p.trim().to_string(), None),
        })
        .collect()
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    v.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .or_else(|| v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
        .unwrap_or(v)
        .to_string()
}

fn kebab(ident: &str) -> String {
    let mut out = String::new();
    for (i, c) in ident.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn last_segment(path: &str) -> String {
    path.trim()
        .rsplit("::")
        .next()
        .unwrap_or(path)
        .trim()
        .to_string()
}

/// `pub name: Type` → (`name`, `Type`).
fn field_type(text: &str) -> (String, String) {
    let t = text
        .trim()
        .trim_start_matches("pub(crate)")
        .trim_start_matches("pub")
        .trim();
    match t.split_once(':') {
        Some((n, ty)) if !n.contains('(') => (n.trim().to_string(), ty.trim().to_string()),
        _ => (String::new(), String::new()),
    }
}

/// Every `kind name { body }` in `text` with the attributes before it.
fn find_item(text: &str, kind: &str, name: Option<&str>) -> Vec<(Vec<String>, String, String)> {
    let mut out = Vec::new();
    let needle = format!("{kind} ");
    let mut from = 0;
    while let Some(pos) = text[from..].find(&needle) {
        let at = from + pos;
        from = at + needle.len();
        // A whole word: start of a line or after `pub `/`pub(crate) `.
        let before = text[..at].trim_end_matches(' ');
        if !(before.ends_with('\n')
            || before.ends_with("pub")
            || before.ends_with(')')
            || before.is_empty())
        {
            continue;
        }
        let rest = &text[from..];
        let ident: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if ident.is_empty() || name.is_some_and(|n| n != ident) {
            continue;
        }
        let Some(open) = rest.find(['{', ';', '(']) else {
            continue;
        };
        if rest.as_bytes()[open] != b'{' {
            continue;
        }
        let Some(close) = matching(rest, open) else {
            continue;
        };
        let body = rest[open + 1..close].to_string();
        // Attributes on the lines just above.
        let mut attrs = Vec::new();
        for line in text[..at].lines().rev() {
            let l = line.trim();
            if l.starts_with("#[") {
                attrs.push(l.to_string());
            } else if l.starts_with("///")
                || l.starts_with("//")
                || l.ends_with(']')
                || l.ends_with(',')
                || l.ends_with('(')
            {
                continue;
            } else {
                break;
            }
        }
        out.push((attrs, ident, body));
    }
    out
}

/// Index of the bracket closing the one at `open`, skipping strings and comments.
fn matching(s: &str, open: usize) -> Option<usize> {
    let b = s.as_bytes();
    let mut depth = 0i32;
    let mut i = open;
    while i < b.len() {
        match b[i] {
            b'"' => i = skip_string(b, i),
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'{' | b'(' | b'[' => depth += 1,
            b'}' | b')' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Index of the closing quote of the string starting at `i`.
fn skip_string(b: &[u8], mut i: usize) -> usize {
    i += 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'"' => return i,
            _ => {}
        }
        i += 1;
    }
    i
}

/// Splits at `sep` outside brackets, strings and char literals.
fn split_top(s: &str, sep: char) -> Vec<String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => i = skip_string(b, i),
            b'\'' if b.get(i + 2) == Some(&b'\'') => i += 2,
            b'{' | b'(' | b'[' | b'<' => depth += 1,
            b'}' | b')' | b']' => depth -= 1,
            b'>' if i > 0 && b[i - 1] != b'-' && b[i - 1] != b'=' => depth -= 1,
            c if c == sep as u8 && depth == 0 => {
                out.push(s[start..i].to_string());
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(s[start..].to_string());
    out
}

/// The members of a struct or enum body, comments dropped, attributes apart.
fn split_items(body: &str) -> Vec<Item> {
    // Drop line comments (doc comments included) first.
    let cleaned: String = body
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("//") {
                ""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    for part in split_top(&cleaned, ',') {
        let mut rest = part.trim();
        let mut attrs = Vec::new();
        while rest.starts_with("#[") {
            let close = matching(rest, 1).unwrap_or(rest.len() - 1);
            attrs.push(rest[..=close].to_string());
            rest = rest[close + 1..].trim();
        }
        if !rest.is_empty() {
            out.push(Item {
                attrs,
                text: rest.to_string(),
            });
        }
    }
    out
}
