// {{name}}: a Palisade filter. It sees each response on its way back to the originator and
// passes it on unchanged, rewrites its body, or blocks it (e.g. location privacy, SER-026).

export function filter(request, response) {
  // Replace with your rule: this one redacts the word "secret". The body is a Uint8Array; a
  // body that is not UTF-8 text cannot be checked, so it is blocked rather than let through.
  let text;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(response.body);
  } catch {
    return { tag: "block", val: "the body is not UTF-8 text" };
  }
  if (!text.includes("secret")) {
    return { tag: "unchanged" };
  }
  return { tag: "rewrite", val: new TextEncoder().encode(text.replaceAll("secret", "[redacted]")) };
}
