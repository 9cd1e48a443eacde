//! Location redaction of a JSON document (SER-026), without host calls.
//!
//! Members whose name is configured as location are found at any depth, including inside
//! strings that hold a JSON document (oneM2M `con` often carries one). In `remove` mode they
//! are dropped. In `coarsen` mode everything under them is coarsened:
//! - numbers and numeric strings (`"48.8566"`, `"48.8566,2.3522"`) are rounded or snapped;
//! - GeoJSON positions under `coordinates` are `[lon, lat, alt…]`; altitude is rounded too;
//! - objects under a location member (`{"lat":…,"lon":…}`, a GeoJSON geometry) are coarsened
//!   member by member; their strings are dropped unless numeric, except GeoJSON's `type`;
//! - anything else (an address, a `geo:` URI) has no coarse form, so it is removed: what the
//!   filter cannot coarsen, it does not pass on (fail closed).
//!
//! On a grid the latitude step is `metres / 111 320` degrees. The longitude step widens with
//! the cosine of the *coarsened* latitude of the same position, so that cells stay `metres`
//! wide and the snapped longitude does not leak the precise latitude; a longitude with no
//! latitude beside it uses the equator step (cells narrower east-west, never wider).

use serde_json::{Map, Number, Value};

use crate::config::{Precision, Settings};
use crate::json;

const METRES_PER_DEGREE: f64 = 111_320.0;

/// What a coordinate measures; decides the grid step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Axis {
    Lat,
    Lon,
    /// Altitude in metres (third member of a GeoJSON position).
    Alt,
    Other,
}

/// How to read a value found under a location member.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Hint {
    Coord(Axis),
    /// GeoJSON `coordinates`: a position or nested lists of positions.
    Positions,
}

fn axis_of(name: &str) -> Axis {
    match name {
        "lat" | "latitude" => Axis::Lat,
        "lon" | "lng" | "long" | "longitude" => Axis::Lon,
        "alt" | "altitude" => Axis::Alt,
        _ => Axis::Other,
    }
}

fn hint_of(name: &str) -> Hint {
    if name == "coordinates" {
        Hint::Positions
    } else {
        Hint::Coord(axis_of(name))
    }
}

/// Coarsen one coordinate. `ref_lat` is the coarsened latitude of the same position, if known.
pub fn coarsen(value: f64, axis: Axis, ref_lat: Option<f64>, precision: Precision) -> f64 {
    let out = match precision {
        Precision::Decimals(places) => {
            let factor = 10f64.powi(places as i32);
            (value * factor).round() / factor
        }
        Precision::Grid(metres) if axis == Axis::Alt => (value / metres).round() * metres,
        Precision::Grid(metres) => {
            let step = match (axis, ref_lat) {
                (Axis::Lon, Some(lat)) => metres / (METRES_PER_DEGREE * lat.to_radians().cos()),
                _ => metres / METRES_PER_DEGREE,
            };
            if !step.is_finite() || step <= 0.0 || step >= 360.0 {
                0.0 // at a pole every longitude is the same place
            } else {
                let snapped = (value / step).round() * step;
                let snapped = if axis == Axis::Lat {
                    snapped.clamp(-90.0, 90.0)
                } else {
                    snapped
                };
                (snapped * 1e7).round() / 1e7 // drop float noise, far below any grid
            }
        }
    };
    if out == 0.0 {
        0.0 // no "-0.0" in the output
    } else {
        out
    }
}

/// A number or a numeric string.
fn scalar(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|x| x.is_finite()),
        _ => None,
    }
}

/// Coarsen every number in a text made only of numbers and separators (`,` `;` space tab),
/// keeping the separators. `None` when the text is anything else.
pub fn coarsen_text(
    text: &str,
    axis: Axis,
    ref_lat: Option<f64>,
    precision: Precision,
) -> Option<String> {
    let is_separator = |c: char| matches!(c, ',' | ';' | ' ' | '\t');
    let is_numeric = |c: char| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E');
    if !text.chars().all(|c| is_separator(c) || is_numeric(c)) {
        return None;
    }
    let numbers = text.split(is_separator).filter(|s| !s.is_empty()).count();
    let axis = if numbers == 1 { axis } else { Axis::Other };
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let sep_len = rest.len() - rest.trim_start_matches(is_separator).len();
        out.push_str(&rest[..sep_len]);
        rest = &rest[sep_len..];
        let num_len = rest.find(is_separator).unwrap_or(rest.len());
        if num_len == 0 {
            continue;
        }
        let x = rest[..num_len]
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())?;
        let y = coarsen(x, axis, ref_lat, precision);
        if y == x {
            out.push_str(&rest[..num_len]);
        } else {
            out.push_str(&y.to_string());
        }
        rest = &rest[num_len..];
    }
    (numbers > 0).then_some(out)
}

/// Redact `value` in place. `Ok(true)` when anything changed; `Err` is a reason to block.
pub fn redact(value: &mut Value, settings: &Settings) -> Result<bool, String> {
    let mut walker = Walker {
        settings,
        changed: false,
    };
    walker.plain(value)?;
    Ok(walker.changed)
}

struct Walker<'s> {
    settings: &'s Settings,
    changed: bool,
}

impl Walker<'_> {
    /// A value outside any location member.
    fn plain(&mut self, value: &mut Value) -> Result<(), String> {
        match value {
            Value::Object(map) => self.object(map),
            Value::Array(items) => items.iter_mut().try_for_each(|item| self.plain(item)),
            Value::String(text) => self.embedded(text, None).map(|_| ()),
            _ => Ok(()),
        }
    }

    fn object(&mut self, map: &mut Map<String, Value>) -> Result<(), String> {
        let names: Vec<String> = map
            .keys()
            .filter(|name| self.settings.is_location(name))
            .cloned()
            .collect();
        match self.settings.precision {
            None => {
                for name in &names {
                    map.remove(name);
                    self.changed = true;
                }
            }
            Some(precision) => {
                let ref_lat = names
                    .iter()
                    .filter(|name| axis_of(name) == Axis::Lat)
                    .find_map(|name| scalar(&map[name.as_str()]))
                    .map(|lat| coarsen(lat, Axis::Lat, None, precision));
                for name in &names {
                    let value = map.get_mut(name.as_str()).expect("listed above");
                    if !self.location(value, hint_of(name), ref_lat, precision)? {
                        map.remove(name.as_str());
                        self.changed = true;
                    }
                }
            }
        }
        for (name, value) in map.iter_mut() {
            if !names.contains(name) {
                self.plain(value)?;
            }
        }
        Ok(())
    }

    /// A value under a location member in coarsen mode. `Ok(false)`: it has no coarse form
    /// and must go.
    fn location(
        &mut self,
        value: &mut Value,
        hint: Hint,
        ref_lat: Option<f64>,
        precision: Precision,
    ) -> Result<bool, String> {
        let axis = match hint {
            Hint::Coord(axis) => axis,
            Hint::Positions => Axis::Other,
        };
        match value {
            Value::Number(n) => {
                let x = n.as_f64().unwrap_or(0.0);
                let y = coarsen(x, axis, ref_lat, precision);
                if y != x {
                    *value = Number::from_f64(y)
                        .map(Value::Number)
                        .unwrap_or(Value::Null);
                    self.changed = true;
                }
                Ok(true)
            }
            Value::String(text) => {
                if let Some(coarse) = coarsen_text(text, axis, ref_lat, precision) {
                    if coarse != *text {
                        *text = coarse;
                        self.changed = true;
                    }
                    return Ok(true);
                }
                self.embedded(text, Some(hint))
            }
            Value::Array(items)
                if hint == Hint::Positions
                    && items.len() >= 2
                    && items.iter().all(Value::is_number) =>
            {
                let lat = scalar(&items[1]).map(|lat| coarsen(lat, Axis::Lat, None, precision));
                for (index, item) in items.iter_mut().enumerate() {
                    let axis = [Axis::Lon, Axis::Lat]
                        .get(index)
                        .copied()
                        .unwrap_or(Axis::Alt);
                    self.location(item, Hint::Coord(axis), lat, precision)?;
                }
                Ok(true)
            }
            Value::Array(items) => {
                for item in items.iter_mut() {
                    if !self.location(item, hint, ref_lat, precision)? {
                        *item = Value::Null;
                        self.changed = true;
                    }
                }
                Ok(true)
            }
            Value::Object(map) => {
                let ref_lat = map
                    .iter()
                    .filter(|(name, _)| axis_of(name) == Axis::Lat)
                    .find_map(|(_, v)| scalar(v))
                    .map(|lat| coarsen(lat, Axis::Lat, None, precision));
                let mut doomed = Vec::new();
                for (name, value) in map.iter_mut() {
                    if name == "type" && value.is_string() {
                        continue; // GeoJSON's geometry type names a shape, not a place
                    }
                    if !self.location(value, hint_of(name), ref_lat, precision)? {
                        doomed.push(name.clone());
                    }
                }
                for name in doomed {
                    map.remove(&name);
                    self.changed = true;
                }
                Ok(true)
            }
            Value::Bool(_) | Value::Null => Ok(true),
        }
    }

    /// A string that may hold a JSON document: inspect that too, and write it back when it
    /// changed. `Ok(false)` when the string is not JSON. A duplicate member name inside is an
    /// error for the same reason as at the top level (see [`crate::json`]).
    fn embedded(&mut self, text: &mut String, hint: Option<Hint>) -> Result<bool, String> {
        let start = text.trim_start();
        if !(start.starts_with('{') || start.starts_with('[')) {
            return Ok(false);
        }
        let mut inner = match json::parse(text.as_bytes()) {
            Ok(inner) => inner,
            Err(e) if e.starts_with(json::DUPLICATE) => {
                return Err(format!("a JSON text inside the response body has a {e}: location data cannot be inspected (SER-026)"))
            }
            Err(_) => return Ok(false),
        };
        let outer = std::mem::replace(&mut self.changed, false);
        match (hint, self.settings.precision) {
            (Some(hint), Some(precision)) => {
                self.location(&mut inner, hint, None, precision)?;
            }
            _ => self.plain(&mut inner)?,
        }
        if self.changed {
            *text = serde_json::to_string(&inner).map_err(|e| e.to_string())?;
        }
        self.changed |= outer;
        Ok(true)
    }
}
