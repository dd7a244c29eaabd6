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
//! The file depends on `std` only, so it can be compiled into any crate.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The setting operators use to allow-list refused ranges, named in every refusal.
pub const ALLOW_LIST_SETTING: &str = "delivery.allow_cidrs";

/// An IP network: an address and a prefix length, with no bits set after the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The block `addr/prefix`. Fails if the prefix is longer than the address or if
    /// `addr` has bits set after the prefix (the error names the intended block).
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Cidr, CidrError> {
        let max = max_prefix(addr);
        if prefix > max {
            return Err(CidrError::PrefixTooLong {
                input: format!("{addr}/{prefix}"),
                max,
            });
        }
        let network = Cidr {
            addr: mask(addr, prefix),
            prefix,
        };
        if network.addr != addr {
            return Err(CidrError::HostBitsSet {
                input: format!("{addr}/{prefix}"),
                network,
            });
        }
        Ok(network)
    }

    /// The block holding exactly `addr` (`/32` or `/128`).
    pub fn host(addr: IpAddr) -> Cidr {
        Cidr {
            addr,
            prefix: max_prefix(addr),
        }
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether the block is a single address (`/32` or `/128`).
    pub fn is_host(&self) -> bool {
        self.prefix == max_prefix(self.addr)
    }

    /// Whether `ip` lies in the block. Families never mix: `10.0.0.0/8` does not contain
    /// `::ffff:10.0.0.1` (the [`EgressPolicy`] looks inside such addresses itself).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(ip, self.prefix) == self.addr
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `10.0.0.0/8`, `fd00::/8`, or a bare address for a single host (`127.0.0.1`).
    /// Surrounding whitespace is ignored.
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
            None => {
                let addr: IpAddr = trimmed.parse().map_err(|_| syntax())?;
                (addr, u16::from(max_prefix(addr)))
            }
        };
        let max = max_prefix(addr);
        match u8::try_from(prefix) {
            Ok(prefix) if prefix <= max => Cidr::new(addr, prefix).map_err(|err| match err {
                CidrError::HostBitsSet { network, .. } => CidrError::HostBitsSet {
                    input: trimmed.to_owned(),
                    network,
                },
                other => other,
            }),
            _ => Err(CidrError::PrefixTooLong {
                input: trimmed.to_owned(),
                max,
            }),
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
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

/// `addr` with every bit after `prefix` cleared; `prefix` must fit the family.
fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let keep = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & keep))
        }
        IpAddr::V6(v6) => {
            let keep = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & keep))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    /// Address, expected class (`None` = public), and for embedded forms the IPv4 inside.
    const TABLE: &[(&str, Option<AddressClass>, Option<&str>)] = {
        use AddressClass::*;
        &[
            // IPv4 public
            ("8.8.8.8", None, None),
            ("1.1.1.1", None, None),
            ("93.184.216.34", None, None),
            ("100.63.255.255", None, None),
            ("100.128.0.0", None, None),
            ("172.15.255.255", None, None),
            ("172.32.0.0", None, None),
            ("192.167.255.255", None, None),
            ("192.169.0.0", None, None),
            ("198.17.255.255", None, None),
            ("198.20.0.0", None, None),
            ("223.255.255.255", None, None),
            ("169.253.255.255", None, None),
            ("11.0.0.0", None, None),
            ("126.255.255.255", None, None),
            ("128.0.0.0", None, None),
            ("192.0.1.1", None, None),
            ("192.0.3.1", None, None),
            // IPv4 refused
            ("0.0.0.0", Some(Unspecified), None),
            ("0.1.2.3", Some(ThisNetwork), None),
            ("0.255.255.255", Some(ThisNetwork), None),
            ("127.0.0.1", Some(Loopback), None),
            ("127.255.255.254", Some(Loopback), None),
            ("10.0.0.0", Some(Private), None),
            ("10.255.255.255", Some(Private), None),
            ("172.16.0.1", Some(Private), None),
            ("172.31.255.255", Some(Private), None),
            ("192.168.1.1", Some(Private), None),
            ("100.64.0.1", Some(SharedAddressSpace), None),
            ("100.127.255.255", Some(SharedAddressSpace), None),
            ("169.254.0.1", Some(LinkLocal), None),
            ("169.254.255.255", Some(LinkLocal), None),
            ("169.254.169.254", Some(CloudMetadata), None),
            ("169.254.170.2", Some(CloudMetadata), None),
            ("100.100.100.200", Some(CloudMetadata), None),
            ("168.63.129.16", Some(CloudMetadata), None),
            ("192.0.0.192", Some(CloudMetadata), None),
            ("192.0.0.8", Some(Reserved), None),
            ("192.0.2.1", Some(Documentation), None),
            ("198.51.100.7", Some(Documentation), None),
            ("203.0.113.255", Some(Documentation), None),
            ("192.88.99.1", Some(Reserved), None),
            ("198.18.0.1", Some(Benchmarking), None),
            ("198.19.255.255", Some(Benchmarking), None),
            ("224.0.0.1", Some(Multicast), None),
            ("239.255.255.250", Some(Multicast), None),
            ("240.0.0.1", Some(Reserved), None),
            ("255.255.255.254", Some(Reserved), None),
            ("255.255.255.255", Some(Broadcast), None),
            // IPv6 public
            ("2606:4700:4700::1111", None, None),
            ("2001:4860:4860::8888", None, None),
            ("2a00:1450:4001:80b::200e", None, None),
            ("2001:200::1", None, None),
            ("3ffe::1", None, None),
            ("3fff:1000::1", None, None),
            // IPv6 refused
            ("::", Some(Unspecified), None),
            ("::1", Some(Loopback), None),
            ("fe80::1", Some(LinkLocal), None),
            ("febf:ffff::1", Some(LinkLocal), None),
            ("fec0::1", Some(SiteLocal), None),
            ("fc00::1", Some(UniqueLocal), None),
            ("fd12:3456:789a::1", Some(UniqueLocal), None),
            ("fd00:ec2::254", Some(CloudMetadata), None),
            ("fd00:ec2::23", Some(CloudMetadata), None),
            ("fd20:ce::254", Some(CloudMetadata), None),
            ("ff02::1", Some(Multicast), None),
            ("ff05::1:3", Some(Multicast), None),
            ("2001::1", Some(Teredo), None),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", Some(Teredo), None),
            ("2001:2::1", Some(Benchmarking), None),
            ("2001:db8::1", Some(Documentation), None),
            ("3fff::1", Some(Documentation), None),
            ("3fff:fff::1", Some(Documentation), None),
            ("2001:10::1", Some(Reserved), None),
            ("2001:1::1", Some(Reserved), None),
            ("100::1", Some(Reserved), None),
            ("64:ff9b:1::a00:1", Some(Reserved), None),
            ("::1:0:0:1", Some(Reserved), None),
            ("4000::1", Some(Reserved), None),
            ("1::1", Some(Reserved), None),
            ("e000::1", Some(Reserved), None),
            // IPv6 embedding IPv4: the IPv4 address decides
            ("::ffff:127.0.0.1", Some(Loopback), Some("127.0.0.1")),
            ("::ffff:7f00:1", Some(Loopback), Some("127.0.0.1")),
            ("::ffff:10.1.2.3", Some(Private), Some("10.1.2.3")),
            (
                "::ffff:169.254.169.254",
                Some(CloudMetadata),
                Some("169.254.169.254"),
            ),
            ("::ffff:0.0.0.0", Some(Unspecified), Some("0.0.0.0")),
            ("::ffff:8.8.8.8", None, None),
            ("::ffff:0:192.168.0.1", Some(Private), Some("192.168.0.1")),
            ("::127.0.0.1", Some(Loopback), Some("127.0.0.1")),
            ("::0.0.0.2", Some(ThisNetwork), Some("0.0.0.2")),
            ("::8.8.8.8", None, None),
            ("64:ff9b::127.0.0.1", Some(Loopback), Some("127.0.0.1")),
            (
                "64:ff9b::a9fe:a9fe",
                Some(CloudMetadata),
                Some("169.254.169.254"),
            ),
            ("64:ff9b::8.8.8.8", None, None),
            ("2002:7f00:1::", Some(Loopback), Some("127.0.0.1")),
            ("2002:a00:1:1::1", Some(Private), Some("10.0.0.1")),
            (
                "2002:a9fe:a9fe::",
                Some(CloudMetadata),
                Some("169.254.169.254"),
            ),
            ("2002:808:808::1", None, None),
        ]
    };

    #[test]
    fn classification_table() {
        for &(addr, class, embedded) in TABLE {
            let got = classify(ip(addr));
            assert_eq!(got.map(|r| r.class), class, "{addr}");
            assert_eq!(
                got.and_then(|r| r.embedded).map(|e| IpAddr::V4(e.v4)),
                embedded.map(ip),
                "{addr}"
            );
            if let Some(refusal) = got {
                assert_eq!(refusal.addr, ip(addr));
                assert!(refusal
                    .to_string()
                    .starts_with(&format!("{} is ", ip(addr))));
            }
            // The default policy is exactly the classification.
            assert_eq!(EgressPolicy::default().check(ip(addr)).err(), got, "{addr}");
        }
    }

    #[test]
    fn refusal_messages_name_address_class_and_setting() {
        let loopback = classify(ip("127.0.0.1")).unwrap();
        assert_eq!(
            loopback.to_string(),
            "127.0.0.1 is a loopback address; allow it with delivery.allow_cidrs"
        );
        let mapped = classify(ip("::ffff:10.0.0.1")).unwrap();
        assert_eq!(
            mapped.to_string(),
            "::ffff:10.0.0.1 is an IPv4-mapped IPv6 address for 10.0.0.1, a private \
             address; allow it with delivery.allow_cidrs"
        );
        let metadata = classify(ip("169.254.169.254")).unwrap();
        assert_eq!(
            metadata.to_string(),
            "169.254.169.254 is a cloud metadata address; only an exact entry for it \
             (169.254.169.254/32) in delivery.allow_cidrs permits it"
        );
        assert_eq!(loopback.class.name(), "loopback");
    }

    #[test]
    fn allow_list_permits_listed_blocks_only() {
        let policy = EgressPolicy::new(vec![cidr("10.0.0.0/8"), cidr("fd00::/8")]);
        assert_eq!(policy.check(ip("10.1.2.3")), Ok(()));
        assert_eq!(policy.check(ip("fd12::1")), Ok(()));
        assert_eq!(policy.check(ip("8.8.8.8")), Ok(()));
        assert_eq!(
            policy.check(ip("192.168.0.1")).unwrap_err().class,
            AddressClass::Private
        );
        assert_eq!(
            policy.check(ip("fc00::1")).unwrap_err().class,
            AddressClass::UniqueLocal
        );
        // Embedded forms are allowed by their IPv4 address's entry, or their own.
        assert_eq!(policy.check(ip("::ffff:10.0.0.1")), Ok(()));
        assert_eq!(policy.check(ip("64:ff9b::10.0.0.1")), Ok(()));
        let mapped_only = EgressPolicy::new(vec![cidr("::ffff:127.0.0.0/104")]);
        assert_eq!(mapped_only.check(ip("::ffff:127.0.0.1")), Ok(()));
        assert!(mapped_only.check(ip("127.0.0.1")).is_err());
        // fd00:ec2::254 is in fd00::/8 but is metadata: a block does not open it.
        assert_eq!(
            policy.check(ip("fd00:ec2::254")).unwrap_err().class,
            AddressClass::CloudMetadata
        );
    }

    #[test]
    fn metadata_needs_an_exact_entry() {
        let broad = EgressPolicy::new(vec![cidr("169.254.0.0/16"), cidr("0.0.0.0/0")]);
        assert_eq!(broad.check(ip("169.254.0.1")), Ok(()));
        assert!(broad.check(ip("169.254.169.254")).is_err());
        assert!(broad.check(ip("::ffff:169.254.169.254")).is_err());
        let exact = EgressPolicy::new(vec![cidr("169.254.169.254/32")]);
        assert_eq!(exact.check(ip("169.254.169.254")), Ok(()));
        assert_eq!(exact.check(ip("::ffff:169.254.169.254")), Ok(()));
        assert!(exact.check(ip("169.254.0.1")).is_err());
    }

    #[test]
    fn loopback_policy() {
        let policy = EgressPolicy::allowing_loopback();
        assert_eq!(policy.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(policy.check(ip("127.3.2.1")), Ok(()));
        assert_eq!(policy.check(ip("::1")), Ok(()));
        assert_eq!(policy.check(ip("::ffff:127.0.0.1")), Ok(()));
        assert!(policy.check(ip("10.0.0.1")).is_err());
        assert!(policy.check(ip("0.0.0.0")).is_err());
    }

    #[test]
    fn cidr_parse_and_display() {
        for (text, shown) in [
            ("10.0.0.0/8", "10.0.0.0/8"),
            (" 172.16.0.0/12 ", "172.16.0.0/12"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("127.0.0.1", "127.0.0.1/32"),
            ("::1/128", "::1/128"),
            ("::1", "::1/128"),
            ("fd00::/8", "fd00::/8"),
            ("FE80::/10", "fe80::/10"),
            ("::/0", "::/0"),
            ("::ffff:0:0/96", "::ffff:0.0.0.0/96"),
        ] {
            assert_eq!(cidr(text).to_string(), shown, "{text}");
            assert_eq!(cidr(shown), cidr(text));
        }
        for bad in [
            "",
            "10.0.0.0/",
            "/8",
            "10.0.0/8",
            "10.0.0.0/+8",
            "10.0.0.0/a",
            "x",
            "10.0.0.0/8/8",
            "[::1]/128",
            "10.0.0.0/0008",
        ] {
            assert!(
                matches!(bad.parse::<Cidr>(), Err(CidrError::Syntax { .. })),
                "{bad:?}"
            );
        }
        assert_eq!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(CidrError::PrefixTooLong {
                input: "10.0.0.0/33".into(),
                max: 32
            })
        );
        assert!(matches!(
            "::/129".parse::<Cidr>(),
            Err(CidrError::PrefixTooLong { max: 128, .. })
        ));
        assert!(matches!(
            "::/999".parse::<Cidr>(),
            Err(CidrError::PrefixTooLong { .. })
        ));
        let err = "10.0.0.1/8".parse::<Cidr>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"10.0.0.1/8\" has bits set after its prefix length; did you mean 10.0.0.0/8?"
        );
        assert!(cidr("10.0.0.0/8").contains(ip("10.255.0.1")));
        assert!(!cidr("10.0.0.0/8").contains(ip("11.0.0.0")));
        assert!(!cidr("10.0.0.0/8").contains(ip("::ffff:10.0.0.1")));
        assert!(cidr("0.0.0.0/0").contains(ip("1.2.3.4")));
        assert!(!cidr("0.0.0.0/0").contains(ip("::1")));
        assert!(cidr("::/0").contains(ip("::1")));
        assert!(cidr("fe80::/10").contains(ip("febf::1")));
        assert!(!cidr("fe80::/10").contains(ip("fec0::1")));
        assert!(cidr("127.0.0.1").is_host());
        assert!(!cidr("127.0.0.0/8").is_host());
    }

    fn any_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|n| IpAddr::V4(Ipv4Addr::from(n))),
            any::<u128>().prop_map(|n| IpAddr::V6(Ipv6Addr::from(n))),
        ]
    }

    proptest! {
        #[test]
        fn all_of_10_8_is_refused_unless_allowed(low in 0u32..(1 << 24)) {
            let addr = IpAddr::V4(Ipv4Addr::from((10u32 << 24) | low));
            let refusal = EgressPolicy::default().check(addr).unwrap_err();
            prop_assert_eq!(refusal.class, AddressClass::Private);
            prop_assert_eq!(EgressPolicy::new(vec![cidr("10.0.0.0/8")]).check(addr), Ok(()));
            // Its IPv4-mapped, NAT64 and 6to4 forms too.
            let v4 = Ipv4Addr::from((10u32 << 24) | low);
            let o = v4.octets();
            for v6 in [
                v4.to_ipv6_mapped(),
                Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, u16::from_be_bytes([o[0], o[1]]), u16::from_be_bytes([o[2], o[3]])),
                Ipv6Addr::new(0x2002, u16::from_be_bytes([o[0], o[1]]), u16::from_be_bytes([o[2], o[3]]), 0, 0, 0, 0, 1),
            ] {
                let refusal = EgressPolicy::default().check(IpAddr::V6(v6)).unwrap_err();
                prop_assert_eq!(refusal.class, AddressClass::Private);
                prop_assert_eq!(refusal.embedded.map(|e| e.v4), Some(v4));
            }
        }

        #[test]
        fn mapped_v4_is_judged_like_v4(n in any::<u32>()) {
            let v4 = Ipv4Addr::from(n);
            let plain = classify(IpAddr::V4(v4)).map(|r| r.class);
            let mapped = classify(IpAddr::V6(v4.to_ipv6_mapped())).map(|r| r.class);
            prop_assert_eq!(plain, mapped);
        }

        #[test]
        fn allowing_everything_allows_all_but_metadata(addr in any_ip()) {
            let all = EgressPolicy::new(vec![cidr("0.0.0.0/0"), cidr("::/0")]);
            let expected = match classify(addr) {
                Some(r) if r.class == AddressClass::CloudMetadata => Err(r),
                _ => Ok(()),
            };
            prop_assert_eq!(all.check(addr), expected);
        }

        #[test]
        fn an_allowed_block_allows_exactly_its_members(addr in any_ip(), prefix in 0u8..=128) {
            let prefix = prefix.min(max_prefix(addr));
            let block = Cidr::new(mask(addr, prefix), prefix).unwrap();
            prop_assert!(block.contains(addr));
            prop_assert_eq!(block.to_string().parse::<Cidr>(), Ok(block));
            let policy = EgressPolicy::new(vec![block]);
            match classify(addr) {
                None => prop_assert_eq!(policy.check(addr), Ok(())),
                Some(r) if r.class == AddressClass::CloudMetadata && !block.is_host() => {
                    prop_assert!(policy.check(addr).is_err())
                }
                Some(_) => prop_assert_eq!(policy.check(addr), Ok(())),
            }
        }

        #[test]
        fn cidr_parsing_never_panics(text in "\\PC{0,40}") {
            let _ = text.parse::<Cidr>();
        }
    }
}
