//! Egress policy: which IP addresses a webhook delivery may connect to.
//!
//! Pure classification, no I/O: [`classify`] says why an address is not a public unicast
//! destination (loopback, private, link-local, unique-local, multicast, cloud metadata,
//! …), looking inside IPv6 forms that embed an IPv4 address (IPv4-mapped and -compatible,
//! SIIT, NAT64, 6to4); [`EgressPolicy::check`] applies an operator allow-list of [`Cidr`]
//! blocks on top. Resolving host names and enforcing the verdict at connect time is the
//! delivery client's job; this module only judges single addresses.
//!
//! The rules are deliberately conservative: anything that is not clearly global unicast
//! is refused (all IPv6 outside `2000::/3`, the IETF protocol-assignment blocks, Teredo),
//! and an allow-list entry is the only way in. Cloud metadata addresses need an exact
//! host entry (`/32` or `/128`): allowing `169.254.0.0/16` for some link-local service
//! must not also open the instance metadata service.
//!
//! Block arithmetic (masking, containment) is the `ipnet` crate's; the text form of an
//! allow-list entry and its errors are this module's.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;

/// The setting operators use to allow-list refused ranges, named in every refusal.
pub const ALLOW_LIST_SETTING: &str = "delivery.allow_cidrs";

/// An IP network: an address and a prefix length, with no bits set after the prefix.
///
/// The block arithmetic (prefix bounds, masking, containment, display) is
/// [`ipnet::IpNet`]'s; this type adds the strict text form and the errors an operator
/// can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr(IpNet);

impl Cidr {
    /// The block `addr/prefix`. Fails if the prefix is longer than the address or if
    /// `addr` has bits set after the prefix (the error names the intended block).
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Cidr, CidrError> {
        let input = || format!("{addr}/{prefix}");
        let net = IpNet::new(addr, prefix).map_err(|_| CidrError::PrefixTooLong {
            input: input(),
            max: max_prefix(addr),
        })?;
        let network = net.trunc();
        if network != net {
            return Err(CidrError::HostBitsSet {
                input: input(),
                network: Cidr(network),
            });
        }
        Ok(Cidr(net))
    }

    /// The block holding exactly `addr` (`/32` or `/128`).
    pub fn host(addr: IpAddr) -> Cidr {
        Cidr(IpNet::from(addr))
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.0.network()
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.0.prefix_len()
    }

    /// Whether the block is a single address (`/32` or `/128`).
    pub fn is_host(&self) -> bool {
        self.0.prefix_len() == self.0.max_prefix_len()
    }

    /// Whether `ip` lies in the block. Families never mix: `10.0.0.0/8` does not contain
    /// `::ffff:10.0.0.1` (the [`EgressPolicy`] looks inside such addresses itself).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip)
    }
}

impl From<Cidr> for IpNet {
    fn from(cidr: Cidr) -> IpNet {
        cidr.0
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `10.0.0.0/8`, `fd00::/8`, or a bare address for a single host (`127.0.0.1`).
    /// Surrounding whitespace is ignored.
    ///
    /// The address is read by the standard library's parser, not by
    /// `IpNet::from_str`: ipnet's copy of an older std parser takes `010.0.0.0` as
    /// decimal 10, where other tools read octal 8, and an allow-list must not be
    /// ambiguous. The prefix is one to three decimal digits.
    fn from_str(text: &str) -> Result<Cidr, CidrError> {
        let trimmed = text.trim();
        let syntax = || CidrError::Syntax {
            input: text.to_owned(),
        };
        let (addr, prefix) = match trimmed.split_once('/') {
            Some((addr, prefix)) => {
                // Digits only: `u8::from_str` would also take `+8`.
                if prefix.is_empty()
                    || prefix.len() > 3
                    || !prefix.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(syntax());
                }
                let addr: IpAddr = addr.parse().map_err(|_| syntax())?;
                let prefix: u16 = prefix.parse().map_err(|_| syntax())?;
                (addr, prefix)
            }
            None => return trimmed.parse().map(Cidr::host).map_err(|_| syntax()),
        };
        let too_long = || CidrError::PrefixTooLong {
            input: trimmed.to_owned(),
            max: max_prefix(addr),
        };
        let prefix = u8::try_from(prefix).map_err(|_| too_long())?;
        Cidr::new(addr, prefix).map_err(|err| match err {
            CidrError::HostBitsSet { network, .. } => CidrError::HostBitsSet {
                input: trimmed.to_owned(),
                network,
            },
            CidrError::PrefixTooLong { .. } => too_long(),
            other => other,
        })
    }
}

impl fmt::Display for Cidr {
    /// Always with the prefix: `127.0.0.1/32`, `fe80::/10`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Why a text is not a [`Cidr`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidrError {
    /// Not an address, or an address with a malformed prefix.
    Syntax {
        /// The rejected text.
        input: String,
    },
    /// The prefix is longer than the address (32 for IPv4, 128 for IPv6).
    PrefixTooLong {
        /// The rejected text.
        input: String,
        /// The longest prefix this family allows.
        max: u8,
    },
    /// Bits are set after the prefix, e.g. `10.0.0.1/8`.
    HostBitsSet {
        /// The rejected text.
        input: String,
        /// The block that was probably meant.
        network: Cidr,
    },
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CidrError::Syntax { input } => write!(
                f,
                "{input:?} is not a CIDR block; write an address and a prefix length, \
                 such as 10.0.0.0/8 or fd00::/8"
            ),
            CidrError::PrefixTooLong { input, max } => write!(
                f,
                "{input:?} has a prefix length over {max}, the size of its address"
            ),
            CidrError::HostBitsSet { input, network } => write!(
                f,
                "{input:?} has bits set after its prefix length; did you mean {network}?"
            ),
        }
    }
}

impl std::error::Error for CidrError {}

/// Which addresses deliveries may reach: everything [`classify`] accepts, plus the
/// allow-listed blocks. The default (empty allow-list) refuses every non-public range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    /// Blocks that are reachable even though [`classify`] refuses them. A cloud metadata
    /// address is only permitted by an exact host entry (`/32` or `/128`).
    pub allow: Vec<Cidr>,
}

impl EgressPolicy {
    /// A policy with this allow-list.
    pub fn new(allow: Vec<Cidr>) -> EgressPolicy {
        EgressPolicy { allow }
    }

    /// Allows loopback (`127.0.0.0/8` and `::1/128`), for local development and tests.
    pub fn allowing_loopback() -> EgressPolicy {
        EgressPolicy::new(vec![
            Cidr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8).expect("a valid block"),
            Cidr::host(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        ])
    }

    /// Allows `ip`, or says why not. An address embedding an IPv4 address (such as
    /// `::ffff:10.0.0.1`) is allowed when either it or the embedded address is listed.
    pub fn check(&self, ip: IpAddr) -> Result<(), Refusal> {
        let Some(refusal) = classify(ip) else {
            return Ok(());
        };
        let embedded = refusal.embedded.map(|e| IpAddr::V4(e.v4));
        let listed = |cidr: &Cidr| {
            (refusal.class != AddressClass::CloudMetadata || cidr.is_host())
                && (cidr.contains(ip) || embedded.is_some_and(|v4| cidr.contains(v4)))
        };
        if self.allow.iter().any(listed) {
            Ok(())
        } else {
            Err(refusal)
        }
    }
}

/// Kinds of address a delivery is refused to reach unless allow-listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressClass {
    /// `0.0.0.0`, `::`: on Linux, connecting there reaches the local host.
    Unspecified,
    /// `0.0.0.0/8`, "this network".
    ThisNetwork,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918: `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`.
    Private,
    /// `100.64.0.0/10`, carrier-grade NAT (RFC 6598).
    SharedAddressSpace,
    /// `169.254.0.0/16`, `fe80::/10`.
    LinkLocal,
    /// `fc00::/7`.
    UniqueLocal,
    /// `fec0::/10`, deprecated but still routed internally on some networks.
    SiteLocal,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `198.18.0.0/15`, `2001:2::/48`.
    Benchmarking,
    /// `192.0.2.0/24`, `198.51.100.0/24`, `203.0.113.0/24`, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// `2001::/32`: the IPv4 address inside is obfuscated and the relay is not ours to
    /// trust.
    Teredo,
    /// Instance metadata and platform services (AWS, GCP, Azure, Alibaba, Oracle, ECS, EKS).
    CloudMetadata,
    /// Everything else that is not global unicast: `240.0.0.0/4`, `192.0.0.0/24`,
    /// `192.88.99.0/24`, IPv6 outside `2000::/3`, `100::/64`, `2001::/23`,
    /// `64:ff9b:1::/48`.
    Reserved,
}

impl AddressClass {
    /// A fixed, low-cardinality name for metrics labels and logs.
    pub fn name(self) -> &'static str {
        match self {
            AddressClass::Unspecified => "unspecified",
            AddressClass::ThisNetwork => "this_network",
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private",
            AddressClass::SharedAddressSpace => "shared",
            AddressClass::LinkLocal => "link_local",
            AddressClass::UniqueLocal => "unique_local",
            AddressClass::SiteLocal => "site_local",
            AddressClass::Multicast => "multicast",
            AddressClass::Broadcast => "broadcast",
            AddressClass::Benchmarking => "benchmarking",
            AddressClass::Documentation => "documentation",
            AddressClass::Teredo => "teredo",
            AddressClass::CloudMetadata => "cloud_metadata",
            AddressClass::Reserved => "reserved",
        }
    }

    /// The class in a sentence: "a loopback address".
    pub fn describe(self) -> &'static str {
        match self {
            AddressClass::Unspecified => "an unspecified address",
            AddressClass::ThisNetwork => "a \"this network\" address (0.0.0.0/8)",
            AddressClass::Loopback => "a loopback address",
            AddressClass::Private => "a private address",
            AddressClass::SharedAddressSpace => "a carrier-grade NAT address (100.64.0.0/10)",
            AddressClass::LinkLocal => "a link-local address",
            AddressClass::UniqueLocal => "a unique-local address",
            AddressClass::SiteLocal => "a site-local address",
            AddressClass::Multicast => "a multicast address",
            AddressClass::Broadcast => "the broadcast address",
            AddressClass::Benchmarking => "a benchmarking address",
            AddressClass::Documentation => "a documentation address",
            AddressClass::Teredo => "a Teredo address",
            AddressClass::CloudMetadata => "a cloud metadata address",
            AddressClass::Reserved => "a reserved address",
        }
    }
}

/// IPv6 forms that carry an IPv4 address in their low (or, for 6to4, high) bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Embedding {
    /// `::ffff:a.b.c.d`: a dual-stack socket connects to the IPv4 address itself.
    Ipv4Mapped,
    /// `::a.b.c.d` (deprecated).
    Ipv4Compatible,
    /// `::ffff:0:a.b.c.d` (SIIT, RFC 2765).
    Ipv4Translated,
    /// `64:ff9b::a.b.c.d`: a NAT64 gateway connects to the IPv4 address.
    Nat64,
    /// `2002:aabb:ccdd::/48`: 6to4, relayed to `a.b.c.d`.
    SixToFour,
}

impl Embedding {
    fn describe(self) -> &'static str {
        match self {
            Embedding::Ipv4Mapped => "an IPv4-mapped IPv6 address",
            Embedding::Ipv4Compatible => "an IPv4-compatible IPv6 address",
            Embedding::Ipv4Translated => "an IPv4-translated IPv6 address",
            Embedding::Nat64 => "a NAT64 address (64:ff9b::/96)",
            Embedding::SixToFour => "a 6to4 address (2002::/16)",
        }
    }
}

/// An IPv4 address found inside an IPv6 one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Embedded {
    /// How it is embedded.
    pub kind: Embedding,
    /// The IPv4 address.
    pub v4: Ipv4Addr,
}

/// Why an address is refused: the address, its class and, for an IPv6 address that
/// embeds an IPv4 one, which form and address (the class is then the IPv4 address's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Refusal {
    /// The refused address, as it would be connected to.
    pub addr: IpAddr,
    /// What kind of address it is (or its embedded IPv4 address is).
    pub class: AddressClass,
    /// The IPv4 address inside, if the class comes from one.
    pub embedded: Option<Embedded>,
}

impl Refusal {
    /// Why, without the address: "a loopback address", or "an IPv4-mapped IPv6 address
    /// for 127.0.0.1, a loopback address".
    pub fn reason(&self) -> String {
        match self.embedded {
            None => self.class.describe().to_owned(),
            Some(e) => format!(
                "{} for {}, {}",
                e.kind.describe(),
                e.v4,
                self.class.describe()
            ),
        }
    }

    /// How to allow it anyway.
    pub fn hint(&self) -> String {
        if self.class == AddressClass::CloudMetadata {
            format!(
                "only an exact entry for it ({}) in {ALLOW_LIST_SETTING} permits it",
                Cidr::host(self.addr)
            )
        } else {
            format!("allow it with {ALLOW_LIST_SETTING}")
        }
    }
}

impl fmt::Display for Refusal {
    /// "127.0.0.1 is a loopback address; allow it with delivery.allow_cidrs".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is {}; {}", self.addr, self.reason(), self.hint())
    }
}

impl std::error::Error for Refusal {}

/// Why `ip` is not a public unicast destination, or `None` if it is one. The allow-list
/// is not consulted; see [`EgressPolicy::check`].
pub fn classify(ip: IpAddr) -> Option<Refusal> {
    let refusal = |class, embedded| Refusal {
        addr: ip,
        class,
        embedded,
    };
    match ip {
        IpAddr::V4(v4) => classify_v4(v4).map(|class| refusal(class, None)),
        IpAddr::V6(v6) => {
            if let Some(class) = classify_v6_exact(v6) {
                return Some(refusal(class, None));
            }
            if let Some(embedded) = embedded_v4(v6) {
                return classify_v4(embedded.v4).map(|class| refusal(class, Some(embedded)));
            }
            classify_v6(v6).map(|class| refusal(class, None))
        }
    }
}

/// Well-known metadata and platform-service addresses.
const METADATA_V4: [Ipv4Addr; 6] = [
    Ipv4Addr::new(169, 254, 169, 254), // AWS, GCP, Azure, OpenStack, Oracle IMDS
    Ipv4Addr::new(169, 254, 170, 2),   // AWS ECS task credentials
    Ipv4Addr::new(169, 254, 170, 23),  // AWS EKS Pod Identity
    Ipv4Addr::new(100, 100, 100, 200), // Alibaba Cloud
    Ipv4Addr::new(168, 63, 129, 16),   // Azure WireServer (a public address)
    Ipv4Addr::new(192, 0, 0, 192),     // Oracle Cloud (legacy)
];

/// Well-known IPv6 metadata addresses.
const METADATA_V6: [Ipv6Addr; 3] = [
    Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254), // AWS IMDS
    Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0023), // AWS EKS Pod Identity
    Ipv6Addr::new(0xfd20, 0x00ce, 0, 0, 0, 0, 0, 0x0254), // GCP metadata
];

fn classify_v4(ip: Ipv4Addr) -> Option<AddressClass> {
    use AddressClass::*;
    let [a, b, c, _] = ip.octets();
    let class = if METADATA_V4.contains(&ip) {
        CloudMetadata
    } else if ip.is_unspecified() {
        Unspecified
    } else if a == 0 {
        ThisNetwork
    } else if a == 127 {
        Loopback
    } else if a == 10 || (a == 172 && b & 0xf0 == 16) || (a == 192 && b == 168) {
        Private
    } else if a == 100 && b & 0xc0 == 64 {
        SharedAddressSpace
    } else if a == 169 && b == 254 {
        LinkLocal
    } else if (a, b, c) == (192, 0, 2) || (a, b, c) == (198, 51, 100) || (a, b, c) == (203, 0, 113)
    {
        Documentation
    } else if a == 198 && b & 0xfe == 18 {
        Benchmarking
    } else if a & 0xf0 == 224 {
        Multicast
    } else if ip.is_broadcast() {
        Broadcast
    } else if a & 0xf0 == 240 || (a, b, c) == (192, 0, 0) || (a, b, c) == (192, 88, 99) {
        Reserved
    } else {
        return None;
    };
    Some(class)
}

/// Single IPv6 addresses judged before looking for an embedded IPv4 address.
fn classify_v6_exact(ip: Ipv6Addr) -> Option<AddressClass> {
    if ip.is_unspecified() {
        Some(AddressClass::Unspecified)
    } else if ip.is_loopback() {
        Some(AddressClass::Loopback)
    } else if METADATA_V6.contains(&ip) {
        Some(AddressClass::CloudMetadata)
    } else {
        None
    }
}

/// The IPv4 address inside `ip`, for the forms that carry one where it can be read.
fn embedded_v4(ip: Ipv6Addr) -> Option<Embedded> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    let kind = match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Embedding::Ipv4Mapped,
        [0, 0, 0, 0, 0xffff, 0, _, _] => Embedding::Ipv4Translated,
        [0, 0, 0, 0, 0, 0, _, _] => Embedding::Ipv4Compatible,
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Embedding::Nat64,
        [0x2002, hi, lo, ..] => {
            let v4 = Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
            return Some(Embedded {
                kind: Embedding::SixToFour,
                v4,
            });
        }
        _ => return None,
    };
    Some(Embedded { kind, v4: low })
}

fn classify_v6(ip: Ipv6Addr) -> Option<AddressClass> {
    use AddressClass::*;
    let s = ip.segments();
    let class = if s[0] & 0xff00 == 0xff00 {
        Multicast
    } else if s[0] & 0xffc0 == 0xfe80 {
        LinkLocal
    } else if s[0] & 0xffc0 == 0xfec0 {
        SiteLocal
    } else if s[0] & 0xfe00 == 0xfc00 {
        UniqueLocal
    } else if s[0] == 0x2001 && s[1] == 0 {
        Teredo
    } else if s[0] == 0x2001 && s[1] == 0x0002 && s[2] == 0 {
        Benchmarking
    } else if (s[0] == 0x2001 && s[1] == 0x0db8) || (s[0] == 0x3fff && s[1] & 0xf000 == 0) {
        Documentation
    } else if s[0] == 0x2001 && s[1] < 0x0200 {
        // 2001::/23, IETF protocol assignments (anycast services, ORCHID, AS112).
        Reserved
    } else if s[0] & 0xe000 != 0x2000 {
        // Outside 2000::/3, the only block allocated for global unicast: `::/8`
        // leftovers, `100::/64` (discard), `64:ff9b:1::/48` (local-use NAT64), …
        Reserved
    } else {
        return None;
    };
    Some(class)
}

fn max_prefix(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

#[cfg(test)]
mod tests;
