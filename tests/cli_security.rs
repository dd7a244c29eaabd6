//! The `herald` command line against a node that requires TLS and tokens,
//! as a user runs it: the token from `HERALD_TOKEN` or `--token-file`, the
//! server's CA from `--ca-cert`, a clear error without a token, and no
//! escape sequence from a receiver's answer on the terminal.

mod support;

use std::process::{Command, Output};

use herald_core::config::{GrpcTlsConfig, TokenConfig};
use herald_testkit::{Policy, Reply, TestReceiver};
use rcgen::ExtendedKeyUsagePurpose;
use support::certs::{write, Ca};
use support::procs::NODE_BIN;
use support::GUARD;

/// Runs the CLI with `env` (and nothing inherited that could carry a token).
fn herald(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(NODE_BIN);
    cmd.args(args)
        .env_remove("HERALD_TOKEN")
        .env_remove("HERALD_TOKEN_FILE")
        .env_remove("HERALD_SERVER");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the CLI runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_speaks_tls_with_a_token_and_defuses_receiver_text() {
    let dir = std::env::temp_dir().join(herald_testkit::fixtures::unique("cli-tls"));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = Ca::new("cli test CA");
    let (cert, key) = ca.issue(&["localhost"], ExtendedKeyUsagePurpose::ServerAuth);
    let ca_file = write(&dir, "ca.pem", &ca.cert.pem());
    let (token, hash) = herald_auth::token::generate();
    let token_file = write(&dir, "token", &format!("{token}\n"));

    let mut cfg = support::config();
    cfg.auth.disabled = false;
    cfg.auth.tokens = vec![TokenConfig {
        name: "ops".into(),
        hash: hash.to_string(),
        scopes: vec!["admin".into()],
        ..Default::default()
    }];
    cfg.grpc.tls = Some(GrpcTlsConfig {
        cert_file: write(&dir, "server.pem", &cert),
        key_file: write(&dir, "server.key", &key),
        ..Default::default()
    });
    let (_broker, cfg) = support::broker(cfg);
    let node = support::start_loaded(cfg, herald::node::Roles::ALL).await;
    let server = format!("https://localhost:{}", node.grpc_addr.unwrap().port());
    let ca_arg = ca_file.to_str().unwrap();

    // A receiver whose error answer tries to take over the terminal.
    let receiver = TestReceiver::with_policy(Policy::new(|_, _| {
        Reply::status(500).body("\u{1b}[2J\u{1b}]0;pwned\u{7}boom")
    }))
    .await
    .unwrap();
    let url = receiver.url_for("/hostile");

    // Every call names the server and its CA; the runtime keeps serving
    // the node while the CLI process runs.
    let run = |args: &[&str], env: &[(&str, &str)]| -> Output {
        let mut all = args.to_vec();
        all.extend(["--server", server.as_str(), "--ca-cert", ca_arg]);
        tokio::task::block_in_place(|| herald(&all, env))
    };

    // No token: a clear error, no secret in it.
    let out = run(&["endpoint", "list"], &[]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("UNAUTHENTICATED") && err.contains("HERALD_TOKEN"),
        "{err}"
    );

    // The token from the environment, over TLS with a private CA.
    let out = run(
        &["endpoint", "create", "--id", "hostile", "--url", &url],
        &[("HERALD_TOKEN", &token)],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Or from a file.
    let token_path = token_file.to_str().unwrap().to_string();
    let out = run(&["endpoint", "list", "--token-file", &token_path], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("hostile"));

    let out = run(
        &[
            "publish",
            "--endpoint",
            "hostile",
            "--type",
            "t",
            "--data",
            "{}",
        ],
        &[("HERALD_TOKEN", &token)],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    receiver
        .wait_for(|all| !all.is_empty(), GUARD)
        .await
        .expect("the receiver was tried");

    // The attempt log holds the receiver's answer; printed as text it
    // carries no escape sequence. The log is written after the attempt, so
    // ask until it shows up (bounded).
    let mut shown = String::new();
    for _ in 0..200 {
        let out = run(
            &["attempts", "--endpoint", "hostile"],
            &[("HERALD_TOKEN", &token)],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        shown = text(&out.stdout);
        if shown.contains("boom") {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(shown.contains("boom"), "the attempt is listed: {shown}");
    assert!(
        !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
        "{shown:?}"
    );

    tokio::time::timeout(GUARD, node.shutdown())
        .await
        .unwrap()
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
}
