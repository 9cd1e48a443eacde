//! Unit tests of the filter decision and the redaction.

use palisade_sdk::{FilterResult, Response};
use serde_json::{json, Value};

use crate::config::{Precision, Settings};
use crate::redact::{coarsen, coarsen_text, Axis};
use crate::{decide, is_json};

fn settings(config: Value) -> Settings {
    serde_json::from_value(config).unwrap()
}

fn response(content_type: &str, body: &str) -> Response {
    Response {
        status: 2000,
        content_type: content_type.into(),
        body: body.as_bytes().to_vec(),
    }
}

fn run(config: Value, roles: &[&str], content_type: &str, body: &str) -> FilterResult {
    let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
    decide(Ok(&settings(config)), &roles, &response(content_type, body))
}

/// The rewritten body as a JSON value, or a panic naming what came instead.
fn rewritten(config: Value, body: Value) -> Value {
    match run(config, &[], "application/json", &body.to_string()) {
        FilterResult::Rewrite(bytes) => serde_json::from_slice(&bytes).unwrap(),
        other => panic!("expected a rewrite, got {other:?}"),
    }
}

fn unchanged(result: FilterResult) {
    assert!(
        matches!(result, FilterResult::Unchanged),
        "expected unchanged, got {result:?}"
    );
}

fn blocked(result: FilterResult, needle: &str) {
    match result {
        FilterResult::Block(reason) => {
            assert!(reason.contains(needle), "{reason:?} lacks {needle:?}")
        }
        other => panic!("expected a block with {needle:?}, got {other:?}"),
    }
}

#[test]
fn coarsens_to_two_decimals_by_default() {
    let out = rewritten(
        json!({}),
        json!({"lat": 48.856613, "lon": 2.352222, "name": "pump"}),
    );
    assert_eq!(out, json!({"lat": 48.86, "lon": 2.35, "name": "pump"}));
}

#[test]
fn precise_role_sees_everything_even_unparseable_bodies() {
    let body = r#"{"lat": 48.856613}"#;
    unchanged(run(
        json!({}),
        &["reader", "precise-location"],
        "application/json",
        body,
    ));
    unchanged(run(
        json!({"precise_role": "ops"}),
        &["ops"],
        "text/plain",
        "x",
    ));
    assert!(matches!(
        run(
            json!({"precise_role": "ops"}),
            &["precise-location"],
            "application/json",
            body
        ),
        FilterResult::Rewrite(_)
    ));
}

#[test]
fn finds_location_at_any_depth_and_in_arrays() {
    let body = json!({"m2m:cin": {"rn": "c1", "con": {"pos": [{"latitude": 1.23456, "longitude": -7.65432}]}}});
    let out = rewritten(json!({}), body);
    assert_eq!(
        out,
        json!({"m2m:cin": {"rn": "c1", "con": {"pos": [{"latitude": 1.23, "longitude": -7.65}]}}})
    );
}

#[test]
fn unchanged_when_there_is_nothing_to_hide() {
    let body = r#"{"m2m:cin": {"con": "on", "lat2": 48.856613, "lat": 48.86}}"#;
    unchanged(run(json!({}), &[], "application/vnd.onem2m-res+json", body));
    unchanged(run(json!({}), &[], "application/json", "  "));
    unchanged(run(json!({}), &[], "text/plain", ""));
}

#[test]
fn remove_mode_drops_members_at_any_depth() {
    let body = json!({"a": {"location": {"lat": 1.0}, "loc": "home", "x": [{"lng": 3}]}, "lat": 5});
    let out = rewritten(json!({"mode": "remove"}), body);
    assert_eq!(out, json!({"a": {"x": [{}]}}));
}

#[test]
fn geojson_positions_are_lon_lat_alt() {
    let body = json!({"geometry": {"type": "LineString", "coordinates": [[2.352222, 48.856613, 35.27], [2.1, 48.2]]}});
    let out = rewritten(json!({"decimals": 1}), body);
    assert_eq!(
        out,
        json!({"geometry": {"type": "LineString", "coordinates": [[2.4, 48.9, 35.3], [2.1, 48.2]]}})
    );
}

#[test]
fn location_objects_keep_only_what_can_be_coarsened() {
    let body = json!({"location": {"type": "Point", "lat": 48.856613, "lon": "2.352222", "address": "1 Rue X", "acc": 12.345, "ok": true}});
    let out = rewritten(json!({}), body);
    assert_eq!(
        out,
        json!({"location": {"type": "Point", "lat": 48.86, "lon": "2.35", "acc": 12.35, "ok": true}})
    );
}

#[test]
fn strings_under_location_members() {
    let out = rewritten(
        json!({}),
        json!({"loc": "48.856613,2.352222", "location": "10 Downing Street", "lat": "48.856613"}),
    );
    assert_eq!(out, json!({"loc": "48.86,2.35", "lat": "48.86"}));
    let out = rewritten(
        json!({}),
        json!({"loc": ["48.856613", "geo:1,2", 2.352222]}),
    );
    assert_eq!(out, json!({"loc": ["48.86", null, 2.35]}));
}

#[test]
fn json_inside_strings_is_inspected() {
    let inner = json!({"lat": 48.856613, "lon": 2.352222}).to_string();
    let out = rewritten(
        json!({}),
        json!({"m2m:cin": {"cnf": "application/json:0", "con": inner}}),
    );
    let con: Value = serde_json::from_str(out["m2m:cin"]["con"].as_str().unwrap()).unwrap();
    assert_eq!(con, json!({"lat": 48.86, "lon": 2.35}));
    // Under a location member, a JSON string is coarsened as location.
    let out = rewritten(json!({}), json!({"location": "[48.856613, 2.352222]"}));
    assert_eq!(out, json!({"location": "[48.86,2.35]"}));
    // Text that merely looks like JSON is left alone.
    unchanged(run(
        json!({}),
        &[],
        "application/json",
        r#"{"con": "{not json"}"#,
    ));
    let dup = json!({"con": r#"{"lat":1,"lat":2}"#}).to_string();
    blocked(
        run(json!({}), &[], "application/json", &dup),
        "duplicate member name \"lat\"",
    );
}

#[test]
fn fail_closed_on_what_cannot_be_inspected() {
    blocked(
        run(json!({}), &[], "application/json", "{\"lat\": 48.8"),
        "not valid JSON",
    );
    blocked(
        run(
            json!({}),
            &[],
            "application/vnd.onem2m-res+json; ty=4",
            "<m2m:cin/>",
        ),
        "not valid JSON",
    );
    blocked(
        run(
            json!({}),
            &[],
            "application/json",
            r#"{"p":{"lat":1},"p":null}"#,
        ),
        "duplicate member name \"p\"",
    );
    blocked(
        run(json!({}), &[], "application/xml", "<lat>48.8</lat>"),
        "content type application/xml is not JSON",
    );
    blocked(
        run(json!({}), &[], "", "x"),
        "content type (none) is not JSON",
    );
    unchanged(run(json!({"non_json": "pass"}), &[], "text/plain", "48.85"));
    let roles: Vec<String> = Vec::new();
    blocked(
        decide(
            Err("invalid plugin configuration: x"),
            &roles,
            &response("application/json", "{}"),
        ),
        "invalid plugin configuration",
    );
}

#[test]
fn content_types() {
    for ct in [
        "application/json",
        "Application/JSON; charset=utf-8",
        "application/vnd.onem2m-res+json; ty=4",
        "application/geo+json",
        "text/json",
    ] {
        assert!(is_json(ct), "{ct}");
    }
    for ct in [
        "",
        "text/plain",
        "application/vnd.onem2m-res+xml",
        "application/cbor",
        "application/jsonx",
    ] {
        assert!(!is_json(ct), "{ct}");
    }
}

#[test]
fn grid_snapping() {
    let grid = Precision::Grid(1000.0);
    let step = 1000.0 / 111_320.0;
    let lat = coarsen(48.856613, Axis::Lat, None, grid);
    assert!((lat / step - (lat / step).round()).abs() < 1e-4);
    assert!((lat - 48.856613).abs() <= step / 2.0 + 1e-9);
    // Two points in one cell map to the same value.
    assert_eq!(
        coarsen(48.8566, Axis::Lat, None, grid),
        coarsen(48.8567, Axis::Lat, None, grid)
    );
    // Longitude cells widen with the (coarsened) latitude.
    let lon_step = step / lat.to_radians().cos();
    let lon = coarsen(2.352222, Axis::Lon, Some(lat), grid);
    assert!((lon - 2.352222).abs() <= lon_step / 2.0 + 1e-9);
    assert!((lon / lon_step - (lon / lon_step).round()).abs() < 1e-4);
    assert_eq!(coarsen(179.9, Axis::Lon, Some(90.0), grid), 0.0);
    assert_eq!(
        coarsen(123.4, Axis::Alt, None, Precision::Grid(50.0)),
        100.0
    );
    let out = rewritten(
        json!({"grid_metres": 1000}),
        json!({"lat": 48.856613, "lon": 2.352222}),
    );
    assert_eq!(out["lat"].as_f64().unwrap(), lat);
    assert_eq!(out["lon"].as_f64().unwrap(), lon);
    assert_eq!(out, json!({"lat": 48.8591448, "lon": 2.3484816})); // as in examples/geo-privacy/grid.toml
}

#[test]
fn decimals_and_text() {
    let two = Precision::Decimals(2);
    assert_eq!(coarsen(-0.001, Axis::Lat, None, two).to_string(), "0");
    assert_eq!(
        coarsen(48.856613, Axis::Lat, None, Precision::Decimals(0)),
        49.0
    );
    assert_eq!(
        coarsen_text("48.856613, 2.352222;1", Axis::Lat, None, two).unwrap(),
        "48.86, 2.35;1"
    );
    assert_eq!(coarsen_text("geo:1,2", Axis::Lat, None, two), None);
    assert_eq!(coarsen_text(" , ", Axis::Lat, None, two), None);
    assert_eq!(coarsen_text("1-2", Axis::Lat, None, two), None);
    // An integer already at the precision is left exactly as it was.
    unchanged(run(json!({}), &[], "application/json", r#"{"lat": 48}"#));
}

#[test]
fn configuration_is_validated() {
    let bad = [
        json!({"mode": "blur"}),
        json!({"decimals": 2, "grid_metres": 100}),
        json!({"mode": "remove", "decimals": 2}),
        json!({"grid_metres": 0}),
        json!({"decimals": 9}),
        json!({"members": []}),
        json!({"precise_role": ""}),
        json!({"non_json": "allow"}),
        json!({"member": ["gps"]}),
    ];
    for config in bad {
        assert!(
            serde_json::from_value::<Settings>(config.clone()).is_err(),
            "{config}"
        );
    }
    let s = settings(json!({"members": ["gps"], "mode": "remove"}));
    assert!(s.is_location("gps") && !s.is_location("lat"));
    let out = rewritten(
        json!({"members": ["gps"]}),
        json!({"gps": 1.23456, "lat": 1.23456}),
    );
    assert_eq!(out, json!({"gps": 1.23, "lat": 1.23456}));
}
