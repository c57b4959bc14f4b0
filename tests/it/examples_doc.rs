//! The examples are the manual people read: each opens with a line saying
//! what it shows, and its doc names the command that runs (or builds) it.

#[test]
fn every_example_says_what_it_shows_and_how_to_run_it() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let first = text.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("//! ") && first.len() > 20,
            "examples/{name}.rs should open with a `//!` line saying what it shows, not {first:?}"
        );
        let doc: String = text
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            doc.contains(&format!("--example {name}")),
            "examples/{name}.rs should give its command (`cargo run ... --example {name}`) in its module doc"
        );
        checked += 1;
    }
    assert!(checked > 20, "only {checked} examples found");
}

/// The guide's table of examples names every example, so none is left
/// unread.
#[test]
fn the_guide_names_every_example() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let guide = std::fs::read_to_string(root.join("src/guide/mod.rs")).unwrap();
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(root.join("examples")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let named = if path.is_dir() {
            if !path.join("main.rs").exists() {
                continue;
            }
            format!("`examples/{name}/`")
        } else if name.ends_with(".rs") {
            format!("`examples/{name}`")
        } else {
            continue;
        };
        if !guide.contains(&named) {
            missing.push(named);
        }
    }
    assert!(
        missing.is_empty(),
        "add these to the examples table in src/guide/mod.rs: {missing:?}"
    );
}
