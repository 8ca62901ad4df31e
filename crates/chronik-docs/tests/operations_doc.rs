//! docs/operations.md must match what the code would generate now: a new or changed flag,
//! default or admin command fails this test until `make docs` is run and the result committed.

#[test]
fn committed_operations_guide_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/operations.md");
    let doc = std::fs::read_to_string(path).expect("docs/operations.md");
    let fresh = chronik_docs::render(&doc).expect("markers present");
    assert!(
        fresh == doc,
        "docs/operations.md is out of date with the code: run `make docs` and commit it"
    );
}
