//! `scale registry-decode`: Herald's own share of a registry load, with no
//! broker and no node around it. N endpoint records are sealed and encoded
//! in memory first (as `registry` writes them), then each one goes through
//! what the registry consumer does per record: protobuf decode, the
//! id-matches-key check, unsealing (`KeyRing::open_endpoint`), and an insert
//! into a `BTreeMap<String, Arc<Endpoint>>` (the map `Registry` keeps).
//! Reported: time per endpoint, and the RSS the map added per endpoint.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _};
use herald_core::config::{MasterKeyConfig, SecretsConfig};
use herald_core::Endpoint;
use herald_proto::v1::EndpointRecord;
use prost::Message as _;

use crate::procs::{self, median};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Endpoints.
    #[arg(long, default_value_t = 1_000_000)]
    endpoints: usize,
    /// Runs; the report shows medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let dir = procs::run_dir("decode")?;
    let secrets = SecretsConfig {
        keys: vec![MasterKeyConfig {
            id: "scale".into(),
            file: Some(procs::master_key(&dir)?),
            env: None,
        }],
        ..SecretsConfig::default()
    };
    let ring = herald_registry::keys::load(&secrets)?.context("no master key")?;
    let secret = herald_signing::Secret::generate().to_whsec();
    let now = herald_core::time::now_ms();
    let records: Vec<(String, Vec<u8>)> = (0..a.endpoints)
        .map(|i| {
            let rec = EndpointRecord {
                id: format!("scale-ep-{i:07}"),
                url: format!("https://hooks{}.example.com/webhooks/herald/{i}", i % 97),
                secrets: vec![secret.clone()],
                description: "herald scale".into(),
                created_at_ms: now,
                updated_at_ms: now,
                ..Default::default()
            };
            let ep = Endpoint::from_record(rec).map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok((ep.id.clone(), ring.seal_endpoint(&ep).encode_to_vec()))
        })
        .collect::<anyhow::Result<_>>()?;
    let me = std::process::id();
    let mut secs = Vec::new();
    let mut bytes = Vec::new();
    for r in 1..=a.runs {
        let before = procs::sample(me)?.rss_mib;
        let started = Instant::now();
        let mut map: BTreeMap<String, Arc<Endpoint>> = BTreeMap::new();
        for (key, value) in &records {
            let rec = EndpointRecord::decode(value.as_slice())?;
            if rec.id != *key {
                bail!("record id differs from its key");
            }
            let ep = ring
                .open_endpoint(rec)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            map.insert(key.clone(), Arc::new(ep));
        }
        let s = started.elapsed().as_secs_f64();
        let grown = (procs::sample(me)?.rss_mib - before) * 1024.0 * 1024.0;
        eprintln!(
            "run {r}: {} endpoints in {s:.2} s ({:.2} µs each), RSS +{:.0} B per endpoint",
            map.len(),
            s * 1e6 / map.len() as f64,
            grown / map.len() as f64
        );
        secs.push(s);
        bytes.push(grown / map.len() as f64);
        drop(map);
    }
    println!(
        "registry-decode of {} endpoints ({} runs, medians): {:.2} s, {:.2} µs per endpoint, \
         {:.0} B of RSS per endpoint (first run; later runs reuse freed memory)",
        a.endpoints,
        a.runs,
        median(&secs),
        median(&secs) * 1e6 / a.endpoints as f64,
        bytes[0],
    );
    procs::remove_dir_on_success(&dir);
    Ok(())
}
