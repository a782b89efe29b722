//! Every committed fuzz seed (`fuzz/seeds/<target>/`, written by `fuzz/examples/seed.rs`) run
//! through its target's check, in the ordinary test suite: the inputs of every bug the fuzzers
//! found stay fixed without running a fuzzer. The checks are the fuzz targets' own code, included
//! by path because the fuzz crate is a workspace of its own.

#[path = "../../../fuzz/src/checks.rs"]
mod checks;

#[test]
fn every_fuzz_seed_passes_its_target() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds");
    for (target, check) in checks::TARGETS {
        let mut seeds: Vec<_> = std::fs::read_dir(root.join(target))
            .unwrap_or_else(|e| panic!("{target}: {e}"))
            .map(|d| d.expect("a seed").path())
            .collect();
        seeds.sort();
        assert!(!seeds.is_empty(), "no seeds for {target}");
        for path in seeds {
            let data = std::fs::read(&path).expect("a readable seed");
            // A panic names the seed, so a failure can be replayed with `cargo fuzz run`.
            eprintln!("{target}: {}", path.display());
            check(&data);
        }
    }
}
