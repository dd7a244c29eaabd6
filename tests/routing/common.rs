//! What the routing tests share: a model of subscriptions (who takes
//! which event), request builders and status assertions.

use crate::support::TestNode;
use herald_proto::v1 as pb;
use herald_proto::v1::event_type_service_client::EventTypeServiceClient;
use herald_testkit::TestReceiver;
use tonic::transport::Channel;
use tonic::Code;

/// One endpoint's subscription, as the test's model of who gets what.
pub struct Sub {
    pub id: &'static str,
    pub app: &'static str,
    pub types: &'static [&'static str],
    pub channels: &'static [&'static str],
    pub filter: &'static str,
    pub enabled: bool,
}

impl Sub {
    /// The model: does this endpoint take an event?
    pub fn takes(&self, app: &str, ty: &str, channels: &[&str], amount: i64) -> bool {
        let type_ok = self.types.is_empty()
            || self.types.iter().any(|p| {
                let (ps, ts): (Vec<&str>, Vec<&str>) =
                    (p.split('.').collect(), ty.split('.').collect());
                *p == "*"
                    || (ps.len() == ts.len()
                        && ps.iter().zip(&ts).all(|(a, b)| *a == "*" || a == b))
            });
        let channel_ok =
            self.channels.is_empty() || self.channels.iter().any(|c| channels.contains(c));
        let filter_ok = match self.filter {
            "" => true,
            "amount > 1000" => amount > 1000,
            "amuont > 1000" => false,
            other => panic!("the model does not know filter {other:?}"),
        };
        self.enabled && self.app == app && type_ok && channel_ok && filter_ok
    }
}

pub const SUBS: &[Sub] = &[
    Sub {
        id: "crm",
        app: "shop",
        types: &["order.*"],
        channels: &[],
        filter: "",
        enabled: true,
    },
    Sub {
        id: "sms",
        app: "shop",
        types: &["order.shipped"],
        channels: &["eu"],
        filter: "",
        enabled: true,
    },
    Sub {
        id: "erp",
        app: "shop",
        types: &[],
        channels: &[],
        filter: "amount > 1000",
        enabled: true,
    },
    // Names a field no payload has: its filter never evaluates.
    Sub {
        id: "typo",
        app: "shop",
        types: &["order.*"],
        channels: &[],
        filter: "amuont > 1000",
        enabled: true,
    },
    Sub {
        id: "audit",
        app: "shop",
        types: &["*"],
        channels: &[],
        filter: "",
        enabled: true,
    },
    Sub {
        id: "paused",
        app: "shop",
        types: &["*"],
        channels: &[],
        filter: "",
        enabled: false,
    },
    Sub {
        id: "elsewhere",
        app: "other",
        types: &["*"],
        channels: &[],
        filter: "",
        enabled: true,
    },
];

pub fn fan_out_req(app: &str, ty: &str, channels: &[&str], payload: String) -> pb::PublishRequest {
    pb::PublishRequest {
        app_id: app.into(),
        event_type: ty.into(),
        channels: channels.iter().map(|c| c.to_string()).collect(),
        payload,
        ..Default::default()
    }
}

pub async fn create_sub(node: &TestNode, rx: &TestReceiver, s: &Sub) {
    node.endpoints
        .clone()
        .create_endpoint(pb::CreateEndpointRequest {
            id: s.id.into(),
            url: rx.url_for(s.id),
            app_id: s.app.into(),
            event_types: s.types.iter().map(|t| t.to_string()).collect(),
            channels: s.channels.iter().map(|t| t.to_string()).collect(),
            filter: s.filter.into(),
            enabled: Some(s.enabled),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("create endpoint {}: {e}", s.id));
}

pub async fn event_types(node: &TestNode) -> EventTypeServiceClient<Channel> {
    EventTypeServiceClient::new(crate::support::channel(&node.node).await)
}

#[track_caller]
pub fn assert_status<T: std::fmt::Debug>(
    r: Result<T, tonic::Status>,
    code: Code,
    needles: &[&str],
) {
    match r {
        Ok(v) => panic!("expected {code:?} mentioning {needles:?}, got Ok({v:?})"),
        Err(s) => {
            assert_eq!(s.code(), code, "status {s:?}");
            for n in needles {
                assert!(
                    s.message().contains(n),
                    "{code:?} message {:?} does not mention {n:?}",
                    s.message()
                );
            }
        }
    }
}
