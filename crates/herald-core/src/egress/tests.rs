//! Unit tests of the egress (SSRF) address rules.

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
        // Leading zeros could mean octal to other tools: std refuses them, and so do we.
        "010.0.0.0/8",
        "10.0.0.010",
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
        let network = IpNet::new(addr, prefix).unwrap().trunc().addr();
        let block = Cidr::new(network, prefix).unwrap();
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
