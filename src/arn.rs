//! Amazon Resource Names: the one place trailguard takes an ARN apart. Pure.
//!
//! `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`. The partition (`aws`, `aws-us-gov`,
//! `aws-cn`, ...) is read from the ARN or derived from a region, never assumed.

/// A parsed ARN, borrowing from its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arn<'a> {
    pub text: &'a str,
    pub partition: &'a str,
    pub service: &'a str,
    pub region: &'a str,
    pub account: &'a str,
    pub resource: &'a str,
}

impl<'a> Arn<'a> {
    /// Parses `text`; `None` if it is not an ARN.
    pub fn parse(text: &'a str) -> Option<Self> {
        let mut p = text.splitn(6, ':');
        let (arn, partition, service, region, account, resource) =
            (p.next()?, p.next()?, p.next()?, p.next()?, p.next()?, p.next()?);
        (arn == "arn" && !partition.is_empty() && !service.is_empty()).then_some(Self {
            text,
            partition,
            service,
            region,
            account,
            resource,
        })
    }

    /// The id of a KMS key ARN (`...:key/ID`), if this is one.
    pub fn kms_key_id(&self) -> Option<&'a str> {
        if self.service != "kms" || self.region.is_empty() || self.account.is_empty() {
            return None;
        }
        self.resource.strip_prefix("key/").filter(|id| !id.is_empty())
    }

    /// The alias name of a KMS alias ARN (`...:alias/NAME` → `alias/NAME`).
    pub fn kms_alias(&self) -> Option<&'a str> {
        (self.service == "kms" && self.resource.starts_with("alias/")).then_some(self.resource)
    }

    /// For an assumed-role session (`arn:P:sts::ACCOUNT:assumed-role/ROLE/SESSION`): the role's
    /// ARN without its path, `arn:P:iam::ACCOUNT:role/ROLE`.
    pub fn session_role(&self) -> Option<String> {
        let rest = self.resource.strip_prefix("assumed-role/")?;
        let role = rest.split('/').next().filter(|r| !r.is_empty())?;
        (self.service == "sts").then(|| format!("arn:{}:iam::{}:role/{role}", self.partition, self.account))
    }
}

/// A KMS key ARN, parsed once: what remediation needs to reach the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyArn {
    pub arn: String,
    pub partition: String,
    pub region: String,
    pub account: String,
    pub key_id: String,
}

impl KeyArn {
    pub fn parse(text: &str) -> Option<Self> {
        let a = Arn::parse(text)?;
        let key_id = a.kms_key_id()?;
        Some(Self {
            arn: text.to_owned(),
            partition: a.partition.to_owned(),
            region: a.region.to_owned(),
            account: a.account.to_owned(),
            key_id: key_id.to_owned(),
        })
    }

    /// The key ARN for a bare key id in a region and account.
    pub fn from_id(region: &str, account: &str, key_id: &str) -> Self {
        let partition = partition_of(region);
        Self {
            arn: format!("arn:{partition}:kms:{region}:{account}:key/{key_id}"),
            partition: partition.to_owned(),
            region: region.to_owned(),
            account: account.to_owned(),
            key_id: key_id.to_owned(),
        }
    }
}

/// Whether `text` is a KMS key ARN.
pub fn is_kms_key(text: &str) -> bool {
    Arn::parse(text).and_then(|a| a.kms_key_id()).is_some()
}

/// The last segment of a resource ARN (a key id, a user name), or the text itself.
pub fn short_name(text: &str) -> &str {
    text.rsplit(['/', ':']).next().unwrap_or(text)
}

/// The partition a region belongs to.
pub fn partition_of(region: &str) -> &'static str {
    if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else if region.starts_with("us-isob-") {
        "aws-iso-b"
    } else {
        "aws"
    }
}

/// Where a partition's global IAM and its event history live.
pub fn iam_home_region(partition: &str) -> &'static str {
    match partition {
        "aws-us-gov" => "us-gov-west-1",
        "aws-cn" => "cn-north-1",
        "aws-iso" => "us-iso-east-1",
        "aws-iso-b" => "us-isob-east-1",
        _ => "us-east-1",
    }
}

/// Whether `r` looks like a region name (`eu-west-1`, `us-gov-west-1`).
pub fn is_region(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    parts.len() >= 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
        && parts
            .last()
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_arns_in_every_partition() {
        let k = KeyArn::parse("arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/1234abcd").unwrap();
        assert_eq!(
            (
                k.partition.as_str(),
                k.region.as_str(),
                k.account.as_str(),
                k.key_id.as_str()
            ),
            ("aws-us-gov", "us-gov-west-1", "111122223333", "1234abcd")
        );
        assert!(KeyArn::parse("arn:aws:kms:eu-west-1:111122223333:alias/prod").is_none());
        assert!(KeyArn::parse("1234abcd").is_none());
        assert_eq!(
            KeyArn::from_id("cn-north-1", "111122223333", "k").arn,
            "arn:aws-cn:kms:cn-north-1:111122223333:key/k"
        );
    }

    #[test]
    fn session_arns_name_their_role() {
        let a = Arn::parse("arn:aws:sts::111122223333:assumed-role/KeyAdmin/bob").unwrap();
        assert_eq!(
            a.session_role().unwrap(),
            "arn:aws:iam::111122223333:role/KeyAdmin"
        );
        assert!(
            Arn::parse("arn:aws:iam::111122223333:user/bob")
                .unwrap()
                .session_role()
                .is_none()
        );
    }

    #[test]
    fn alias_arns_and_short_names() {
        let a = Arn::parse("arn:aws:kms:eu-west-1:111122223333:alias/prod-db").unwrap();
        assert_eq!(a.kms_alias(), Some("alias/prod-db"));
        assert_eq!(short_name("arn:aws:kms:eu-west-1:1:key/abc"), "abc");
        assert_eq!(iam_home_region(partition_of("cn-northwest-1")), "cn-north-1");
        assert!(is_region("us-gov-west-1") && !is_region("Mars"));
    }
}
