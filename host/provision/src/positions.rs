//! Device positions provisioned per application: the location source of proxied requests
//! (issue 13.7). A proxied oneM2M request carries no position of its own, so an `aclr`
//! (location) context could never match on the proxy; a service provider provisions, in the
//! same signed bundles as group memberships, where each originator of an application is.
//! The proxy looks the originator up in its application's directory; an originator without
//! a provisioned position has no location, and `aclr` stays unmet (fail-closed).
//!
//! Only plugins granted the `location` capability see the position (SER-026): the runtime
//! strips it from every other plugin's view (`sandbox::convert`). Positions are app-scoped
//! (SER-024): one application's provider cannot place another application's originators.
//!
//! Positions are fixed-point, 1e-7 degree (about 1 cm), so a bundle has one encoding and a
//! position compares exactly.

use std::collections::HashMap;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use super::directory::{DirectoryUpdate, MemberDirectory};
use palisade_core::Location;

/// Degrees to the fixed-point unit.
const SCALE: f64 = 1e7;

/// A provisioned WGS-84 position, in 1e-7 degrees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Position {
    /// Latitude × 10⁷, within ±90°.
    pub latitude_e7: i32,
    /// Longitude × 10⁷, within ±180°.
    pub longitude_e7: i32,
    /// ISO 3166-1 alpha-2 code (two upper-case letters), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<[u8; 2]>,
}

impl Position {
    /// A position from degrees; refused when not finite, out of range, or with a country
    /// that is not two upper-case letters.
    pub fn from_degrees(
        latitude: f64,
        longitude: f64,
        country: Option<&str>,
    ) -> Result<Position, String> {
        let fixed = |value: f64, limit: f64, what: &str| {
            if value.is_finite() && value.abs() <= limit {
                Ok((value * SCALE).round() as i32)
            } else {
                Err(format!("{what} {value} is not within ±{limit}°"))
            }
        };
        let country = match country {
            None => None,
            Some(code) => Some(
                <[u8; 2]>::try_from(code.as_bytes())
                    .ok()
                    .filter(|code| code.iter().all(u8::is_ascii_uppercase))
                    .ok_or_else(|| {
                        format!("country {code:?} is not an ISO 3166-1 alpha-2 code (e.g. \"FR\")")
                    })?,
            ),
        };
        let position = Position {
            latitude_e7: fixed(latitude, 90.0, "latitude")?,
            longitude_e7: fixed(longitude, 180.0, "longitude")?,
            country,
        };
        position.check()?;
        Ok(position)
    }

    /// Whether the fields are within range (decoded bundles are checked with it too).
    pub fn check(&self) -> Result<(), String> {
        if self.latitude_e7.unsigned_abs() > 900_000_000 {
            return Err(format!("latitude {} is not within ±90°", self.latitude()));
        }
        if self.longitude_e7.unsigned_abs() > 1_800_000_000 {
            return Err(format!(
                "longitude {} is not within ±180°",
                self.longitude()
            ));
        }
        if let Some(code) = self.country {
            if !code.iter().all(u8::is_ascii_uppercase) {
                return Err("the country is not two upper-case letters".into());
            }
        }
        Ok(())
    }

    /// Latitude in degrees.
    pub fn latitude(&self) -> f64 {
        f64::from(self.latitude_e7) / SCALE
    }

    /// Longitude in degrees.
    pub fn longitude(&self) -> f64 {
        f64::from(self.longitude_e7) / SCALE
    }

    /// The position as the request's location.
    pub fn location(&self) -> Location {
        Location {
            latitude: self.latitude(),
            longitude: self.longitude(),
            country: self
                .country
                .map(|code| String::from_utf8_lossy(&code).into_owned()),
        }
    }
}

/// The positions of every application's originators, kept up to date by provisioning (a
/// [`MemberDirectory`], rebuilt from the committed state at start).
#[derive(Debug, Default)]
pub struct PositionDirectory {
    apps: RwLock<HashMap<String, HashMap<String, Position>>>,
}

impl PositionDirectory {
    /// An empty directory (every originator's location unknown).
    pub fn new() -> PositionDirectory {
        PositionDirectory::default()
    }

    /// Where `originator` of `app` is, if provisioned.
    pub fn location(&self, app: &str, originator: &str) -> Option<Location> {
        let apps = self.apps.read().unwrap_or_else(|e| e.into_inner());
        apps.get(app)?.get(originator).map(Position::location)
    }

    /// How many positions are known, over all applications.
    pub fn len(&self) -> usize {
        let apps = self.apps.read().unwrap_or_else(|e| e.into_inner());
        apps.values().map(HashMap::len).sum()
    }

    /// Whether no position is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl MemberDirectory for PositionDirectory {
    fn apply(&self, update: &DirectoryUpdate) {
        let mut apps = self.apps.write().unwrap_or_else(|e| e.into_inner());
        for (app, positions) in &update.app_positions {
            let entry = apps.entry(app.clone()).or_default();
            for (originator, position) in positions {
                match position {
                    Some(position) => {
                        entry.insert(originator.clone(), *position);
                    }
                    None => {
                        entry.remove(originator);
                    }
                }
            }
            if entry.is_empty() {
                apps.remove(app);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn positions_are_checked_and_fixed_point() {
        let paris = Position::from_degrees(48.856_613, 2.352_222, Some("FR")).unwrap();
        assert_eq!(
            (paris.latitude_e7, paris.longitude_e7),
            (488_566_130, 23_522_220)
        );
        assert_eq!(paris.location().country.as_deref(), Some("FR"));
        assert!((paris.location().latitude - 48.856_613).abs() < 1e-9);
        for (latitude, longitude, country) in [
            (90.000_001, 0.0, None),
            (0.0, -180.5, None),
            (f64::NAN, 0.0, None),
            (0.0, f64::INFINITY, None),
            (0.0, 0.0, Some("fr")),
            (0.0, 0.0, Some("FRA")),
            (0.0, 0.0, Some("")),
        ] {
            assert!(
                Position::from_degrees(latitude, longitude, country).is_err(),
                "{latitude} {longitude} {country:?}"
            );
        }
        assert!(Position::from_degrees(-90.0, 180.0, None).is_ok());
        let decoded = Position {
            latitude_e7: i32::MIN,
            longitude_e7: 0,
            country: None,
        };
        assert!(decoded.check().is_err());
    }

    #[test]
    fn bundles_carry_positions_in_one_encoding_and_old_bundles_are_unchanged() {
        use super::super::codec::{decode_contents, encode_contents};
        use super::super::error::DecodeError;
        use super::super::BundleContents;
        use palisade_codec::{CodecError, Writer};
        let mut contents = BundleContents::default();
        contents.app_groups.insert(
            "lights".into(),
            BTreeMap::from([("g".into(), ["CAE1".to_string()].into())]),
        );
        let without = encode_contents(&contents).to_vec();
        assert_eq!(without[0], 0x85, "five sections without positions");
        assert_eq!(decode_contents(&without).unwrap(), contents);
        let here = Position::from_degrees(-33.86, 151.21, Some("AU")).unwrap();
        contents.app_positions.insert(
            "lights".into(),
            BTreeMap::from([("CAE1".to_string(), Some(here)), ("CAE2".to_string(), None)]),
        );
        let with = encode_contents(&contents).to_vec();
        assert_eq!(with[0], 0x86, "a sixth section");
        assert!(
            with[1..].starts_with(&without[1..]),
            "the section is appended, the rest unchanged"
        );
        assert_eq!(decode_contents(&with).unwrap(), contents);
        // An empty section, a position of another shape, a bad country length: refused.
        let section = |position: &dyn Fn(&mut Writer)| {
            let mut w = Writer::new();
            w.map(1);
            w.str("lights");
            w.map(1);
            w.str("CAE1");
            position(&mut w);
            let mut b = without.clone();
            b[0] = 0x86;
            b.extend_from_slice(w.as_bytes());
            b
        };
        let mut empty = without.clone();
        empty[0] = 0x86;
        empty.push(0xa0);
        assert!(matches!(
            decode_contents(&empty),
            Err(DecodeError::Encoding(CodecError::NotCanonical { .. }))
        ));
        let two_items = section(&|w| {
            w.array(2);
            w.i32(0);
            w.i32(0);
        });
        assert!(matches!(
            decode_contents(&two_items),
            Err(DecodeError::Encoding(CodecError::WrongCount { .. }))
        ));
        let country = section(&|w| {
            w.array(3);
            w.i32(0);
            w.i32(0);
            w.str("AUS");
        });
        assert!(matches!(
            decode_contents(&country),
            Err(DecodeError::Encoding(CodecError::FieldTooLong { .. }))
        ));
        // Decodes, but the gateway's content check refuses an out-of-range position.
        let far = section(&|w| {
            w.array(3);
            w.i32(i32::MAX);
            w.i32(0);
            w.null();
        });
        let decoded = decode_contents(&far).unwrap();
        let error = super::super::bundle::check_contents(&decoded).unwrap_err();
        assert!(error.to_string().contains("latitude"), "{error}");
    }

    #[test]
    fn the_directory_sets_and_removes_per_app() {
        let directory = PositionDirectory::new();
        let here = Position::from_degrees(1.0, 2.0, None).unwrap();
        let mut update = DirectoryUpdate::default();
        update.app_positions.insert(
            "lights".into(),
            BTreeMap::from([("CAE1".to_string(), Some(here))]),
        );
        directory.apply(&update);
        assert_eq!(directory.location("lights", "CAE1").unwrap().latitude, 1.0);
        assert!(directory.location("meters", "CAE1").is_none(), "app-scoped");
        assert!(directory.location("lights", "CAE2").is_none());
        update.app_positions.insert(
            "lights".into(),
            BTreeMap::from([("CAE1".to_string(), None)]),
        );
        directory.apply(&update);
        assert!(directory.location("lights", "CAE1").is_none());
        assert!(directory.is_empty());
    }
}
