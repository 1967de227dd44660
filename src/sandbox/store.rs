//! In-memory state of the fake: segments of both APIs and the members of each contact list,
//! kept per identifier type.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, SecondsFormat, Utc};

use super::config::{InvalidSandboxConfig, SandboxClient, SandboxConfig};
use super::identifiers::IdentifierType;

/// Members of one identifier type.
///
/// Identifiers that are 64 lowercase hex digits (SHA-256, the form clients send most) are
/// kept as their 32 bytes. That halves memory, and the set compares keys inline instead of
/// following a pointer to each string, which matters at millions of members. Every other
/// identifier is kept as sent. Decoding lowercase hex and encoding it back gives the same
/// text, so [`MemberSet::to_strings`] returns exactly what was added.
#[derive(Debug, Default)]
pub(crate) struct MemberSet {
    sha256: HashSet<[u8; 32]>,
    other: HashSet<String>,
}

impl MemberSet {
    pub(crate) fn insert(&mut self, identifier: &str) {
        match decode_sha256_hex(identifier) {
            Some(digest) => {
                self.sha256.insert(digest);
            }
            None => {
                if !self.other.contains(identifier) {
                    self.other.insert(identifier.to_owned());
                }
            }
        }
    }

    pub(crate) fn remove(&mut self, identifier: &str) {
        match decode_sha256_hex(identifier) {
            Some(digest) => self.sha256.remove(&digest),
            None => self.other.remove(identifier),
        };
    }

    /// Reserves room for `additional` members of the hex form.
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.sha256.reserve(additional);
    }

    pub(crate) fn len(&self) -> usize {
        self.sha256.len() + self.other.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns the members as sent, in no particular order.
    pub(crate) fn to_strings(&self) -> Vec<String> {
        let mut members = Vec::with_capacity(self.len());
        members.extend(self.sha256.iter().map(encode_hex));
        members.extend(self.other.iter().cloned());
        members
    }
}

/// Decodes 64 lowercase hex digits into 32 bytes; any other text returns `None`.
fn decode_sha256_hex(text: &str) -> Option<[u8; 32]> {
    fn nibble(digit: u8) -> Option<u8> {
        match digit {
            b'0'..=b'9' => Some(digit - b'0'),
            b'a'..=b'f' => Some(digit - b'a' + 10),
            _ => None,
        }
    }

    let digits = text.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (byte, pair) in digest.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(digest)
}

fn encode_hex(digest: &[u8; 32]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(64);
    for byte in digest {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

/// Members of one contact list, one set per identifier type.
#[derive(Debug, Default)]
pub(crate) struct ContactList {
    members: HashMap<IdentifierType, MemberSet>,
}

impl ContactList {
    pub(crate) fn members(&self, identifier_type: IdentifierType) -> Option<&MemberSet> {
        self.members.get(&identifier_type)
    }

    pub(crate) fn members_mut(&mut self, identifier_type: IdentifierType) -> &mut MemberSet {
        self.members.entry(identifier_type).or_default()
    }

    /// Number of members over all identifier types.
    pub(crate) fn len(&self) -> usize {
        self.members.values().map(MemberSet::len).sum()
    }

    pub(crate) fn clear(&mut self) {
        self.members.clear();
    }
}

/// A Marketing Solutions contact-list segment.
#[derive(Debug)]
pub(crate) struct MarketingSegment {
    pub(crate) id: i32,
    pub(crate) advertiser_id: String,
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
    pub(crate) contact_list: ContactList,
}

/// A Retail Media contact-list segment.
#[derive(Debug)]
pub(crate) struct RetailSegment {
    pub(crate) id: i64,
    pub(crate) account_id: String,
    pub(crate) retailer_id: String,
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    pub(crate) identifier_type: Option<IdentifierType>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
    pub(crate) contact_list: ContactList,
}

/// A contact-list segment of either API, as amendments, wipes and statistics address it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SegmentKey {
    Marketing(i32),
    Retail(i64),
}

/// Owner of a segment. A client may use the segment only if it may use the owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    Advertiser(String),
    Account(String),
}

impl Owner {
    pub(crate) fn is_visible_to(&self, client: &SandboxClient) -> bool {
        match self {
            Owner::Advertiser(id) => client.may_use_advertiser(id),
            Owner::Account(id) => client.may_use_account(id),
        }
    }
}

/// All segments. Ids grow from the largest configured id, so a new id never repeats one.
#[derive(Debug, Default)]
pub(crate) struct Store {
    pub(crate) marketing: BTreeMap<i32, MarketingSegment>,
    pub(crate) retail: BTreeMap<i64, RetailSegment>,
    next_marketing_id: i32,
    next_retail_id: i64,
}

impl Store {
    /// Builds the store with the segments the configuration declares.
    pub(crate) fn from_config(config: &SandboxConfig) -> Result<Store, InvalidSandboxConfig> {
        let now = Utc::now();
        let mut store = Store {
            next_marketing_id: 1,
            next_retail_id: 1,
            ..Store::default()
        };

        for seed in &config.audiences {
            let id = parse_marketing_id(&seed.id)
                .ok_or_else(|| InvalidSandboxConfig::AudienceId(seed.id.clone()))?;
            if store.marketing.contains_key(&id) {
                return Err(InvalidSandboxConfig::DuplicateSegmentId(seed.id.clone()));
            }
            store.next_marketing_id = store.next_marketing_id.max(id.saturating_add(1));
            store.marketing.insert(
                id,
                MarketingSegment {
                    id,
                    advertiser_id: seed.advertiser_id.clone(),
                    name: seed.name.clone(),
                    description: seed.description.clone(),
                    created_at: now,
                    updated_at: now,
                    contact_list: ContactList::default(),
                },
            );
        }

        for seed in &config.retail_media_segments {
            if seed.id <= 0 {
                return Err(InvalidSandboxConfig::RetailMediaSegmentId(seed.id));
            }
            if store.retail.contains_key(&seed.id) {
                return Err(InvalidSandboxConfig::DuplicateSegmentId(
                    seed.id.to_string(),
                ));
            }
            let identifier_type = IdentifierType::from_retail_name(&seed.identifier_type)
                .filter(|kind| kind.is_retail_list_type())
                .ok_or_else(|| {
                    InvalidSandboxConfig::RetailMediaIdentifierType(seed.identifier_type.clone())
                })?;
            store.next_retail_id = store.next_retail_id.max(seed.id.saturating_add(1));
            store.retail.insert(
                seed.id,
                RetailSegment {
                    id: seed.id,
                    account_id: seed.account_id.clone(),
                    retailer_id: seed.retailer_id.clone(),
                    name: seed.name.clone(),
                    description: None,
                    identifier_type: Some(identifier_type),
                    created_at: now,
                    updated_at: now,
                    contact_list: ContactList::default(),
                },
            );
        }
        Ok(store)
    }

    pub(crate) fn insert_marketing(
        &mut self,
        advertiser_id: &str,
        name: &str,
        description: Option<&str>,
    ) -> &MarketingSegment {
        let id = self.next_marketing_id;
        self.next_marketing_id += 1;
        let now = Utc::now();
        self.marketing.entry(id).or_insert(MarketingSegment {
            id,
            advertiser_id: advertiser_id.to_owned(),
            name: name.to_owned(),
            description: description.map(str::to_owned),
            created_at: now,
            updated_at: now,
            contact_list: ContactList::default(),
        })
    }

    pub(crate) fn insert_retail(
        &mut self,
        account_id: &str,
        retailer_id: &str,
        name: &str,
        description: Option<&str>,
        identifier_type: Option<IdentifierType>,
    ) -> &RetailSegment {
        let id = self.next_retail_id;
        self.next_retail_id += 1;
        let now = Utc::now();
        self.retail.entry(id).or_insert(RetailSegment {
            id,
            account_id: account_id.to_owned(),
            retailer_id: retailer_id.to_owned(),
            name: name.to_owned(),
            description: description.map(str::to_owned),
            identifier_type,
            created_at: now,
            updated_at: now,
            contact_list: ContactList::default(),
        })
    }

    /// Checks whether another segment of the advertiser already has this name.
    pub(crate) fn marketing_name_taken(
        &self,
        advertiser_id: &str,
        name: &str,
        except: Option<i32>,
    ) -> bool {
        self.marketing.values().any(|segment| {
            segment.advertiser_id == advertiser_id
                && segment.name == name
                && Some(segment.id) != except
        })
    }

    /// Checks whether another segment of the account already has this name.
    pub(crate) fn retail_name_taken(
        &self,
        account_id: &str,
        name: &str,
        except: Option<i64>,
    ) -> bool {
        self.retail.values().any(|segment| {
            segment.account_id == account_id && segment.name == name && Some(segment.id) != except
        })
    }

    pub(crate) fn owner(&self, key: SegmentKey) -> Option<Owner> {
        match key {
            SegmentKey::Marketing(id) => self
                .marketing
                .get(&id)
                .map(|segment| Owner::Advertiser(segment.advertiser_id.clone())),
            SegmentKey::Retail(id) => self
                .retail
                .get(&id)
                .map(|segment| Owner::Account(segment.account_id.clone())),
        }
    }

    pub(crate) fn contact_list(&self, key: SegmentKey) -> Option<&ContactList> {
        match key {
            SegmentKey::Marketing(id) => {
                self.marketing.get(&id).map(|segment| &segment.contact_list)
            }
            SegmentKey::Retail(id) => self.retail.get(&id).map(|segment| &segment.contact_list),
        }
    }

    pub(crate) fn contact_list_mut(&mut self, key: SegmentKey) -> Option<&mut ContactList> {
        match key {
            SegmentKey::Marketing(id) => self
                .marketing
                .get_mut(&id)
                .map(|segment| &mut segment.contact_list),
            SegmentKey::Retail(id) => self
                .retail
                .get_mut(&id)
                .map(|segment| &mut segment.contact_list),
        }
    }

    /// Finds a segment by the id the Rust and admin interfaces take: a Marketing Solutions
    /// id first, then a Retail Media id.
    pub(crate) fn find(&self, id: &str) -> Option<SegmentKey> {
        if let Some(id) = parse_marketing_id(id).filter(|id| self.marketing.contains_key(id)) {
            return Some(SegmentKey::Marketing(id));
        }
        parse_retail_id(id)
            .filter(|id| self.retail.contains_key(id))
            .map(SegmentKey::Retail)
    }
}

/// Parses a Marketing Solutions segment id, a positive 32-bit integer in decimal.
pub(crate) fn parse_marketing_id(id: &str) -> Option<i32> {
    id.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| id.parse::<i32>().ok())
        .flatten()
        .filter(|id| *id > 0)
}

/// Parses a Retail Media segment id, a positive 64-bit integer in decimal.
pub(crate) fn parse_retail_id(id: &str) -> Option<i64> {
    id.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| id.parse::<i64>().ok())
        .flatten()
        .filter(|id| *id > 0)
}

/// Formats a timestamp as the segment routes send it, such as `2026-12-04T10:15:00.000Z`.
pub(crate) fn format_timestamp(timestamp: DateTime<Utc>) -> String {
    timestamp.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Formats a timestamp as the amendment routes send it, with seven fractional digits and an
/// offset, such as `2026-12-04T10:20:31.0000000+00:00`.
pub(crate) fn format_request_date(timestamp: DateTime<Utc>) -> String {
    let ticks = timestamp.timestamp_subsec_nanos() / 100;
    format!("{}.{ticks:07}+00:00", timestamp.format("%Y-%m-%dT%H:%M:%S"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn member_set_returns_identifiers_as_sent() {
        let sha256 = "375320dd9ae7ed408002f3768e16cb5f28c861062fd50dff9a3bff62e9dce4ef";
        let uppercase = sha256.to_uppercase();
        let mut members = MemberSet::default();

        for identifier in [sha256, uppercase.as_str(), "C-100234", sha256] {
            members.insert(identifier);
        }
        let mut stored = members.to_strings();
        stored.sort();

        let mut expected = vec![uppercase.clone(), "C-100234".to_owned(), sha256.to_owned()];
        expected.sort();
        assert_eq!(stored, expected);
        members.remove(sha256);
        members.remove("C-100234");
        assert_eq!(members.to_strings(), [uppercase]);
    }

    #[test]
    fn request_date_has_seven_fraction_digits() {
        let timestamp = Utc.with_ymd_and_hms(2026, 12, 4, 10, 20, 31).unwrap()
            + chrono::Duration::microseconds(1234);

        assert_eq!(
            format_request_date(timestamp),
            "2026-12-04T10:20:31.0012340+00:00"
        );
    }

    #[test]
    fn marketing_id_rejects_signs_and_overflow() {
        assert_eq!(parse_marketing_id("987654"), Some(987_654));
        assert_eq!(parse_marketing_id("+5"), None);
        assert_eq!(parse_marketing_id("0"), None);
        assert_eq!(parse_marketing_id("2147483648"), None);
    }

    #[test]
    fn default_config_seeds_both_apis() {
        let store = Store::from_config(&SandboxConfig::default()).unwrap();

        assert_eq!(store.find("987654"), Some(SegmentKey::Marketing(987_654)));
        assert_eq!(
            store.find("568708742535471104"),
            Some(SegmentKey::Retail(568_708_742_535_471_104))
        );
        assert_eq!(store.find("1"), None);
    }
}
