//! Runs every input in the decoder's fuzz corpus (seeds and whatever fuzzing
//! found and was kept) through the fuzz property.

#[test]
fn decode_corpus_holds_the_fuzz_property() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory") {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        mach::codec::fuzz_decode(&data);
        count += 1;
    }
    assert!(
        count >= 10,
        "corpus at {} has only {count} inputs",
        dir.display()
    );
}
