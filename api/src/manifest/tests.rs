use super::*;

const GOOD: &str = r#"
name = "boosted"
version = 2
backends = ["ort"]
labels = ["negative", "positive"]

[[inputs]]
name = "input"
datatype = "FP32"
shape = [-1, 3]
features = ["a", "b", "c"]

[[outputs]]
name = "label"
datatype = "INT64"
shape = [-1]

[files]
"model.onnx" = "0000000000000000000000000000000000000000000000000000000000000000"
"#;

fn write_version(root: &Path, model: &str, version: &str, text: &str) -> PathBuf {
    let dir = root.join(model).join(version);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(MANIFEST_FILE), text).unwrap();
    dir
}

#[test]
fn a_good_manifest_parses_with_defaults() {
    let m = Manifest::parse(GOOD).unwrap();
    assert!(m.validate().is_empty(), "{:?}", m.validate());
    assert_eq!(m.batching, Batching::default());
    assert_eq!(m.backends, vec![BackendKind::Ort]);
    assert_eq!(m.input("input").unwrap().row_elements(), Some(3));
    assert_eq!(m.output("label").unwrap().row_elements(), Some(1));
    assert_eq!(m.platform, "onnx");
}

#[test]
fn unknown_keys_and_datatypes_are_refused_by_name() {
    let err = Manifest::parse(&GOOD.replace("labels", "lables")).unwrap_err();
    assert!(err.contains("lables"), "{err}");
    let err = Manifest::parse(&GOOD.replace("\"FP32\"", "\"FP16\"")).unwrap_err();
    assert!(err.contains("FP16"), "{err}");
}

#[test]
fn validation_reports_every_problem_at_once() {
    let mut m = Manifest::parse(GOOD).unwrap();
    m.version = 0;
    m.inputs[0].shape = vec![4, 0];
    m.inputs[0].features = vec!["only-one".into(), "two".into()];
    m.outputs.push(m.outputs[0].clone());
    m.batching.max_batch_size = 0;
    m.files.clear();
    m.files.insert("../escape".into(), "xyz".into());
    let problems = m.validate();
    let all = problems.join("\n");
    for needle in [
        "version must be a positive",
        "dimension 0",
        "first (batch) dimension",
        "2 feature names",
        "declared twice",
        "max_batch_size 0",
        "must list \"model.onnx\"",
        "\"../escape\" is not a plain file name",
        "64 lower-case hex",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
}

#[test]
fn load_checks_the_folder_names() {
    let root = tempfile::tempdir().unwrap();
    let ok = write_version(root.path(), "boosted", "2", GOOD);
    assert_eq!(Manifest::load(&ok).unwrap().version, 2);

    let wrong = write_version(root.path(), "other", "3", GOOD);
    let err = Manifest::load(&wrong).unwrap_err().to_string();
    assert!(
        err.contains("version 2 does not match its folder \"3\""),
        "{err}"
    );
    assert!(
        err.contains("name \"boosted\" does not match its folder \"other\""),
        "{err}"
    );

    let missing = root.path().join("boosted").join("9");
    let err = Manifest::load(&missing).unwrap_err().to_string();
    assert!(
        err.contains("cannot read") && err.contains("model.toml"),
        "{err}"
    );
}

#[test]
fn verify_files_names_the_file_whose_hash_differs() {
    let root = tempfile::tempdir().unwrap();
    let dir = write_version(root.path(), "boosted", "2", GOOD);
    std::fs::write(dir.join(MODEL_FILE), b"onnx bytes").unwrap();
    let mut m = Manifest::load(&dir).unwrap();
    let err = m.verify_files(&dir).unwrap_err().to_string();
    assert!(
        err.contains("sha256 mismatch") && err.contains("model.onnx"),
        "{err}"
    );

    let actual = sha256_file(&dir.join(MODEL_FILE)).unwrap();
    m.files.insert(MODEL_FILE.into(), actual);
    m.verify_files(&dir).unwrap();

    m.files.insert("absent.bin".into(), "0".repeat(64));
    let err = m.verify_files(&dir).unwrap_err().to_string();
    assert!(err.contains("absent.bin"), "{err}");
}
