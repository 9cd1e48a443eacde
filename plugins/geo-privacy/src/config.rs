//! The application's configuration for this filter (SER-014), JSON, every member optional:
//!
//! ```json
//! { "precise_role": "precise-location",
//!   "mode": "coarsen",
//!   "decimals": 2,
//!   "grid_metres": null,
//!   "members": ["lat", "lon", "lng", "latitude", "longitude", "loc", "location", "coordinates"],
//!   "non_json": "block" }
//! ```
//!
//! `mode` is `coarsen` (round to `decimals` places, default 2 ≈ 1.1 km, or snap to a grid of
//! `grid_metres` — one or the other) or `remove` (drop the members). `members` replaces the
//! default list of member names that carry location. `non_json` says what to do with a body
//! whose content type is not JSON: `block` (default: what cannot be inspected is not
//! delivered) or `pass`. Unknown members are a configuration error, so a typo never silently
//! weakens the filter.

use serde::Deserialize;

/// The member names treated as location when the configuration names none: oneM2M-style
/// attribute names and GeoJSON's `coordinates`.
pub const DEFAULT_MEMBERS: [&str; 8] = [
    "lat",
    "lon",
    "lng",
    "latitude",
    "longitude",
    "loc",
    "location",
    "coordinates",
];

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Coarsen,
    Remove,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NonJson {
    Block,
    Pass,
}

/// How a coordinate is made coarse.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Precision {
    /// Round half away from zero to this many decimal places.
    Decimals(u32),
    /// Snap to the nearest point of a grid whose cells are this many metres on a side.
    Grid(f64),
}

/// The validated configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "Raw")]
pub struct Settings {
    pub precise_role: String,
    /// `None` in remove mode.
    pub precision: Option<Precision>,
    pub members: Vec<String>,
    pub non_json: NonJson,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    precise_role: Option<String>,
    mode: Option<Mode>,
    decimals: Option<u32>,
    grid_metres: Option<f64>,
    members: Option<Vec<String>>,
    non_json: Option<NonJson>,
}

impl TryFrom<Raw> for Settings {
    type Error = String;

    fn try_from(raw: Raw) -> Result<Self, String> {
        let precise_role = raw
            .precise_role
            .unwrap_or_else(|| "precise-location".into());
        if precise_role.is_empty() {
            return Err("precise_role is empty".into());
        }
        let precision = match (
            raw.mode.unwrap_or(Mode::Coarsen),
            raw.decimals,
            raw.grid_metres,
        ) {
            (Mode::Remove, None, None) => None,
            (Mode::Remove, _, _) => {
                return Err("decimals and grid_metres only apply to mode coarsen".into())
            }
            (Mode::Coarsen, Some(_), Some(_)) => {
                return Err("give decimals or grid_metres, not both".into())
            }
            (Mode::Coarsen, _, Some(m)) if !(m.is_finite() && m >= 1.0) => {
                return Err(format!("grid_metres must be at least 1, not {m}"))
            }
            (Mode::Coarsen, _, Some(m)) => Some(Precision::Grid(m)),
            (Mode::Coarsen, Some(d), None) if d > 7 => {
                // 7 places is ~1 cm: more is not coarsening.
                return Err(format!("decimals must be between 0 and 7, not {d}"));
            }
            (Mode::Coarsen, d, None) => Some(Precision::Decimals(d.unwrap_or(2))),
        };
        let members = match raw.members {
            Some(members) if members.is_empty() => {
                return Err("members is empty: no location member would be filtered".into())
            }
            Some(members) => members,
            None => DEFAULT_MEMBERS.iter().map(|m| m.to_string()).collect(),
        };
        Ok(Settings {
            precise_role,
            precision,
            members,
            non_json: raw.non_json.unwrap_or(NonJson::Block),
        })
    }
}

impl Settings {
    pub fn is_location(&self, name: &str) -> bool {
        self.members.iter().any(|member| member == name)
    }
}
