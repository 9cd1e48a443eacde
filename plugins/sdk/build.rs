// The contract lives once, in the repository's top-level wit/ folder; the SDK reads it from
// there so that host and guests can never disagree about it.
fn main() {
    println!("cargo:rerun-if-changed=../../wit");
}
