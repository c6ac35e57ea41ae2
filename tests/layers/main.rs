//! The core's layers (issue 16: dependencies run one way): shared/src has no import cycle and no
//! import that breaks the layer rule of `imagehook_tests::layers::LAYERS`; and the checker itself
//! finds what it should on small crates written to a temporary directory.
//!
//! `cargo run -q -p imagehook-tests --bin imports` prints the same reading for humans.
#![allow(clippy::unwrap_used)]

use imagehook_tests::layers::{Report, Violation, check};

#[test]
fn shared_src_has_no_import_cycle_and_keeps_the_layer_rule() {
    let src = imagehook_tests::workspace_root().join("shared/src");
    let report = check(&src).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        report.files.len() > 10 && !report.edges.is_empty(),
        "{}: read {} files and {} imports; is this the core's source?",
        src.display(),
        report.files.len(),
        report.edges.len()
    );
    assert!(report.is_clean(), "{}", report.failure_message());
}

/// Writes `files` (paths relative to `src`) to a temporary directory and checks them.
fn check_tree(files: &[(&str, &str)]) -> Report {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
    }
    check(dir.path()).unwrap()
}

/// A small crate that keeps the rule: re-exports, `super::`, glob and test-module imports, and
/// imports inside a layer.
const CLEAN: &[(&str, &str)] = &[
    (
        "lib.rs",
        "pub mod model;\npub mod ports;\npub mod pipeline;\npub use pipeline::run;\n",
    ),
    (
        "model/mod.rs",
        "pub mod event;\npub mod policy;\npub use event::Action;\npub struct Rules;\n",
    ),
    (
        "model/event.rs",
        "pub enum Action { Push }\n\
         #[cfg(test)]\n\
         mod tests {\n    use super::*;\n    #[test]\n    fn t() { let _ = Action::Push; }\n}\n",
    ),
    (
        "model/policy.rs",
        "use super::event::Action;\nuse crate::model::Rules;\n\
         pub fn allow(_: Action, _: &Rules) -> bool { true }\n",
    ),
    (
        "ports/mod.rs",
        "pub trait Store { fn put(&self, a: crate::model::Action); }\n",
    ),
    (
        "pipeline/mod.rs",
        "mod push;\nuse crate::ports::Store;\n\
         pub fn run(s: &dyn Store) { push::go(s) }\n",
    ),
    (
        "pipeline/push.rs",
        "use crate::model::{self, policy::allow};\nuse crate::ports::*;\n\
         pub(super) fn go(s: &dyn Store) {\n\
         \x20   if allow(model::Action::Push, &model::Rules) { s.put(model::event::Action::Push) }\n}\n",
    ),
];

fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut files: Vec<_> = CLEAN
        .iter()
        .filter(|(p, _)| !extra.iter().any(|(q, _)| q == p))
        .copied()
        .collect();
    files.extend_from_slice(extra);
    files
}

fn forbidden(report: &Report) -> Vec<(&str, &str)> {
    report
        .violations
        .iter()
        .filter_map(|v| match v {
            Violation::Forbidden { from, to, .. } => Some((from.as_str(), to.as_str())),
            Violation::UnknownLayer { .. } => None,
        })
        .collect()
}

#[test]
fn a_clean_tree_passes_and_its_imports_are_read() {
    let r = check_tree(CLEAN);
    assert!(r.is_clean(), "{}", r.failure_message());
    assert_eq!(r.files.len(), 7);
    // The reading is not vacuous: every kind of import in CLEAN is an edge.
    for (from, to) in [
        ("pipeline/mod.rs", "pipeline/push.rs"), // push::go, a child module's path
        ("pipeline/mod.rs", "ports/mod.rs"),
        ("pipeline/push.rs", "model/mod.rs"),    // model::Rules
        ("pipeline/push.rs", "model/policy.rs"), // a group
        ("pipeline/push.rs", "model/event.rs"),  // model::Action, through the re-export
        ("pipeline/push.rs", "ports/mod.rs"),    // a glob
        ("model/policy.rs", "model/event.rs"),   // super::event
        ("ports/mod.rs", "model/event.rs"),      // an inline path, through the re-export
        ("lib.rs", "pipeline/mod.rs"),           // pub use
    ] {
        assert!(
            r.imports(from, to),
            "{from} -> {to} not read:\n{}",
            r.render(true)
        );
    }
    let via = &r.edges[&("ports/mod.rs".to_owned(), "model/event.rs".to_owned())];
    assert_eq!(via[0].via, ["model/mod.rs"]);
    // `use super::*` in event.rs's test module imports its own file: no edge.
    assert!(!r.imports("model/event.rs", "model/event.rs"));
    assert_eq!(r.edges.len(), 11, "{}", r.render(true));
}

#[test]
fn a_mod_declaration_is_not_an_import() {
    let r = check_tree(&with(&[
        (
            "model/mod.rs",
            "mod a;\npub mod event;\npub mod policy;\npub use event::Action;\npub struct Rules;\n",
        ),
        ("model/a.rs", "use super::Rules;\npub fn f(_: Rules) {}\n"),
    ]));
    assert!(r.imports("model/a.rs", "model/mod.rs"));
    assert!(!r.imports("model/mod.rs", "model/a.rs"));
    assert!(!r.imports("lib.rs", "model/mod.rs"));
    assert!(r.is_clean(), "{}", r.failure_message());
}

#[test]
fn a_two_file_cycle_is_found() {
    let r = check_tree(&with(&[
        (
            "model/mod.rs",
            "pub mod a;\npub mod b;\npub mod event;\npub mod policy;\npub use event::Action;\npub struct Rules;\n",
        ),
        (
            "model/a.rs",
            "use crate::model::b::B;\npub struct A(pub B);\n",
        ),
        (
            "model/b.rs",
            "pub struct B(pub Option<Box<crate::model::a::A>>);\n",
        ),
    ]));
    assert!(r.violations.is_empty(), "{}", r.failure_message());
    assert_eq!(r.cycles.len(), 1, "{}", r.failure_message());
    let c = &r.cycles[0];
    assert_eq!(c.files, ["model/a.rs", "model/b.rs"]);
    assert_eq!(c.path.len(), 2);
    assert_eq!(c.path[0].import.path, "crate::model::b::B");
    assert_eq!(c.path[1].import.path, "crate::model::a::A");
    let message = r.failure_message();
    assert!(message.contains("model/a.rs -> model/b.rs"), "{message}");
}

#[test]
fn a_cycle_through_super_is_found() {
    let r = check_tree(&with(&[
        (
            "pipeline/mod.rs",
            "mod push;\npub use push::go;\npub struct Deps;\npub fn run(_: &dyn crate::ports::Store) {}\n",
        ),
        ("pipeline/push.rs", "pub fn go(_: &super::Deps) {}\n"),
    ]));
    assert!(r.violations.is_empty(), "{}", r.failure_message());
    assert_eq!(r.cycles.len(), 1, "{}", r.failure_message());
    assert_eq!(r.cycles[0].files, ["pipeline/mod.rs", "pipeline/push.rs"]);
    let back = &r.cycles[0].path[1];
    assert_eq!(
        (back.from.as_str(), back.import.path.as_str()),
        ("pipeline/push.rs", "super::Deps")
    );
}

#[test]
fn a_longer_cycle_is_one_component_with_one_concrete_path() {
    let r = check_tree(&with(&[
        (
            "model/mod.rs",
            "pub mod a;\npub mod b;\npub mod c;\npub mod event;\npub mod policy;\npub use event::Action;\npub struct Rules;\n",
        ),
        ("model/a.rs", "pub fn a() { super::b::b() }\n"),
        ("model/b.rs", "pub fn b() { super::c::c() }\n"),
        ("model/c.rs", "pub fn c() { crate::model::a::a() }\n"),
    ]));
    assert_eq!(r.cycles.len(), 1, "{}", r.failure_message());
    let c = &r.cycles[0];
    assert_eq!(c.files, ["model/a.rs", "model/b.rs", "model/c.rs"]);
    let hops: Vec<&str> = c.path.iter().map(|s| s.to.as_str()).collect();
    assert_eq!(hops, ["model/b.rs", "model/c.rs", "model/a.rs"]);
}

#[test]
fn an_import_of_a_files_own_item_through_a_re_export_is_a_cycle() {
    let r = check_tree(&with(&[
        (
            "lib.rs",
            "pub mod model;\npub mod ports;\npub mod pipeline;\npub use model::policy::allow;\n",
        ),
        (
            "model/policy.rs",
            "use super::event::Action;\nuse crate::model::Rules;\n\
             pub fn allow(_: Action, _: &Rules) -> bool { true }\n\
             pub fn again() -> fn(Action, &Rules) -> bool { crate::allow }\n",
        ),
    ]));
    assert_eq!(r.cycles.len(), 1, "{}", r.failure_message());
    assert_eq!(r.cycles[0].files, ["model/policy.rs"]);
    assert_eq!(r.cycles[0].path[0].import.via, ["lib.rs"]);
}

#[test]
fn a_forbidden_layer_import_is_named_with_its_rule() {
    let r = check_tree(&with(&[(
        "model/event.rs",
        "use crate::pipeline::run;\npub enum Action { Push }\npub fn f() -> fn(&dyn crate::ports::Store) { run }\n",
    )]));
    // An import up the layers closes a loop too: pipeline/push.rs imports model::event.
    assert_eq!(r.cycles.len(), 1, "{}", r.failure_message());
    assert_eq!(
        forbidden(&r),
        [
            ("model/event.rs", "pipeline/mod.rs"),
            ("model/event.rs", "ports/mod.rs")
        ]
    );
    let message = r.failure_message();
    for part in [
        "model/event.rs imports pipeline/mod.rs (model -> pipeline)",
        "`crate::pipeline::run` (line 1)",
        "rule: model may import only itself",
        "model/event.rs imports ports/mod.rs (model -> ports)",
        "`crate::ports::Store` (line 3)",
    ] {
        assert!(message.contains(part), "{part:?} not in\n{message}");
    }
}

#[test]
fn imports_hidden_in_function_bodies_and_macros_are_found() {
    let r = check_tree(&with(&[
        (
            "model/mod.rs",
            "pub mod a;\npub mod b;\npub mod c;\npub mod d;\npub mod event;\npub mod policy;\npub use event::Action;\npub struct Rules;\n",
        ),
        (
            "model/a.rs",
            "pub fn f() {\n    use crate::pipeline::run;\n    let _ = run;\n}\n",
        ),
        (
            "model/b.rs",
            "pub fn g() -> u8 {\n    let x = { crate::pipeline::N };\n    x\n}\n",
        ),
        (
            "model/c.rs",
            "pub fn h() -> String {\n    format!(\"{}\", crate::pipeline::N)\n}\n",
        ),
        (
            "model/d.rs",
            "#[macro_export]\nmacro_rules! n {\n    () => { $crate::pipeline::N };\n}\n",
        ),
        (
            "pipeline/mod.rs",
            "mod push;\nuse crate::ports::Store;\npub const N: u8 = 1;\n\
             pub fn run(s: &dyn Store) { push::go(s) }\n",
        ),
    ]));
    assert_eq!(
        forbidden(&r),
        [
            ("model/a.rs", "pipeline/mod.rs"),
            ("model/b.rs", "pipeline/mod.rs"),
            ("model/c.rs", "pipeline/mod.rs"),
            ("model/d.rs", "pipeline/mod.rs")
        ],
        "{}",
        r.failure_message()
    );
    let a = &r.edges[&("model/a.rs".to_owned(), "pipeline/mod.rs".to_owned())];
    assert_eq!((a[0].line, a[0].path.as_str()), (2, "crate::pipeline::run"));
}

#[test]
fn a_pub_use_re_export_is_an_import_and_is_followed() {
    let r = check_tree(&with(&[
        (
            "model/mod.rs",
            "pub mod event;\npub mod policy;\npub use event::Action;\npub struct Rules;\n\
             pub use crate::pipeline::run as start;\n",
        ),
        // An import of a re-exported name leads to the file that defines it.
        (
            "model/policy.rs",
            "use super::event::Action;\nuse crate::model::Rules;\n\
             pub fn allow(_: Action, _: &Rules) -> bool { let _ = crate::run; true }\n",
        ),
    ]));
    assert_eq!(
        forbidden(&r),
        [
            ("model/mod.rs", "pipeline/mod.rs"),
            ("model/policy.rs", "pipeline/mod.rs")
        ],
        "{}",
        r.failure_message()
    );
    let through = &r.edges[&("model/policy.rs".to_owned(), "pipeline/mod.rs".to_owned())];
    assert_eq!(through[0].via, ["lib.rs"]);
}

#[test]
fn groups_renames_globs_and_nested_super_are_read() {
    let r = check_tree(&with(&[
        (
            "model/mod.rs",
            "pub mod a;\npub mod event;\npub mod policy;\npub use event::Action;\npub struct Rules;\n",
        ),
        (
            "model/a.rs",
            "use crate::{ports::{self, Store as S}, pipeline::*};\n\
             pub fn f(_: &dyn S) {}\n\
             mod inner {\n    pub fn g() { super::super::policy::allow; }\n}\n\
             #[cfg(test)]\nmod tests {\n    use super::super::super::pipeline::run as r;\n}\n",
        ),
    ]));
    assert_eq!(
        forbidden(&r),
        [
            ("model/a.rs", "pipeline/mod.rs"),
            ("model/a.rs", "ports/mod.rs")
        ],
        "{}",
        r.failure_message()
    );
    assert!(r.imports("model/a.rs", "model/policy.rs"));
    let to_pipeline = &r.edges[&("model/a.rs".to_owned(), "pipeline/mod.rs".to_owned())];
    let paths: Vec<&str> = to_pipeline.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(
        paths,
        ["crate::pipeline::*", "super::super::super::pipeline::run"]
    );
}

#[test]
fn a_file_outside_the_layers_is_an_unknown_layer() {
    let r = check_tree(&with(&[
        ("store/mod.rs", "pub struct Item;\n"),
        (
            "pipeline/push.rs",
            "pub(super) fn go(_: &dyn crate::ports::Store, _: crate::store::Item) {}\n",
        ),
        (
            "pipeline/mod.rs",
            "mod push;\npub fn run(s: &dyn crate::ports::Store) { push::go(s, crate::store::Item) }\n",
        ),
    ]));
    assert!(r.violations.contains(&Violation::UnknownLayer {
        file: "store/mod.rs".to_owned(),
        layer: "store".to_owned()
    }));
    assert_eq!(
        forbidden(&r),
        [
            ("pipeline/mod.rs", "store/mod.rs"),
            ("pipeline/push.rs", "store/mod.rs")
        ]
    );
}

#[test]
fn visibility_paths_and_doc_links_are_not_imports() {
    let r = check_tree(&with(&[(
        "model/policy.rs",
        "//! See [`crate::pipeline::run`].\n\
         use super::event::Action;\nuse crate::model::Rules;\n\
         /// Like [`crate::pipeline::run`].\n\
         pub(in crate::model) fn allow(_: Action, _: &Rules) -> bool { true }\n",
    )]));
    assert!(r.is_clean(), "{}", r.failure_message());
}
