//! Replays every file of the kept fuzz corpus (`fuzz/corpus/<target>/`)
//! through the checks the fuzz targets run (`fuzz/src/lib.rs`, included
//! here), on the stable toolchain: an input that once found a bug keeps
//! being tried by every `cargo test`.

#[allow(dead_code)]
#[path = "../../../fuzz/src/lib.rs"]
mod checks;

use std::path::Path;

#[test]
fn every_kept_fuzz_input_passes_its_target_check() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    for (target, check) in checks::TARGETS {
        let dir = corpus.join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.expect("a corpus entry").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{}: no corpus kept", dir.display());
        for file in files {
            let input = std::fs::read(&file).expect("a corpus file");
            let outcome = std::panic::catch_unwind(|| check(&input));
            assert!(outcome.is_ok(), "{target}: {} fails", file.display());
        }
    }
}
