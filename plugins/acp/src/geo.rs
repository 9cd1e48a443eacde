//! `aclr` location regions: `accessControlLocationRegion` (TS-0003 §7.1.5, TS-0004
//! `m2m:locationRegion` with `accc` country codes and `accr` circular regions) compared with the
//! request's location. Location only reaches plugins granted the `location` capability
//! (SER-026); without it every `aclr` context fails closed.
//!
//! A circle is `[latitude, longitude, radius]` in degrees (WGS-84) and metres. Distance is the
//! great-circle (haversine) distance on a sphere of the mean Earth radius, which needs no
//! special case for circles crossing the antimeridian or containing a pole: longitudes enter
//! only through `sin²(Δλ/2)`, which is the same for Δλ and Δλ ± 360°.
//!
//! `d ≤ r` is checked as `hav(d/R) ≤ hav(r/R)`, with `hav(r/R)` precomputed at load time, so a
//! test costs three sines and a cosine and never an `atan2`. Error texts avoid formatting
//! floats, which would add the float printer to the component.

/// Mean Earth radius in metres (IUGG).
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// A compiled `accr` circle.
#[derive(Debug, Clone, PartialEq)]
pub struct Circle {
    lat: f64,
    lon: f64,
    cos_lat: f64,
    /// `hav(radius / R)`, or 1.0 (everything) when the radius spans half the globe.
    threshold: f64,
}

impl Circle {
    pub fn new(latitude: f64, longitude: f64, radius: f64) -> Result<Circle, String> {
        if !latitude.is_finite() || !(-90.0..=90.0).contains(&latitude) {
            return Err("latitude is outside -90..90".into());
        }
        if !longitude.is_finite() || !(-180.0..=180.0).contains(&longitude) {
            return Err("longitude is outside -180..180".into());
        }
        if !radius.is_finite() || radius <= 0.0 {
            return Err("radius must be a positive number of metres".into());
        }
        let angle = radius / EARTH_RADIUS_M;
        let threshold = if angle >= std::f64::consts::PI {
            1.0
        } else {
            hav(angle)
        };
        let lat = latitude.to_radians();
        Ok(Circle {
            lat,
            lon: longitude.to_radians(),
            cos_lat: lat.cos(),
            threshold,
        })
    }

    /// Whether a point (degrees) lies inside or on the circle.
    pub fn contains(&self, latitude: f64, longitude: f64) -> bool {
        if !valid_point(latitude, longitude) {
            return false;
        }
        let lat = latitude.to_radians();
        let h =
            hav(lat - self.lat) + self.cos_lat * lat.cos() * hav(longitude.to_radians() - self.lon);
        h <= self.threshold
    }
}

/// `hav(θ) = sin²(θ/2)`.
fn hav(theta: f64) -> f64 {
    let s = (theta / 2.0).sin();
    s * s
}

fn valid_point(latitude: f64, longitude: f64) -> bool {
    latitude.is_finite()
        && longitude.is_finite()
        && (-90.0..=90.0).contains(&latitude)
        && (-180.0..=180.0).contains(&longitude)
}

/// Haversine distance in metres between two points given in degrees (used by tests and docs).
pub fn distance_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let h = hav(p2 - p1) + p1.cos() * p2.cos() * hav((lon2 - lon1).to_radians());
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// The compiled `aclr` of one context: a location holds when it lies in ANY listed region —
/// its country is one of the country codes, or it lies inside one of the circles.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Regions {
    countries: Vec<[u8; 2]>,
    circles: Vec<Circle>,
}

impl Regions {
    /// Add an ISO 3166-1 alpha-2 code; compared case-insensitively (stored upper case).
    pub fn add_country(&mut self, code: &str) -> Result<(), String> {
        match code.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                self.countries
                    .push([a.to_ascii_uppercase(), b.to_ascii_uppercase()]);
                Ok(())
            }
            _ => Err(format!(
                "{code:?} is not an ISO 3166-1 alpha-2 country code"
            )),
        }
    }

    pub fn add_circle(&mut self, circle: Circle) {
        self.circles.push(circle);
    }

    pub fn is_empty(&self) -> bool {
        self.countries.is_empty() && self.circles.is_empty()
    }

    /// `country` is the gateway's ISO code for the location, when it knows one.
    pub fn contains(&self, latitude: f64, longitude: f64, country: Option<&str>) -> bool {
        if let Some(code) = country {
            if let [a, b] = code.as_bytes() {
                let code = [a.to_ascii_uppercase(), b.to_ascii_uppercase()];
                if self.countries.contains(&code) {
                    return true;
                }
            }
        }
        self.circles
            .iter()
            .any(|circle| circle.contains(latitude, longitude))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haversine_distances() {
        // Paris to London: about 343.5 km.
        let d = distance_m(48.8566, 2.3522, 51.5074, -0.1278);
        assert!((d - 343_500.0).abs() < 1_500.0, "{d}");
        // One degree of longitude at the equator: about 111.2 km.
        let d = distance_m(0.0, 0.0, 0.0, 1.0);
        assert!((d - 111_195.0).abs() < 10.0, "{d}");
        // Across the antimeridian: 179.9E to 179.9W is 0.2 degrees, not 359.8.
        let d = distance_m(0.0, 179.9, 0.0, -179.9);
        assert!((d - 22_239.0).abs() < 10.0, "{d}");
    }

    #[test]
    fn circles() {
        let paris = Circle::new(48.85, 2.35, 5_000.0).unwrap();
        assert!(paris.contains(48.86, 2.34));
        assert!(paris.contains(48.85, 2.35));
        assert!(!paris.contains(48.80, 2.20));
        assert!(!paris.contains(f64::NAN, 2.35));
        assert!(!paris.contains(95.0, 2.35));
        // Fiji-ish circle centred on the antimeridian, 50 km.
        let fiji = Circle::new(-17.0, 180.0, 50_000.0).unwrap();
        assert!(fiji.contains(-17.1, -179.8));
        assert!(fiji.contains(-16.9, 179.8));
        assert!(!fiji.contains(-17.0, 178.0));
        assert!(!fiji.contains(-17.0, -178.0));
        let west = Circle::new(10.0, -179.95, 20_000.0).unwrap();
        assert!(west.contains(10.0, 179.95)); // 11 km away across the line
                                              // A radius larger than half the globe covers everything.
        assert!(Circle::new(0.0, 0.0, 3.0e7).unwrap().contains(0.0, 180.0));
        // Boundary: a point 111.2 km away is outside 111 km and inside 111.3 km.
        assert!(!Circle::new(0.0, 0.0, 111_000.0).unwrap().contains(0.0, 1.0));
        assert!(Circle::new(0.0, 0.0, 111_300.0).unwrap().contains(0.0, 1.0));
    }

    #[test]
    fn rejects_bad_circles_and_codes() {
        assert!(Circle::new(91.0, 0.0, 1.0).is_err());
        assert!(Circle::new(0.0, 181.0, 1.0).is_err());
        assert!(Circle::new(0.0, 0.0, 0.0).is_err());
        assert!(Circle::new(0.0, 0.0, -5.0).is_err());
        assert!(Circle::new(0.0, 0.0, f64::INFINITY).is_err());
        let mut r = Regions::default();
        assert!(r.add_country("FRA").is_err());
        assert!(r.add_country("F1").is_err());
        assert!(r.add_country("").is_err());
        r.add_country("de").unwrap();
        assert!(r.contains(0.0, 0.0, Some("DE")));
        assert!(r.contains(0.0, 0.0, Some("de")));
        assert!(!r.contains(0.0, 0.0, Some("FR")));
        assert!(!r.contains(0.0, 0.0, None));
    }
}
