//! Delivering every event, signed and in order, single and batched.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::support::{publish_req, TestNode, GUARD};
use futures_util::future::join_all;
use herald_proto::v1 as pb;
use herald_signing::Secret;
use herald_testkit::fixtures::now_unix;
use herald_testkit::{first_arrivals, TestReceiver};

const ENDPOINTS: usize = 20;
const PER_ENDPOINT: usize = 100;
const BATCH: usize = 50;

fn ep_id(i: usize) -> String {
    format!("ep-{i:02}")
}

fn payload(ep: usize, seq: usize, via: &str) -> String {
    format!(
        r#"{{"endpoint":"{}","seq":{seq},"via":"{via}"}}"#,
        ep_id(ep)
    )
}

/// One published event as the test expects to see it delivered.
#[derive(Debug, Clone)]
struct Sent {
    ep: usize,
    seq: usize,
    payload: String,
}

/// Publishes `seqs` of each endpoint in `eps` with `Publish`: endpoints in
/// parallel, each endpoint's events one after the other.
async fn publish_singly(
    node: &TestNode,
    eps: &[usize],
    seqs: std::ops::Range<usize>,
) -> Vec<(String, Sent)> {
    let per_endpoint = eps.iter().map(|&ep| {
        let mut client = node.events.clone();
        let seqs = seqs.clone();
        async move {
            let mut out = Vec::new();
            for seq in seqs {
                let body = payload(ep, seq, "publish");
                let resp = client
                    .publish(publish_req(&ep_id(ep), &body))
                    .await
                    .unwrap_or_else(|e| panic!("publish {} #{seq}: {e}", ep_id(ep)))
                    .into_inner();
                assert!(!resp.duplicate);
                out.push((
                    resp.event_id,
                    Sent {
                        ep,
                        seq,
                        payload: body,
                    },
                ));
            }
            out
        }
    });
    join_all(per_endpoint).await.into_iter().flatten().collect()
}

/// Publishes `seqs` of each endpoint in `eps` with `PublishBatch`, in batches
/// of [`BATCH`] ordered by (seq, endpoint) and sent one after the other, so
/// each endpoint's events keep their order within and across batches.
async fn publish_batched(
    node: &TestNode,
    eps: &[usize],
    seqs: std::ops::Range<usize>,
) -> Vec<(String, Sent)> {
    let mut client = node.events.clone();
    let items: Vec<Sent> = seqs
        .flat_map(|seq| {
            eps.iter().map(move |&ep| Sent {
                ep,
                seq,
                payload: payload(ep, seq, "batch"),
            })
        })
        .collect();
    let mut out = Vec::new();
    for chunk in items.chunks(BATCH) {
        let req = pb::PublishBatchRequest {
            events: chunk
                .iter()
                .map(|s| publish_req(&ep_id(s.ep), &s.payload))
                .collect(),
        };
        let resp = client
            .publish_batch(req)
            .await
            .expect("publish batch")
            .into_inner();
        assert_eq!(
            (resp.accepted as usize, resp.rejected),
            (chunk.len(), 0),
            "{resp:?}"
        );
        assert_eq!(resp.results.len(), chunk.len());
        for (i, (result, sent)) in resp.results.into_iter().zip(chunk).enumerate() {
            assert_eq!(result.index as usize, i);
            match result.result {
                Some(pb::publish_result::Result::Ok(ok)) => out.push((ok.event_id, sent.clone())),
                other => panic!("batch item {i} failed: {other:?}"),
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_every_event_signed_and_in_order() {
    let (_broker, cfg) = crate::support::broker(crate::support::config());
    let node = TestNode::start(cfg).await;
    let receiver = TestReceiver::start().await.unwrap();

    let mut secrets = Vec::new();
    for ep in 0..ENDPOINTS {
        let (view, secret) = node
            .create_endpoint(&ep_id(ep), &receiver.url_for(&ep_id(ep)))
            .await;
        assert!(view.ordered && view.enabled);
        secrets.push(Secret::parse(&secret).expect("create returns a whsec_ secret"));
    }

    // Half the events through Publish, half through PublishBatch, both paths
    // running at once on different endpoints; then the roles swap. Each
    // endpoint's first half is acknowledged before its second half starts.
    let even: Vec<usize> = (0..ENDPOINTS).step_by(2).collect();
    let odd: Vec<usize> = (1..ENDPOINTS).step_by(2).collect();
    let half = PER_ENDPOINT / 2;
    let (a, b) = tokio::join!(
        publish_singly(&node, &even, 0..half),
        publish_batched(&node, &odd, 0..half)
    );
    let (c, d) = tokio::join!(
        publish_singly(&node, &odd, half..PER_ENDPOINT),
        publish_batched(&node, &even, half..PER_ENDPOINT)
    );
    let total = ENDPOINTS * PER_ENDPOINT;
    assert_eq!(
        (a.len() + c.len(), b.len() + d.len()),
        (total / 2, total / 2)
    );
    let sent: HashMap<String, Sent> = a.into_iter().chain(b).chain(c).chain(d).collect();
    assert_eq!(
        sent.len(),
        total,
        "every publish returned a distinct event id"
    );

    let ids: Vec<&String> = sent.keys().collect();
    receiver
        .wait_for_ids(&ids, GUARD)
        .await
        .unwrap_or_else(|e| {
            let seen: HashSet<String> = receiver
                .requests()
                .iter()
                .map(|r| r.webhook_id().to_string())
                .collect();
            let missing = ids.iter().filter(|id| !seen.contains(id.as_str())).count();
            panic!("{e}; {missing} of {total} events never arrived")
        });

    let all = receiver.requests();
    let now = now_unix();
    let mut problems = Vec::new();
    for r in &all {
        let Some(s) = sent.get(r.webhook_id()) else {
            problems.push(format!(
                "unexpected delivery {:?} to {}",
                r.webhook_id(),
                r.path
            ));
            continue;
        };
        let id = r.webhook_id();
        if r.method != "POST" {
            problems.push(format!("{id}: method {}", r.method));
        }
        if r.path != format!("/{}", ep_id(s.ep)) {
            problems.push(format!(
                "{id}: delivered to {} instead of /{}",
                r.path,
                ep_id(s.ep)
            ));
        }
        if r.body != s.payload.as_bytes() {
            problems.push(format!(
                "{id}: body {:?} instead of {:?}",
                r.body_text(),
                s.payload
            ));
        }
        if r.header("content-type") != Some("application/json") {
            problems.push(format!("{id}: content-type {:?}", r.header("content-type")));
        }
        if !r
            .header("user-agent")
            .is_some_and(|ua| ua.starts_with("Herald/"))
        {
            problems.push(format!("{id}: user-agent {:?}", r.header("user-agent")));
        }
        if let Err(e) = r.verify(std::slice::from_ref(&secrets[s.ep]), now) {
            problems.push(format!("{id}: signature does not verify: {e}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems, first ones: {:#?}",
        problems.len(),
        &problems[..problems.len().min(10)]
    );

    // Per-endpoint order: the first arrival of each id, per endpoint, in publish order.
    let mut order: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for r in first_arrivals(&all) {
        let s = &sent[r.webhook_id()];
        order.entry(s.ep).or_default().push(s.seq);
    }
    let expected: Vec<usize> = (0..PER_ENDPOINT).collect();
    for ep in 0..ENDPOINTS {
        assert_eq!(
            order.get(&ep),
            Some(&expected),
            "arrival order of {}",
            ep_id(ep)
        );
    }
    let duplicates = all.len() - total;
    if duplicates > 0 {
        eprintln!("note: {duplicates} duplicate deliveries (allowed: at-least-once)");
    }

    // The delivered counter is bumped after the receiver answers, so the last
    // event of each endpoint may not be counted yet. One more event per
    // (ordered) endpoint fences them: it starts only after its predecessor
    // was settled, and settling comes after counting.
    let mut fences = Vec::new();
    for ep in 0..ENDPOINTS {
        fences.push(
            node.publish(&ep_id(ep), &payload(ep, PER_ENDPOINT, "fence"))
                .await
                .event_id,
        );
    }
    receiver
        .wait_for_ids(&fences, GUARD)
        .await
        .expect("fence events arrive");
    let metrics = node.metrics().await;
    let delivered = crate::support::metric_sum(&metrics, "herald_events_delivered_total")
        .unwrap_or_else(|| panic!("no herald_events_delivered_total in /metrics:\n{metrics}"));
    assert!(
        delivered >= total as f64,
        "herald_events_delivered_total = {delivered}, want >= {total}"
    );
    let published =
        crate::support::metric_sum(&metrics, "herald_events_published_total").unwrap_or(0.0);
    assert!(
        published >= (total + ENDPOINTS) as f64,
        "herald_events_published_total = {published}"
    );

    node.shutdown().await;
}
