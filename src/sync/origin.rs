//! Where a delivery job comes from, typed: the direction it writes and how freely the
//! two-way decision may apply it. Stored as text in `deliveries.origin`.

use crate::spec::model::Side;

/// A job's origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// An HMS event: written to the external system.
    Event,
    /// A change of the external system (pulled or pushed): written to HMS.
    Inbound,
    /// An operator resolved a conflict with this record: written to the side named.
    Resolved(Side),
    /// An operator chose a side's version: read from the side named, written to the other.
    Take(Side),
    /// The second half of a merge: the merged record, written to the side named.
    Merged(Side),
}

fn side_text(s: Side) -> &'static str {
    match s {
        Side::Hms => "hms",
        Side::Legacy => "legacy",
    }
}

impl Origin {
    /// The side this job writes to.
    pub fn target(self) -> Side {
        match self {
            Origin::Event => Side::Legacy,
            Origin::Inbound => Side::Hms,
            Origin::Resolved(to) | Origin::Merged(to) => to,
            Origin::Take(Side::Hms) => Side::Legacy,
            Origin::Take(Side::Legacy) => Side::Hms,
        }
    }

    /// `event`, `inbound`, `resolved:hms`, `take:legacy`, `merged:hms`, …
    pub fn as_text(self) -> String {
        match self {
            Origin::Event => "event".into(),
            Origin::Inbound => "inbound".into(),
            Origin::Resolved(s) => format!("resolved:{}", side_text(s)),
            Origin::Take(s) => format!("take:{}", side_text(s)),
            Origin::Merged(s) => format!("merged:{}", side_text(s)),
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        let side = |s: &str| match s {
            "hms" => Some(Side::Hms),
            "legacy" => Some(Side::Legacy),
            _ => None,
        };
        match text.split_once(':') {
            None if text == "event" => Some(Origin::Event),
            None if text == "inbound" => Some(Origin::Inbound),
            Some(("resolved", s)) => side(s).map(Origin::Resolved),
            Some(("take", s)) => side(s).map(Origin::Take),
            Some(("merged", s)) => side(s).map(Origin::Merged),
            _ => None,
        }
    }
}

impl serde::Serialize for Origin {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.as_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_round_trip_and_name_their_target() {
        for o in [Origin::Event, Origin::Inbound, Origin::Resolved(Side::Hms), Origin::Take(Side::Legacy), Origin::Merged(Side::Legacy)] {
            assert_eq!(Origin::parse(&o.as_text()), Some(o));
        }
        assert_eq!(Origin::Take(Side::Legacy).target(), Side::Hms);
        assert_eq!(Origin::Merged(Side::Legacy).target(), Side::Legacy);
        assert_eq!(Origin::parse("resolved:both"), None);
    }
}
