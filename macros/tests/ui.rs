//! What `#[statewise::tool]` says about code it cannot make a tool of:
//! each error points at the offending part (trybuild compile-fail tests).

#[test]
fn misuse_is_reported_where_it_is() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
