//! The script corpus (`tests/scripts/**/*.pkt`, packetdrill's language; see
//! `tunstack::script`) against the sans-IO core, and against Linux's TCP on a TUN
//! device, each script in a network namespace of its own.
//!
//! A script marked `// known-failing: core: why` (or `linux`) must fail there, and
//! fails the test if it passes (the mark is stale). Run one script by hand with
//! `cargo run -p demo -- script tests/scripts/FILE.pkt` (add `--linux` as root).

use std::path::{Path, PathBuf};

use tunstack::script::{self, Script, Verdict};
use tunstack_tests::netns;

fn corpus() -> Vec<(PathBuf, Script)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts");
    let files = script::collect(&dir);
    assert!(files.len() >= 50, "the corpus under {} has {} scripts", dir.display(), files.len());
    files
        .into_iter()
        .map(|f| {
            let s = script::load(&f).unwrap_or_else(|e| panic!("{e}"));
            (f, s)
        })
        .collect()
}

fn summarize(target: &str, results: &[(String, Verdict, Option<String>)]) {
    let mut bad = Vec::new();
    let (mut pass, mut xfail) = (0, 0);
    for (name, v, failure) in results {
        match v {
            Verdict::Pass => pass += 1,
            Verdict::ExpectedFailure(_) => xfail += 1,
            Verdict::Fail => bad.push(format!("FAIL {name}:{}", failure.clone().unwrap_or_default())),
            Verdict::UnexpectedPass(why) => {
                bad.push(format!("UNEXPECTED PASS {name}: marked known-failing on {target} ({why}); remove the mark"))
            }
        }
    }
    eprintln!("{target}: {pass} passed, {xfail} expected failures, {} failed, of {}", bad.len(), results.len());
    assert!(bad.is_empty(), "{} script(s) failed against {target}:\n{}", bad.len(), bad.join("\n"));
}

#[test]
fn corpus_against_the_core() {
    let mut results = Vec::new();
    for (_, s) in corpus() {
        let report = script::run_core(&s, &mut |_| {});
        let v = script::verdict(&s, &report);
        results.push((s.name.clone(), v, report.failure.map(|f| f.to_string())));
    }
    summarize("core", &results);
}

#[test]
fn corpus_against_linux() {
    if let Err(why) = demo::script_linux::check_prerequisites() {
        let _ = netns::skip::<()>(&why);
        return;
    }
    let scripts: Vec<Script> = corpus().into_iter().map(|(_, s)| s).collect();
    // Each script has its own namespace and mostly waits: run several at once.
    let mut reports = demo::script_linux::run_many(&scripts, 8, false);
    // run_many has run every failure again alone; a busy machine may still disturb one
    // of those runs by milliseconds: one more try, alone, before it counts.
    for (s, r) in scripts.iter().zip(reports.iter_mut()) {
        if !script::verdict(s, r).ok() {
            *r = demo::script_linux::run_one(s, Box::new(|_: &str| {}));
        }
    }
    let results: Vec<_> = scripts
        .iter()
        .zip(reports)
        .map(|(s, r)| (s.name.clone(), script::verdict(s, &r), r.failure.map(|f| f.to_string())))
        .collect();
    summarize("linux", &results);
}

/// The parser never panics, whatever the input: random text, and corpus scripts cut
/// and mutated.
mod parser_robustness {
    use super::*;
    use proptest::prelude::*;

    fn corpus_texts() -> &'static [String] {
        static TEXTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        TEXTS.get_or_init(|| {
            script::collect(&Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts"))
                .iter()
                .filter_map(|f| std::fs::read_to_string(f).ok())
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn random_text(s in "\\PC{0,400}") {
            let _ = script::parse("random", &s);
        }

        #[test]
        fn script_alphabet(s in "[0-9 +.~*<>:()\\[\\],=SFPR.a-z_A-Z\\n`\"%{}-]{0,300}") {
            let _ = script::parse("alphabet", &s);
        }

        #[test]
        fn mutated_corpus(pick in 0usize..1000, cut in 0usize..4000, insert in "\\PC{0,12}") {
            let texts = corpus_texts();
            prop_assume!(!texts.is_empty());
            let t = &texts[pick % texts.len()];
            let mut at = cut.min(t.len());
            while !t.is_char_boundary(at) {
                at -= 1;
            }
            let mutated = format!("{}{}{}", &t[..at], insert, &t[at..]);
            let _ = script::parse("mutated", &mutated);
            let _ = script::parse("truncated", &t[..at]);
        }
    }
}
