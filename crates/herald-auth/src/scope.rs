//! Scopes, and the scope each RPC needs.
//!
//! A method that is not listed needs `admin`: a new RPC is closed until
//! someone decides who may call it. gRPC health checks and reflection stay
//! open (probes and `grpcurl list` carry no data).

use std::fmt;
use std::str::FromStr;

/// One permission a credential can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `Publish`, `PublishBatch`.
    Publish,
    /// `GetEndpoint`, `ListEndpoints`.
    EndpointsRead,
    /// `CreateEndpoint`, `UpdateEndpoint`, `DeleteEndpoint`.
    EndpointsWrite,
    /// Every `DeadLetterService` RPC (read and replay dead letters).
    Dlq,
    /// `ListAttempts` (receivers' responses).
    AttemptsRead,
    /// Everything, including `GetStatus`.
    Admin,
}

impl Scope {
    /// Every scope, in the order the docs list them.
    pub const ALL: [Scope; 6] = [
        Scope::Publish,
        Scope::EndpointsRead,
        Scope::EndpointsWrite,
        Scope::Dlq,
        Scope::AttemptsRead,
        Scope::Admin,
    ];

    /// The name used in config files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Publish => "publish",
            Scope::EndpointsRead => "endpoints:read",
            Scope::EndpointsWrite => "endpoints:write",
            Scope::Dlq => "dlq",
            Scope::AttemptsRead => "attempts:read",
            Scope::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A scope name that is not one of [`Scope::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope {0:?}; known scopes: publish, endpoints:read, endpoints:write, dlq, attempts:read, admin")]
pub struct UnknownScope(pub String);

impl FromStr for Scope {
    type Err = UnknownScope;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|sc| sc.name() == s.trim())
            .ok_or_else(|| UnknownScope(s.to_string()))
    }
}

/// A set of scopes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scopes(u8);

impl Scopes {
    /// Every scope.
    pub fn all() -> Self {
        Scope::ALL.into_iter().collect()
    }

    /// Whether this set allows `needed` (`admin` allows everything).
    pub fn allows(self, needed: Scope) -> bool {
        self.0 & (needed.bit() | Scope::Admin.bit()) != 0
    }

    /// Parses names such as `["publish", "endpoints:read"]`.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Self, UnknownScope> {
        names.iter().map(|n| n.as_ref().parse::<Scope>()).collect()
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The scopes in the set.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL
            .into_iter()
            .filter(move |s| self.0 & s.bit() != 0)
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        Scopes(iter.into_iter().fold(0, |acc, s| acc | s.bit()))
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Scope::name).collect();
        f.write_str(&names.join(","))
    }
}

/// What a request path needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credentials (health checks, reflection).
    Open,
    /// A credential with this scope.
    Needs(Scope),
}

/// The access rule of a gRPC request path (`/package.Service/Method`).
pub fn required(path: &str) -> Access {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (service, method) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    match service {
        "grpc.health.v1.Health"
        | "grpc.reflection.v1.ServerReflection"
        | "grpc.reflection.v1alpha.ServerReflection" => Access::Open,
        "herald.v1.EventService" => match method {
            "Publish" | "PublishBatch" => Access::Needs(Scope::Publish),
            "ListAttempts" => Access::Needs(Scope::AttemptsRead),
            _ => Access::Needs(Scope::Admin),
        },
        "herald.v1.EndpointService" => match method {
            "GetEndpoint" | "ListEndpoints" => Access::Needs(Scope::EndpointsRead),
            "CreateEndpoint" | "UpdateEndpoint" | "DeleteEndpoint" | "SendTestEvent" => {
                Access::Needs(Scope::EndpointsWrite)
            }
            _ => Access::Needs(Scope::Admin),
        },
        // The catalogue is read and managed with the endpoints it serves.
        "herald.v1.EventTypeService" => match method {
            "GetEventType" | "ListEventTypes" => Access::Needs(Scope::EndpointsRead),
            "CreateEventType" | "UpdateEventType" | "ArchiveEventType" => {
                Access::Needs(Scope::EndpointsWrite)
            }
            _ => Access::Needs(Scope::Admin),
        },
        "herald.v1.DeadLetterService" => Access::Needs(Scope::Dlq),
        _ => Access::Needs(Scope::Admin),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in Scope::ALL {
            assert_eq!(s.name().parse::<Scope>().unwrap(), s);
        }
        let e = "write".parse::<Scope>().unwrap_err();
        assert!(e.to_string().contains("\"write\""), "{e}");
    }

    #[test]
    fn admin_allows_everything_others_only_themselves() {
        let admin = Scopes::parse(&["admin"]).unwrap();
        assert!(Scope::ALL.into_iter().all(|s| admin.allows(s)));
        let p = Scopes::parse(&["publish"]).unwrap();
        assert!(p.allows(Scope::Publish));
        assert!(!p.allows(Scope::EndpointsWrite));
        assert!(!p.allows(Scope::Admin));
        assert_eq!(
            Scopes::parse(&["dlq", "publish"]).unwrap().to_string(),
            "publish,dlq"
        );
    }

    #[test]
    fn every_rpc_has_its_scope() {
        let table = [
            (
                "/herald.v1.EventService/Publish",
                Access::Needs(Scope::Publish),
            ),
            (
                "/herald.v1.EventService/PublishBatch",
                Access::Needs(Scope::Publish),
            ),
            (
                "/herald.v1.EventService/ListAttempts",
                Access::Needs(Scope::AttemptsRead),
            ),
            (
                "/herald.v1.EndpointService/GetEndpoint",
                Access::Needs(Scope::EndpointsRead),
            ),
            (
                "/herald.v1.EndpointService/ListEndpoints",
                Access::Needs(Scope::EndpointsRead),
            ),
            (
                "/herald.v1.EndpointService/CreateEndpoint",
                Access::Needs(Scope::EndpointsWrite),
            ),
            (
                "/herald.v1.EndpointService/UpdateEndpoint",
                Access::Needs(Scope::EndpointsWrite),
            ),
            (
                "/herald.v1.EndpointService/DeleteEndpoint",
                Access::Needs(Scope::EndpointsWrite),
            ),
            (
                "/herald.v1.EndpointService/ResealSecrets",
                Access::Needs(Scope::Admin),
            ),
            (
                "/herald.v1.EndpointService/SendTestEvent",
                Access::Needs(Scope::EndpointsWrite),
            ),
            (
                "/herald.v1.EventTypeService/GetEventType",
                Access::Needs(Scope::EndpointsRead),
            ),
            (
                "/herald.v1.EventTypeService/ListEventTypes",
                Access::Needs(Scope::EndpointsRead),
            ),
            (
                "/herald.v1.EventTypeService/CreateEventType",
                Access::Needs(Scope::EndpointsWrite),
            ),
            (
                "/herald.v1.EventTypeService/UpdateEventType",
                Access::Needs(Scope::EndpointsWrite),
            ),
            (
                "/herald.v1.EventTypeService/ArchiveEventType",
                Access::Needs(Scope::EndpointsWrite),
            ),
            (
                "/herald.v1.DeadLetterService/ListDeadLetters",
                Access::Needs(Scope::Dlq),
            ),
            (
                "/herald.v1.DeadLetterService/ReplayDeadLetters",
                Access::Needs(Scope::Dlq),
            ),
            (
                "/herald.v1.ClusterService/GetStatus",
                Access::Needs(Scope::Admin),
            ),
            (
                "/herald.v1.EventService/SomethingNew",
                Access::Needs(Scope::Admin),
            ),
            ("/grpc.health.v1.Health/Check", Access::Open),
            ("/grpc.health.v1.Health/Watch", Access::Open),
            (
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                Access::Open,
            ),
            (
                "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                Access::Open,
            ),
            ("/", Access::Needs(Scope::Admin)),
            ("", Access::Needs(Scope::Admin)),
        ];
        for (path, want) in table {
            assert_eq!(required(path), want, "{path}");
        }
    }
}
