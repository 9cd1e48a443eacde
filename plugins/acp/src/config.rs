//! Reading the application's configuration (SER-014) into a [`PolicySet`].
//!
//! The document is walked by hand rather than with `#[derive(Deserialize)]` so that every
//! problem is reported with its exact place (`policies[0].pv.acr[1].acco[0]: unknown context
//! element "actx"`): an operator reading an audit entry must be able to fix the policy. Any
//! unknown key, wrong type, empty list or out-of-range value makes the whole configuration
//! invalid, and an invalid configuration denies every request (SER-008: anything
//! indeterminate is a deny — a half-understood policy is never enforced).

use serde_json::{Map, Value};

use crate::cron::Window;
use crate::geo::{Circle, Regions};
use crate::net::AddressBlocks;
use crate::pattern::Pattern;
use crate::policy::{Context, ObjectDetails, Originators, Policy, PolicySet, Rule};

/// The compiled configuration, or why it is unusable. Parsed once per instance through
/// `palisade_sdk::config::Config<Compiled>`.
pub struct Compiled(pub Result<PolicySet, String>);

impl<'de> serde::Deserialize<'de> for Compiled {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let document = Value::deserialize(deserializer)?;
        Ok(Compiled(compile(&document)))
    }
}

/// Compile a configuration document.
pub fn compile(document: &Value) -> Result<PolicySet, String> {
    compile_set(document)
        .map_err(|problem| format!("invalid accessControlPolicy configuration: {problem}"))
}

fn compile_set(document: &Value) -> Result<PolicySet, String> {
    let top = object(document, "configuration", &["policies"])?;
    let list = top
        .get("policies")
        .ok_or("the configuration has no `policies` list")?;
    let list = non_empty_array(list, "policies")?;
    let mut policies = Vec::with_capacity(list.len());
    for (index, value) in list.iter().enumerate() {
        policies.push(compile_policy(value, index)?);
    }
    Ok(PolicySet { policies })
}

fn compile_policy(value: &Value, index: usize) -> Result<Policy, String> {
    let at = format!("policies[{index}]");
    let fields = object(value, &at, &["id", "scope", "pv"])?;
    let id: Box<str> = match fields.get("id") {
        Some(id) => string(id, &format!("{at}.id"))?.into(),
        None => format!("policy #{index}").into(),
    };
    let scope = match fields.get("scope") {
        None => None,
        Some(list) => Some(strings(list, &format!("{at}.scope"), |text, at| {
            Pattern::prefix(text).map_err(|problem| format!("{at}: {problem}"))
        })?),
    };
    let pv_at = format!("{at}.pv");
    let pv = fields
        .get("pv")
        .ok_or_else(|| format!("{at}: missing `pv` (privileges)"))?;
    let pv = object(pv, &pv_at, &["acr"])?;
    let rules_at = format!("{pv_at}.acr");
    let acr = pv
        .get("acr")
        .ok_or_else(|| format!("{pv_at}: missing `acr` (the list may be empty)"))?;
    let acr = acr
        .as_array()
        .ok_or_else(|| format!("{rules_at}: expected a list of rules"))?;
    let mut rules = Vec::with_capacity(acr.len());
    for (index, value) in acr.iter().enumerate() {
        rules.push(compile_rule(value, &format!("{rules_at}[{index}]"))?);
    }
    Ok(Policy { id, scope, rules })
}

fn compile_rule(value: &Value, at: &str) -> Result<Rule, String> {
    let fields = object(value, at, &["acor", "acop", "acco", "acaf", "acod"])?;
    let acor = fields
        .get("acor")
        .ok_or_else(|| format!("{at}: missing `acor` (originators)"))?;
    let originators = compile_originators(acor, &format!("{at}.acor"))?;
    let acop = fields
        .get("acop")
        .ok_or_else(|| format!("{at}: missing `acop` (operations)"))?;
    let operations = match acop.as_u64() {
        Some(mask @ 1..=63) => mask as u32,
        _ => {
            return Err(format!(
                "{at}.acop: {} is not an operation mask in 1..=63",
                shown(acop)
            ))
        }
    };
    let authenticated = match fields.get("acaf") {
        None => false,
        Some(Value::Bool(flag)) => *flag,
        Some(other) => return Err(format!("{at}.acaf: {} is not true or false", shown(other))),
    };
    let contexts = match fields.get("acco") {
        None => None,
        Some(list) => {
            let list = non_empty_array(list, &format!("{at}.acco"))?;
            let compiled = list
                .iter()
                .enumerate()
                .map(|(i, c)| compile_context(c, &format!("{at}.acco[{i}]")));
            Some(compiled.collect::<Result<_, _>>()?)
        }
    };
    let objects = match fields.get("acod") {
        None => None,
        Some(list) => {
            let list = non_empty_array(list, &format!("{at}.acod"))?;
            let compiled = list
                .iter()
                .enumerate()
                .map(|(i, o)| compile_object(o, &format!("{at}.acod[{i}]")));
            let compiled: Vec<ObjectDetails> = compiled.collect::<Result<_, _>>()?;
            check_object_rule(&compiled, operations, at)?;
            Some(compiled)
        }
    };
    Ok(Rule {
        operations,
        originators,
        authenticated,
        contexts,
        objects,
    })
}

/// `acor` entries: `all`; `<group-id>` (membership via the host's group look-up); `role:<id>`
/// (one of the request's roles); an ID with `*` wildcards; otherwise an exact ID, which when
/// it is a resource ID (`/...`) may also name a `<group>`.
fn compile_originators(value: &Value, at: &str) -> Result<Originators, String> {
    let mut originators = Originators::default();
    let list = non_empty_array(value, at)?;
    for (index, entry) in list.iter().enumerate() {
        let at = format!("{at}[{index}]");
        let text = string(entry, &at)?;
        if text.is_empty() {
            return Err(format!("{at}: an originator must not be empty"));
        }
        if text == "all" {
            originators.all = true;
        } else if let Some(rest) = text.strip_prefix('<') {
            let group = rest
                .strip_suffix('>')
                .filter(|g| !g.is_empty() && !g.contains(['<', '>', '*']))
                .ok_or_else(|| format!("{at}: {text:?} is not a group reference `<group-id>`"))?;
            originators.groups.push(group.into());
        } else if let Some(role) = text.strip_prefix("role:") {
            if role.is_empty() || role.contains('*') {
                return Err(format!(
                    "{at}: {text:?} is not a role reference `role:<role-id>`"
                ));
            }
            originators.roles.push(role.into());
        } else if Pattern::has_wildcard(text) {
            originators.wildcards.push(Pattern::originator(text));
        } else {
            // TS-0003 §7.1.2: an acor entry may be a <group>'s resource ID, which grants its
            // members. An SP-relative (`/cse-id/grp1`) or absolute (`//sp/cse-id/grp1`) ID
            // may name a group or an originator alike, so it is both: an exact ID, and a
            // group the host is asked about (when nothing else grants).
            if text.starts_with('/') {
                originators.groups.push(text.into());
            }
            originators.exact.push(text.into());
        }
    }
    Ok(originators)
}

fn compile_context(value: &Value, at: &str) -> Result<Context, String> {
    let map = value
        .as_object()
        .ok_or_else(|| format!("{at}: expected an object"))?;
    let mut context = Context::default();
    if map.is_empty() {
        return Err(format!(
            "{at}: a context must hold at least one of actw, acip, aclr"
        ));
    }
    for (key, value) in map {
        let here = format!("{at}.{key}");
        match key.as_str() {
            "actw" => {
                let windows = strings(value, &here, |text, at| {
                    Window::parse(text).map_err(|problem| format!("{at}: {problem}"))
                })?;
                context.windows = Some(windows);
            }
            "acip" => context.addresses = Some(compile_addresses(value, &here)?),
            "aclr" => context.regions = Some(compile_regions(value, &here)?),
            _ => {
                return Err(format!(
                    "{at}: unknown context element {key:?} (supported: actw, acip, aclr)"
                ))
            }
        }
    }
    Ok(context)
}

fn compile_addresses(value: &Value, at: &str) -> Result<AddressBlocks, String> {
    let fields = object(value, at, &["ipv4", "ipv6"])?;
    let mut blocks = AddressBlocks::default();
    if let Some(list) = fields.get("ipv4") {
        strings(list, &format!("{at}.ipv4"), |text, at| {
            blocks.add_v4(text).map_err(|p| format!("{at}: {p}"))
        })?;
    }
    if let Some(list) = fields.get("ipv6") {
        strings(list, &format!("{at}.ipv6"), |text, at| {
            blocks.add_v6(text).map_err(|p| format!("{at}: {p}"))
        })?;
    }
    if blocks.is_empty() {
        return Err(format!("{at}: lists no address"));
    }
    Ok(blocks)
}

/// `aclr` is one `locationRegion` object or a list of them (TS-0004 allows a list); `accr` is
/// one circle `[lat, lon, radius]` or a list of circles.
fn compile_regions(value: &Value, at: &str) -> Result<Regions, String> {
    let mut regions = Regions::default();
    match value {
        Value::Array(list) if !list.is_empty() => {
            for (index, region) in list.iter().enumerate() {
                compile_region(region, &format!("{at}[{index}]"), &mut regions)?;
            }
        }
        Value::Object(_) => compile_region(value, at, &mut regions)?,
        _ => {
            return Err(format!(
                "{at}: expected a location region object or a non-empty list of them"
            ))
        }
    }
    Ok(regions)
}

fn compile_region(value: &Value, at: &str, regions: &mut Regions) -> Result<(), String> {
    let fields = object(value, at, &["accc", "accr"])?;
    if fields.is_empty() {
        return Err(format!("{at}: a location region needs accc or accr"));
    }
    if let Some(list) = fields.get("accc") {
        strings(list, &format!("{at}.accc"), |text, at| {
            regions.add_country(text).map_err(|p| format!("{at}: {p}"))
        })?;
    }
    if let Some(accr) = fields.get("accr") {
        let at = format!("{at}.accr");
        let list = non_empty_array(accr, &at)?;
        if list[0].is_number() {
            regions.add_circle(circle(accr, &at)?);
        } else {
            for (index, entry) in list.iter().enumerate() {
                regions.add_circle(circle(entry, &format!("{at}[{index}]"))?);
            }
        }
    }
    Ok(())
}

fn circle(value: &Value, at: &str) -> Result<Circle, String> {
    let numbers: Option<Vec<f64>> = value
        .as_array()
        .and_then(|list| list.iter().map(Value::as_f64).collect());
    match numbers.as_deref() {
        Some(&[lat, lon, radius]) => {
            Circle::new(lat, lon, radius).map_err(|problem| format!("{at}: {problem}"))
        }
        _ => Err(format!(
            "{at}: expected a circle [latitude, longitude, radius-in-metres]"
        )),
    }
}

/// Object details as TS-0003 §7.1.5 defines them. Earlier versions of this plugin read them
/// differently (`ty` as a type the request itself carries, applied to every operation; `chty`
/// optional), and a policy written for that reading would mean something else now: such a
/// policy is refused, with the rule and what to change, never silently reinterpreted.
fn compile_object(value: &Value, at: &str) -> Result<ObjectDetails, String> {
    let fields = object(value, at, &["ty", "spty", "chty", "sbpt"])?;
    let mut details = ObjectDetails::default();
    if let Some(ty) = fields.get("ty") {
        details.target_type = Some(resource_type(ty, &format!("{at}.ty"))?);
    }
    if let Some(spty) = fields.get("spty") {
        let here = format!("{at}.spty");
        let text = string(spty, &here)?;
        if text.is_empty() {
            return Err(format!("{here}: a specialization must not be empty"));
        }
        details.target_specialization = Some(text.into());
    }
    let Some(list) = fields.get("chty") else {
        let hint = if details.target_type.is_some() {
            " `ty` is the type of the target the create is addressed to, not of the resource \
             it makes (earlier versions of this plugin read it otherwise):"
        } else {
            ""
        };
        return Err(format!(
            "{at}: `chty` is missing; it is mandatory in object details (TS-0003 §7.1.5).{hint} \
             list the resource types the create may make in `chty`"
        ));
    };
    let chty_at = format!("{at}.chty");
    let list = non_empty_array(list, &chty_at)?;
    let types = list
        .iter()
        .enumerate()
        .map(|(i, ty)| resource_type(ty, &format!("{chty_at}[{i}]")));
    details.child_types = types.collect::<Result<_, _>>()?;
    // "If the value of the resourceType element is 13 (<mgmtObj>) or 28 (<flexContainer>),
    // the optional specializationType element shall also be included."
    if let (Some(ty @ (13 | 28)), None) = (details.target_type, &details.target_specialization) {
        return Err(format!(
            "{at}: `ty` {ty} is a specializable type, so `spty` must name the specialization \
             (TS-0003 §7.1.5)"
        ));
    }
    if let Some(list) = fields.get("sbpt") {
        details.paths = Some(strings(list, &format!("{at}.sbpt"), |text, at| {
            Pattern::path(text).map_err(|problem| format!("{at}: {problem}"))
        })?);
    }
    Ok(details)
}

/// The rule-level refusals of the earlier `acod` reading: object details on a rule that
/// grants no create (they would never apply), and `ty`/`spty`/`sbpt` on a rule that also
/// grants other operations (they used to restrict those; now they restrict only its create).
/// A `chty`-only entry means the same under both readings and is accepted anywhere.
fn check_object_rule(objects: &[ObjectDetails], operations: u32, at: &str) -> Result<(), String> {
    const CREATE: u32 = 1;
    if operations & CREATE == 0 {
        return Err(format!(
            "{at}.acod: object details apply to CREATE only (TS-0003 §7.1.5), and this rule \
             grants only {}, so they would never apply (earlier versions of this plugin applied \
             them to every operation): remove `acod`, or move it to a rule with acop 1",
            crate::eval::operations(operations)
        ));
    }
    let others = operations & !CREATE;
    if others == 0 {
        return Ok(());
    }
    for (index, details) in objects.iter().enumerate() {
        let restricting = [
            ("ty", details.target_type.is_some()),
            ("spty", details.target_specialization.is_some()),
            ("sbpt", details.paths.is_some()),
        ];
        if let Some((name, _)) = restricting.iter().find(|(_, present)| *present) {
            return Err(format!(
                "{at}.acod[{index}].{name}: object details restrict only the CREATE of a rule \
                 (TS-0003 §7.1.5), and this rule also grants {}, which earlier versions of this \
                 plugin restricted by `{name}` too: give create (acop 1) and its `acod` a rule of \
                 their own",
                crate::eval::operations(others)
            ));
        }
    }
    Ok(())
}

fn resource_type(value: &Value, at: &str) -> Result<u32, String> {
    value
        .as_u64()
        .and_then(|ty| u32::try_from(ty).ok())
        .ok_or_else(|| format!("{at}: {} is not a resource type number", shown(value)))
}

/// An object whose keys are all in `allowed` (serde's `deny_unknown_fields`, by hand).
fn object<'v>(
    value: &'v Value,
    at: &str,
    allowed: &[&str],
) -> Result<&'v Map<String, Value>, String> {
    let map = value
        .as_object()
        .ok_or_else(|| format!("{at}: expected an object"))?;
    if let Some(key) = map.keys().find(|key| !allowed.contains(&key.as_str())) {
        let hint = match key.as_str() {
            "pvs" => " (selfPrivileges are managed by the CSE, not by this plugin)",
            _ => "",
        };
        return Err(format!(
            "{at}: unknown field {key:?}{hint}; expected one of {}",
            allowed.join(", ")
        ));
    }
    Ok(map)
}

fn non_empty_array<'v>(value: &'v Value, at: &str) -> Result<&'v Vec<Value>, String> {
    match value.as_array() {
        Some(list) if !list.is_empty() => Ok(list),
        Some(_) => Err(format!("{at}: the list must not be empty")),
        None => Err(format!("{at}: expected a list")),
    }
}

fn string<'v>(value: &'v Value, at: &str) -> Result<&'v str, String> {
    value
        .as_str()
        .ok_or_else(|| format!("{at}: {} is not a string", shown(value)))
}

/// A non-empty list of strings, each turned into a `T` by `each(text, place)`.
fn strings<T>(
    value: &Value,
    at: &str,
    mut each: impl FnMut(&str, &str) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    let list = non_empty_array(value, at)?;
    let mut out = Vec::with_capacity(list.len());
    for (index, entry) in list.iter().enumerate() {
        let here = format!("{at}[{index}]");
        out.push(each(string(entry, &here)?, &here)?);
    }
    Ok(out)
}

/// A JSON value for an error message. Deliberately not `Value`'s `Display`: that drags the
/// serializer and float formatting into the component for the sake of error text.
fn shown(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(u)) => u.to_string(),
            _ => "a fractional number".into(),
        },
        Value::String(text) if text.len() <= 64 => format!("{text:?}"),
        Value::String(_) => "a long string".into(),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}
