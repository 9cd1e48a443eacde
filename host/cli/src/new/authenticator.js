// {{name}}: a Palisade authenticator. It turns the credential presented with a request into
// an identity, rejects it, or leaves it to another authenticator (not-applicable).

export function authenticate(request, credential) {
  // Replace with your check: verify a token with "palisade:plugin/crypto@{{wit_version}}" (keys
  // stay in the host, SER-010), look the key up in the configuration, ...
  if (credential.scheme !== "demo") {
    return { tag: "not-applicable" };
  }
  if (credential.value === "let-me-in") {
    return {
      tag: "authenticated",
      val: { subject: request.originator, roles: ["user"], expiresAt: undefined },
    };
  }
  return { tag: "rejected", val: "unknown demo key" };
}
