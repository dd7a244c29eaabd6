//! Unit tests of the `herald event-type` commands: flags and the requests
//! they build.

use super::*;
use clap::Parser;

#[derive(Parser, Debug)]
struct Cli {
    #[command(subcommand)]
    cmd: EventTypeCmd,
}

fn parse(args: &[&str]) -> Result<EventTypeCmd, clap::Error> {
    Cli::try_parse_from(std::iter::once("event-type").chain(args.iter().copied())).map(|c| c.cmd)
}

fn create(args: &[&str]) -> CreateArgs {
    match parse(&[&["create", "order.shipped"], args].concat()).unwrap() {
        EventTypeCmd::Create(a) => a,
        other => panic!("{other:?}"),
    }
}

fn update(args: &[&str]) -> UpdateArgs {
    match parse(&[&["update", "order.shipped"], args].concat()).unwrap() {
        EventTypeCmd::Update(a) => a,
        other => panic!("{other:?}"),
    }
}

fn list(args: &[&str]) -> ListArgs {
    match parse(&[&["list"], args].concat()).unwrap() {
        EventTypeCmd::List(a) => a,
        other => panic!("{other:?}"),
    }
}

fn no_stdin() -> impl Read {
    std::io::empty()
}

/// A file in a directory of its own, removed when dropped.
struct TempFile {
    dir: PathBuf,
    path: PathBuf,
}

impl TempFile {
    fn new(name: &str, contents: &str) -> TempFile {
        let dir =
            std::env::temp_dir().join(format!("herald-event-type-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("schema.json");
        std::fs::write(&path, contents).unwrap();
        TempFile { dir, path }
    }

    fn arg(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn create_with_just_a_name_sends_no_schema() {
    let req = create_request(create(&[]), &mut no_stdin()).unwrap();
    assert_eq!(
        req,
        CreateEventTypeRequest {
            name: "order.shipped".into(),
            ..Default::default()
        }
    );
    assert!(parse(&["create"]).is_err(), "the name is required");
}

#[test]
fn create_with_an_inline_schema_keeps_it_verbatim() {
    let req = create_request(
        create(&[
            "--description",
            "an order left the warehouse",
            "--schema",
            r#" {"type":"object", "required":["id"]} "#,
        ]),
        &mut no_stdin(),
    )
    .unwrap();
    assert_eq!(req.description, "an order left the warehouse");
    assert_eq!(req.schema_json, r#"{"type":"object", "required":["id"]}"#);
    // Boolean schemas are schemas too.
    let req = create_request(create(&["--schema", "true"]), &mut no_stdin()).unwrap();
    assert_eq!(req.schema_json, "true");
}

#[test]
fn create_reads_the_schema_from_a_file_or_stdin() {
    let file = TempFile::new("create", "\u{feff}{\"type\": \"object\"}\n");
    let req = create_request(create(&["--schema-file", file.arg()]), &mut no_stdin()).unwrap();
    assert_eq!(req.schema_json, "{\"type\": \"object\"}");

    let mut stdin = &b"{\"type\": \"array\"}\n"[..];
    let req = create_request(create(&["--schema-file", "-"]), &mut stdin).unwrap();
    assert_eq!(req.schema_json, "{\"type\": \"array\"}");

    let err = create_request(
        create(&["--schema-file", &format!("{}.missing", file.arg())]),
        &mut no_stdin(),
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").starts_with("cannot read --schema-file "),
        "{err:#}"
    );
}

#[test]
fn a_schema_that_is_not_a_json_object_fails_before_any_call() {
    let err = create_request(create(&["--schema", "{nope"]), &mut no_stdin()).unwrap_err();
    assert!(
        format!("{err:#}").starts_with("--schema is not valid JSON: "),
        "{err:#}"
    );
    let err = create_request(create(&["--schema", "[1]"]), &mut no_stdin()).unwrap_err();
    assert!(
        err.to_string().starts_with("--schema is not a JSON Schema"),
        "{err}"
    );
    let err = create_request(create(&["--schema", "  "]), &mut no_stdin()).unwrap_err();
    assert!(err.to_string().starts_with("--schema is empty"), "{err}");
    let file = TempFile::new("empty", "\n");
    let err = create_request(create(&["--schema-file", file.arg()]), &mut no_stdin()).unwrap_err();
    assert!(err.to_string().contains("is empty"), "{err}");
}

#[test]
fn schema_and_schema_file_are_exclusive() {
    let err = parse(&["create", "a.b", "--schema", "{}", "--schema-file", "x"]).unwrap_err();
    assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    for flag in ["--schema", "--schema-file"] {
        let err = parse(&["update", "a.b", flag, "x", "--no-schema"]).unwrap_err();
        assert_eq!(
            err.kind(),
            clap::error::ErrorKind::ArgumentConflict,
            "{flag}"
        );
    }
}

#[test]
fn update_sets_only_given_fields() {
    let req = update_request(update(&["--description", "shipped"]), &mut no_stdin()).unwrap();
    assert_eq!(
        req,
        UpdateEventTypeRequest {
            name: "order.shipped".into(),
            description: Some("shipped".into()),
            ..Default::default()
        }
    );
    let req = update_request(update(&["--schema", "{}"]), &mut no_stdin()).unwrap();
    assert_eq!(
        (req.description, req.schema_json, req.archived),
        (None, Some("{}".into()), None)
    );
}

#[test]
fn update_no_schema_sends_the_empty_schema() {
    let req = update_request(update(&["--no-schema"]), &mut no_stdin()).unwrap();
    assert_eq!(req.schema_json, Some(String::new()));
}

#[test]
fn update_archived_takes_a_boolean() {
    let req = update_request(update(&["--archived", "true"]), &mut no_stdin()).unwrap();
    assert_eq!(req.archived, Some(true));
    let req = update_request(update(&["--archived", "false"]), &mut no_stdin()).unwrap();
    assert_eq!(req.archived, Some(false));
    assert!(parse(&["update", "a.b", "--archived"]).is_err());
    assert!(parse(&["update", "a.b", "--archived", "maybe"]).is_err());
}

#[test]
fn update_refuses_a_no_op() {
    let err = update_request(update(&[]), &mut no_stdin()).unwrap_err();
    assert!(err.to_string().starts_with("nothing to update"), "{err}");
}

#[test]
fn list_flags_and_page_size() {
    let args = list(&[]);
    assert_eq!(
        list_request(&args, String::new()),
        ListEventTypesRequest::default()
    );
    let args = list(&["--include-archived", "--all"]);
    assert_eq!(
        list_request(&args, "t".into()),
        ListEventTypesRequest {
            include_archived: true,
            page_size: ALL_PAGE_SIZE,
            page_token: "t".into(),
        }
    );
    let args = list(&["--page-size", "5", "--all"]);
    assert_eq!(list_request(&args, String::new()).page_size, 5);
    let args = list(&["--page-token", "order.a"]);
    assert_eq!(args.page_token.as_deref(), Some("order.a"));
    assert!(parse(&["list", "--all", "--page-token", "t"]).is_err());
}

#[test]
fn get_and_archive_take_a_name() {
    assert!(
        matches!(parse(&["get", "order.shipped"]).unwrap(), EventTypeCmd::Get { name } if name == "order.shipped")
    );
    assert!(parse(&["get"]).is_err());
    assert!(matches!(
        parse(&["archive", "order.shipped"]).unwrap(),
        EventTypeCmd::Archive { name, undo: false } if name == "order.shipped"
    ));
    assert!(matches!(
        parse(&["archive", "order.shipped", "--undo"]).unwrap(),
        EventTypeCmd::Archive { undo: true, .. }
    ));
}
