//! The image reference grammar: the whole-reference parser, each part's parser and the lenient
//! reader of task-definition images, with the invariants the store and the deployer rely on.
#![no_main]

use imagehook_core::model::reference::{self, Digest, ImageRef, Registry, Repository, Tag};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };

    // Every part either refuses the string or keeps it as given (the registry lower-cased).
    if let Ok(r) = Registry::parse(s) {
        assert_eq!(r.as_str(), s.to_ascii_lowercase());
        assert_eq!(Registry::parse(r.as_str()).as_ref(), Ok(&r));
    }
    if let Ok(r) = Repository::parse(s) {
        assert_eq!(r.as_str(), s);
    }
    if let Ok(t) = Tag::parse(s) {
        assert_eq!(t.as_str(), s);
    }
    if let Ok(d) = Digest::parse(s) {
        assert_eq!(d.as_str(), s);
    }

    let name = reference::image_name_of(s);
    let Ok(r) = ImageRef::parse(s) else {
        return;
    };
    // What is written into a task definition reads back as the same image.
    let shown = r.to_string();
    assert_eq!(
        ImageRef::parse(&shown).as_ref(),
        Ok(&r),
        "{s:?} shown as {shown:?}"
    );
    let deployable = ImageRef::parse(&r.deployable());
    assert_eq!(deployable.as_ref().map(ImageRef::name), Ok(r.name()));
    assert_eq!(deployable.as_ref().map(|d| &d.digest), Ok(&r.digest));
    // The container that runs a repository is found by the same name.
    assert_eq!(name, r.name());
    // Records keep references as JSON.
    let json = serde_json::to_string(&r).expect("an image reference serialises");
    let back: ImageRef = serde_json::from_str(&json).expect("a serialised reference reads back");
    assert_eq!(back, r);
});
