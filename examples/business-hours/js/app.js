// Business hours, in JavaScript: the same policy as examples/business-hours/rust and
// examples/business-hours/python, so that the three can be compared (BENCHMARKS.md).
//
// Reads (retrieve, discovery) are always allowed; anything else only between the configured
// hours, UTC, of the request time (the only clock a plugin has). The configuration is
// `{"opens": 8, "closes": 18}` (those are the defaults); a configuration that does not make
// sense denies every request it would have to decide (fail-closed).
//
// Build (componentize-js 0.23.0, which .ci/run installs; Palisade offers no HTTP, so the
// build leaves wasi:http out), then test it warm and fresh:
//
//   componentize-js app.js --wit ../../../plugins/sdk/wit --world-name authorizer \
//       --disable http fetch-event -o business_hours.wasm
//   palisade test --isolation warm cases.toml
//   palisade test --isolation fresh-per-request cases.toml

import { get as configJson } from "palisade:plugin/config@0.2.0";

const READS = new Set(["retrieve", "discovery"]);

// Parsed on first use, not at module load: the component is pre-initialised while it is
// built, where no configuration exists yet.
let hours = null;

function parseHours(text) {
  const document = JSON.parse(text);
  if (document === null || typeof document !== "object" || Array.isArray(document)) {
    throw new Error("the configuration is not a JSON object");
  }
  const opens = document.opens ?? 8;
  const closes = document.closes ?? 18;
  for (const [name, value] of [["opens", opens], ["closes", closes]]) {
    if (!Number.isInteger(value) || value < 0 || value > 24) {
      throw new Error(`${name} must be an hour from 0 to 24`);
    }
  }
  if (opens >= closes) {
    throw new Error("opens must be before closes");
  }
  return { opens, closes };
}

function openingHours() {
  if (hours === null) {
    try {
      hours = parseHours(configJson());
    } catch (error) {
      hours = error;
    }
  }
  if (hours instanceof Error) {
    throw hours;
  }
  return hours;
}

export function authorize(request) {
  if (READS.has(request.operation)) {
    return { tag: "permit" };
  }
  let open;
  try {
    open = openingHours();
  } catch (error) {
    return { tag: "deny", val: `invalid plugin configuration: ${error.message}` };
  }
  // u64 arrives as a BigInt.
  const hour = Number((request.requestTime / 3600n) % 24n);
  if (open.opens <= hour && hour < open.closes) {
    return { tag: "permit" };
  }
  return { tag: "deny", val: `${request.operation} outside business hours` };
}
