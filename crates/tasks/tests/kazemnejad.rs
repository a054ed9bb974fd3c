//! Golden test of Kazemnejad et al. 2023's tasks: ordo's answer to every prompt that the
//! reference's own dataset builders drew (`scripts/kazemnejad_reference.py`) is the reference's,
//! and ordo's prompts of the same size use the same tokens.

use ordo_tasks::TaskConfig;
use ordo_tasks::rng::Rng;
use std::path::Path;

#[derive(serde::Deserialize)]
struct Fixture {
    examples: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    kind: String,
    prompt: Vec<String>,
    answer: Vec<String>,
}

#[test]
fn answers_match_the_reference_builders() {
    let fixture: Fixture =
        serde_json::from_str(include_str!("data/kazemnejad_reference.json")).unwrap();
    let mut kinds = std::collections::BTreeSet::new();
    for case in &fixture.examples {
        let task: TaskConfig = toml::from_str(&format!("kind = \"{}\"", case.kind)).unwrap();
        let generator = task.generator(Path::new(".")).unwrap();
        let got = generator
            .answer_for(&case.prompt)
            .expect("a deterministic task");
        assert_eq!(got, case.answer, "{} on {:?}", case.kind, case.prompt);
        let alphabet = generator.symbols(64);
        for t in case.prompt.iter().chain(&case.answer) {
            assert!(
                t == "[SEP]" || alphabet.contains(t),
                "{}: {t} not in {alphabet:?}",
                case.kind
            );
        }
        kinds.insert(case.kind.clone());
    }
    assert_eq!(kinds.len(), 5, "{kinds:?}");
    // ordo's own examples answer as its answer function says (the two agree on the reference's).
    for kind in kinds.iter().map(String::as_str).chain(["scan"]) {
        let task: TaskConfig = toml::from_str(&format!("kind = \"{kind}\"")).unwrap();
        let generator = task.generator(Path::new(".")).unwrap();
        let mut rng = Rng::new(9);
        for len in [1, 4, 8, 16] {
            if generator.eval_unsupported(len, 1).is_some() {
                continue;
            }
            let ex = generator.example(&mut rng, len);
            assert_eq!(generator.answer_for(&ex.prompt), Some(ex.answer), "{kind}");
        }
    }
}
