// The contract lives once, in this crate's wit/ folder: the SDK packages with it (a plugin
// outside any Palisade checkout depends on the crate alone), and the host's bindings are
// generated from the same file, so host and guests can never disagree about it.
fn main() {
    println!("cargo:rerun-if-changed=wit");
}
