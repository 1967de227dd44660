//! In-memory state of the fake: segments of both APIs and the members of each contact list,
//! kept per identifier type.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, SecondsFormat, Utc};

use super::config::{InvalidSandboxConfig, SandboxClient, SandboxConfig};
use super::identifiers::IdentifierType;

/// Members of one contact list, one set per identifier type.
#[derive(Debug, Default)]
pub(crate) struct ContactList {
    members: HashMap<IdentifierType, HashSet<String>>,
}

impl ContactList {
    pub(crate) fn members(&self, identifier_type: IdentifierType) -> Option<&HashSet<String>> {
        self.members.get(&identifier_type)
    }

    pub(crate) fn members_mut(&mut self, identifier_type: IdentifierType) -> &mut HashSet<String> {
        self.members.entry(identifier_type).or_default()
    }

    /// Number of members over all identifier types.
    pub(crate) fn len(&self) -> usize {
        self.members.values().map(HashSet::len).sum()
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

/// Who owns a segment; a client may touch it only if it may use the owner.
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
                return Err(InvalidSandboxConfig::DuplicateSegmentId(seed.id.to_string()));
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

    /// Whether another segment of the advertiser already has this name.
    pub(crate) fn marketing_name_taken(&self, advertiser_id: &str, name: &str, except: Option<i32>) -> bool {
        self.marketing.values().any(|segment| {
            segment.advertiser_id == advertiser_id && segment.name == name && Some(segment.id) != except
        })
    }

    /// Whether another segment of the account already has this name.
    pub(crate) fn retail_name_taken(&self, account_id: &str, name: &str, except: Option<i64>) -> bool {
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
            SegmentKey::Marketing(id) => self.marketing.get(&id).map(|segment| &segment.contact_list),
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
    fn request_date_has_seven_fraction_digits() {
        let timestamp = Utc.with_ymd_and_hms(2026, 12, 4, 10, 20, 31).unwrap()
            + chrono::Duration::microseconds(1234);

        assert_eq!(format_request_date(timestamp), "2026-12-04T10:20:31.0012340+00:00");
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
