// {{name}}: a Palisade authorizer. It answers for every request of the application it is
// installed in: permit, deny (with a reason for operators and audit) or not-applicable.

const READS = new Set(["retrieve", "discovery"]);

export function authorize(request) {
  // Replace with your policy. The request time (request.requestTime, a BigInt) is the only
  // clock a plugin has; `get` from "palisade:plugin/config@{{wit_version}}" gives the
  // operator's configuration as JSON (SER-014).
  if (READS.has(request.operation)) {
    return { tag: "permit" };
  }
  return { tag: "deny", val: `${request.operation} is not allowed by {{name}}` };
}
