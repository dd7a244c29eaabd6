//! The KEDA ScaledObject in `deploy/kubernetes/autoscaling/`: it scales the
//! dispatch Deployment on the consumer group and events topic that
//! Deployment's own config names, never beyond the partition count, never
//! to zero, and shrinks one dispatcher at a time.

use serde_yaml_ng::Value;

use crate::kube::{Object, Pod, KUBERNETES};
use crate::{node, yaml_str};

/// Checks one ScaledObject against the checked pods of deploy/kubernetes.
pub fn check(so: &Object, pods: &[Pod], errors: &mut Vec<String>) {
    let o = so.origin();
    let spec = &so.doc["spec"];
    let target = yaml_str(&spec["scaleTargetRef"]["name"]);
    let kind = spec["scaleTargetRef"]["kind"]
        .as_str()
        .unwrap_or("Deployment");
    let Some((dep, c, _, ch)) = pods
        .iter()
        .find(|(d, ..)| d.name() == target && d.kind() == kind)
    else {
        errors.push(format!(
            "{o}: scaleTargetRef {kind} {target:?} is not a Herald Deployment of {KUBERNETES}"
        ));
        return;
    };
    let Some(ch) = ch else { return }; // reported by its own checks
    if so.namespace() != dep.namespace() {
        errors.push(format!(
            "{o}: namespace {:?}, but {} is in {:?}",
            so.namespace(),
            dep.origin(),
            dep.namespace()
        ));
    }
    let Some((roles, cfg)) = &ch.server else {
        return;
    };
    if roles.ingest || !roles.dispatch {
        errors.push(format!(
            "{o}: scales {}, which runs `herald {}`; scale dispatchers on lag",
            dep.origin(),
            ch.invocation.path.join(" ")
        ));
    }
    let partitions = cfg.kafka.events_partitions as u64;
    let max = spec["maxReplicaCount"].as_u64().unwrap_or(0);
    if max != partitions {
        errors.push(format!(
                "{o}: maxReplicaCount is {max}, but {} configures kafka.events_partitions = {partitions}: \
                 dispatchers beyond the partition count get no partition",
                c.config_file.as_ref().map(|f| f.0.as_str()).unwrap_or("the config")
            ));
    }
    let min = spec["minReplicaCount"].as_u64().unwrap_or(0);
    if min == 0 || min > max {
        errors.push(format!(
            "{o}: minReplicaCount is {min}; it must be 1..=maxReplicaCount: with no dispatcher, \
                 retries waiting in {} are never sent",
            cfg.kafka.retry_topic
        ));
    }
    if !spec["idleReplicaCount"].is_null() {
        errors.push(format!(
            "{o}: idleReplicaCount scales dispatchers to zero; retries would stop"
        ));
    }
    // Scale-down steps are rebalances: slow and one pod at a time.
    let down = &spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"];
    let window = down["stabilizationWindowSeconds"].as_u64().unwrap_or(0);
    if window < 300 {
        errors.push(format!("{o}: scaleDown.stabilizationWindowSeconds is {window}; keep it ≥ 300 so a lag dip does not stop a dispatcher (each stop is a rebalance)"));
    }
    let grace = dep.doc["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap_or(30);
    let policies = down["policies"].as_sequence().cloned().unwrap_or_default();
    if policies.is_empty() {
        errors.push(format!(
            "{o}: no scaleDown policies: the HPA may remove every extra dispatcher at once"
        ));
    }
    for p in &policies {
        let (ty, value, period) = (
            yaml_str(&p["type"]),
            p["value"].as_u64().unwrap_or(0),
            p["periodSeconds"].as_u64().unwrap_or(0),
        );
        if ty != "Pods" || value != 1 || period < grace {
            errors.push(format!(
                    "{o}: scaleDown policy {ty} {value} per {period}s; use Pods 1 per ≥ {grace}s (terminationGracePeriodSeconds): \
                     one dispatcher stops, drains and leaves the group before the next"
                ));
        }
    }

    let kafka: Vec<&Value> = spec["triggers"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter(|t| t["type"].as_str() == Some("kafka"))
        .collect();
    if kafka.len() != 1 {
        errors.push(format!(
            "{o}: expected one kafka trigger, found {}",
            kafka.len()
        ));
        return;
    }
    let m = &kafka[0]["metadata"];
    let expect = [
        (
            "consumerGroup",
            cfg.kafka.consumer_group.clone(),
            "kafka.consumer_group",
        ),
        (
            "topic",
            cfg.kafka.events_topic.clone(),
            "kafka.events_topic",
        ),
        (
            "bootstrapServers",
            cfg.kafka.brokers.clone(),
            "kafka.brokers",
        ),
        (
            "offsetResetPolicy",
            node::rdkafka_property(cfg, "auto.offset.reset"),
            "the dispatcher's auto.offset.reset (crates/herald-kafka/src/clients.rs)",
        ),
    ];
    for (key, want, from) in expect {
        let have = yaml_str(&m[key]);
        if have != want {
            errors.push(format!(
                "{o}: kafka trigger {key} is {have:?}, but {from} is {want:?}"
            ));
        }
    }
    match yaml_str(&m["lagThreshold"]).parse::<u64>() {
        Ok(n) if n > 0 => {}
        _ => errors.push(format!(
            "{o}: lagThreshold {:?} is not a positive integer",
            yaml_str(&m["lagThreshold"])
        )),
    }
    if yaml_str(&m["allowIdleConsumers"]) == "true" {
        errors.push(format!(
            "{o}: allowIdleConsumers lets KEDA add dispatchers beyond the partition count"
        ));
    }
}
