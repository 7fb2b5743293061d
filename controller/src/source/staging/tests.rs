#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use super::*;

/// A source that copies a version folder, optionally spoiling one file or
/// the manifest, or failing outright.
struct Folder {
    from: PathBuf,
    tamper: Option<&'static str>,
    manifest: Option<String>,
    fail: bool,
}

impl Folder {
    fn of(from: PathBuf) -> Folder {
        Folder {
            from,
            tamper: None,
            manifest: None,
            fail: false,
        }
    }
}

impl ModelSource for Folder {
    fn describe(&self) -> String {
        "the test folder".into()
    }

    async fn fetch(
        &self,
        model: &str,
        selector: &Selector,
        into: &Path,
    ) -> Result<Origin, SourceError> {
        if self.fail {
            return Err(SourceError::Unusable {
                server: self.describe(),
                wanted: Wanted {
                    model: model.into(),
                    selector: selector.clone(),
                },
                message: "gone".into(),
            });
        }
        for entry in std::fs::read_dir(&self.from).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), into.join(entry.file_name())).unwrap();
        }
        if let Some(name) = self.tamper {
            let path = into.join(name);
            let mut bytes = std::fs::read(&path).unwrap();
            bytes.push(b' ');
            std::fs::write(&path, bytes).unwrap();
        }
        if let Some(text) = &self.manifest {
            std::fs::write(into.join(MANIFEST_FILE), text).unwrap();
        }
        Ok(Origin {
            from: "mlflow".into(),
            server: "http://mlflow.test".into(),
            name: model.into(),
            version: 7,
            alias: None,
            run_id: Some("r1".into()),
            artifacts: "mlflow-artifacts:/1/r1/artifacts/switchyard".into(),
        })
    }
}

fn example(version: u64) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/boosted")
        .join(version.to_string())
}

/// A repository holding `boosted/1` only.
fn repository() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let v1 = models.join("boosted/1");
    std::fs::create_dir_all(&v1).unwrap();
    for entry in std::fs::read_dir(example(1)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), v1.join(entry.file_name())).unwrap();
    }
    (dir, models)
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn run(source: &Folder, models: &Path) -> Result<Imported, SourceError> {
    let selector = Selector::Alias("champion".into());
    futures::executor::block_on(import(source, models, "boosted", &selector, &|_| {}))
}

#[test]
fn a_fetched_version_becomes_the_next_number_verified_and_renamed_into_place() {
    let (_tmp, models) = repository();
    let imported = run(&Folder::of(example(2)), &models).unwrap();
    assert_eq!(imported.repository_version, 2);
    assert!(!imported.reused);
    let dir = models.join("boosted/2");
    let manifest = Manifest::load(&dir).unwrap();
    manifest.verify_files(&dir).unwrap();
    assert_eq!(manifest.version, 2);
    assert_eq!(
        manifest.provenance.training_run,
        "mlflow:boosted/7 run r1 (make_models.py:boosted:v2)"
    );
    let original = Manifest::load(&example(2)).unwrap();
    assert_eq!(manifest.files, original.files);
    assert_eq!(manifest.inputs, original.inputs);
    assert_eq!(listing(&models.join("boosted")), ["1", "2"]);
}

#[test]
fn the_same_version_fetched_again_is_reused_not_duplicated() {
    let (_tmp, models) = repository();
    let source = Folder::of(example(2));
    assert_eq!(run(&source, &models).unwrap().repository_version, 2);
    let again = run(&source, &models).unwrap();
    assert_eq!(again.repository_version, 2);
    assert!(again.reused);
    assert_eq!(listing(&models.join("boosted")), ["1", "2"]);
}

#[test]
fn a_file_that_fails_its_sha256_is_refused_and_nothing_is_added() {
    let (_tmp, models) = repository();
    let source = Folder {
        tamper: Some("golden.json"),
        ..Folder::of(example(2))
    };
    let e = run(&source, &models).unwrap_err();
    let text = e.chain();
    assert!(
        text.starts_with(r#"model "boosted" alias "champion" from the test folder is refused: sha256 mismatch for golden.json"#),
        "{text}"
    );
    assert_eq!(listing(&models.join("boosted")), ["1"]);
}

#[test]
fn a_manifest_for_another_model_or_an_invalid_one_is_refused() {
    let (_tmp, models) = repository();
    let text = std::fs::read_to_string(example(2).join(MANIFEST_FILE)).unwrap();
    let source = Folder {
        manifest: Some(text.replace("name = \"boosted\"", "name = \"mlp\"")),
        ..Folder::of(example(2))
    };
    let e = run(&source, &models).unwrap_err().chain();
    assert!(
        e.contains(r#"name "mlp" is not the model being promoted, "boosted""#),
        "{e}"
    );
    let source = Folder {
        manifest: Some(text.replace("platform = \"onnx\"", "platform = \"tensorflow\"")),
        ..Folder::of(example(2))
    };
    let e = run(&source, &models).unwrap_err().chain();
    assert!(
        e.contains(r#"platform "tensorflow" is not supported"#),
        "{e}"
    );
    assert_eq!(listing(&models.join("boosted")), ["1"]);
}

#[test]
fn a_failed_fetch_leaves_no_staging_folder_and_no_new_model() {
    let (_tmp, models) = repository();
    let failing = Folder {
        fail: true,
        ..Folder::of(example(2))
    };
    assert!(run(&failing, &models).is_err());
    assert_eq!(listing(&models.join("boosted")), ["1"]);
    let selector = Selector::Version(1);
    let e = futures::executor::block_on(import(&failing, &models, "fresh", &selector, &|_| {}));
    assert!(e.is_err());
    assert_eq!(listing(&models), ["boosted"]);
}

#[test]
fn numbers_continue_past_gaps_and_stale_staging_folders_are_cleared() {
    let (_tmp, models) = repository();
    std::fs::create_dir_all(models.join("boosted/5")).unwrap();
    std::fs::create_dir_all(models.join("boosted/.staging-1-2")).unwrap();
    let imported = run(&Folder::of(example(3)), &models).unwrap();
    assert_eq!(imported.repository_version, 6);
    assert_eq!(listing(&models.join("boosted")), ["1", "5", "6"]);
}

#[test]
fn the_rewritten_manifest_parses_back_to_what_was_written() {
    let original = Manifest::load(&example(2)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin {
        from: "mlflow".into(),
        server: "http://mlflow.test".into(),
        name: "boosted".into(),
        version: 7,
        alias: Some("champion".into()),
        run_id: None,
        artifacts: String::new(),
    };
    write_manifest(dir.path(), &original, &origin).unwrap();
    let text = std::fs::read_to_string(dir.path().join(MANIFEST_FILE)).unwrap();
    assert!(text.starts_with("# fetched by `controller promote --from mlflow` from http://mlflow.test (model \"boosted\", version 7)"));
    assert_eq!(Manifest::parse(&text).unwrap(), original);
}
