use std::sync::Arc;

use switchyard_api::profile::FeatureKind;

use super::*;

const MANIFEST: &str = r#"
name = "m"
version = 1
[[inputs]]
name = "input"
datatype = "FP32"
shape = [-1, 3]
features = ["age", "grade", "debtor"]
[[outputs]]
name = "label"
datatype = "INT64"
shape = [-1]
[files]
"model.onnx" = "0000000000000000000000000000000000000000000000000000000000000000"
"#;

fn csv_rows(rows: usize) -> String {
    let mut text = String::from("age,grade,debtor,label,extra\n");
    for i in 0..rows {
        let grade = if i == 3 {
            String::new()
        } else {
            format!("{}", 100.0 + (i % 50) as f64 * 1.5)
        };
        text.push_str(&format!(
            "{},{grade},{},{},x\n",
            18 + i % 30,
            i % 2,
            i % 3 % 2
        ));
    }
    text
}

fn version_dir(root: &Path) -> PathBuf {
    let dir = root.join("m/1");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model.onnx"), b"graph").unwrap();
    let sha = sha256_file(&dir.join("model.onnx")).unwrap();
    std::fs::write(
        dir.join(MANIFEST_FILE),
        MANIFEST.replace(&"0".repeat(64), &sha),
    )
    .unwrap();
    dir
}

#[test]
fn csv_columns_become_numeric_or_categorical_profiles() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("train.csv");
    std::fs::write(&data, csv_rows(200).replace(",x\n", ",0\n")).unwrap();
    let table = Table::read(&data).unwrap();
    assert_eq!(table.rows(), 200);
    assert!(
        table.column("grade").unwrap().unwrap()[3].is_nan(),
        "an empty cell is missing"
    );
    let manifest = Manifest::parse(MANIFEST).unwrap();
    let profile = build(&manifest, &table, &ProfileOptions::default(), "train.csv").unwrap();
    let kinds: Vec<(&str, FeatureKind)> = profile
        .features
        .iter()
        .map(|f| (f.name.as_str(), f.kind))
        .collect();
    // 30 whole-number ages are over max_categories: numeric.
    assert_eq!(
        kinds,
        [
            ("age", FeatureKind::Numeric),
            ("grade", FeatureKind::Numeric),
            ("debtor", FeatureKind::Categorical)
        ]
    );
    assert!((profile.features[1].missing_share - 1.0 / 200.0).abs() < 1e-12);
    assert_eq!(profile.features[2].values, vec![0.0, 1.0]);
    assert_eq!(profile.features[2].column, 2);
    let prediction = profile.prediction.as_ref().expect("label column");
    assert_eq!(prediction.output.as_deref(), Some("label"));
    assert!(profile.validate().is_empty(), "{:?}", profile.validate());
    assert!(profile.check_against(&manifest).is_empty());

    let forced = ProfileOptions {
        categorical: vec!["age".into()],
        max_categories: 5,
        ..ProfileOptions::default()
    };
    let profile = build(&manifest, &table, &forced, "train.csv").unwrap();
    assert_eq!(profile.features[0].kind, FeatureKind::Categorical);
    assert_eq!(profile.features[0].values.len(), 30);
}

#[test]
fn data_that_does_not_fit_is_refused_naming_the_feature() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("train.csv");
    std::fs::write(&data, "age,score\n20,1\n").unwrap();
    let manifest = Manifest::parse(MANIFEST).unwrap();
    let err = build(
        &manifest,
        &Table::read(&data).unwrap(),
        &ProfileOptions::default(),
        "train.csv",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("feature \"grade\" is not a column"), "{err}");
    assert!(err.contains("feature \"debtor\""), "{err}");
    assert!(err.contains("columns: age, score"), "{err}");

    std::fs::write(&data, "age,grade,debtor,note\n20,abc,0,free text\n").unwrap();
    let table = Table::read(&data).unwrap();
    let err = build(&manifest, &table, &ProfileOptions::default(), "train.csv")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("row 2 column \"grade\": \"abc\" is not a number"),
        "{err}"
    );
    assert!(
        !err.contains("column \"note\""),
        "a column that is no feature may hold text: {err}"
    );
    let err = Table::read(&dir.path().join("train.xlsx"))
        .unwrap_err()
        .to_string();
    assert!(err.contains(".csv") && err.contains(".parquet"), "{err}");
}

#[test]
fn install_names_the_profile_in_the_manifest_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let version = version_dir(dir.path());
    let data = dir.path().join("train.csv");
    std::fs::write(&data, csv_rows(100)).unwrap();
    let manifest = Manifest::load(&version).unwrap();
    let table = Table::read(&data).unwrap();
    let profile = build(&manifest, &table, &ProfileOptions::default(), "train.csv").unwrap();
    let path = install(&version, &profile, false).unwrap();
    assert_eq!(path, version.join(PROFILE_FILE));

    let manifest = Manifest::load(&version).unwrap();
    assert_eq!(manifest.profile.as_deref(), Some(PROFILE_FILE));
    manifest.verify_files(&version).unwrap();
    let read = Profile::load(&version.join(PROFILE_FILE), &manifest).unwrap();
    assert_eq!(read, profile);
    assert!(!version.join("profile.tmp").exists() && !version.join("model.tmp").exists());

    let err = install(&version, &profile, false).unwrap_err().to_string();
    assert!(
        err.contains("already has a profile") && err.contains("--force"),
        "{err}"
    );
    install(&version, &profile, true).unwrap();
}

#[test]
fn parquet_files_are_read_column_by_column() {
    use parquet::data_type::{DoubleType, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.parquet");
    let schema = Arc::new(
        parse_message_type(
            "message train { required int64 age; optional double grade; required int64 debtor; }",
        )
        .unwrap(),
    );
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .build(),
    );
    let mut writer =
        SerializedFileWriter::new(File::create(&path).unwrap(), schema, props).unwrap();
    let mut group = writer.next_row_group().unwrap();
    let ages: Vec<i64> = (0..10).map(|i| 18 + i).collect();
    let grades: Vec<f64> = (0..9).map(|i| 100.0 + f64::from(i)).collect();
    let grade_levels: Vec<i16> = (0..10).map(|i| i16::from(i != 4)).collect();
    let debtors: Vec<i64> = (0..10).map(|i| i % 2).collect();
    let mut col = group.next_column().unwrap().unwrap();
    col.typed::<Int64Type>()
        .write_batch(&ages, None, None)
        .unwrap();
    col.close().unwrap();
    let mut col = group.next_column().unwrap().unwrap();
    col.typed::<DoubleType>()
        .write_batch(&grades, Some(&grade_levels), None)
        .unwrap();
    col.close().unwrap();
    let mut col = group.next_column().unwrap().unwrap();
    col.typed::<Int64Type>()
        .write_batch(&debtors, None, None)
        .unwrap();
    col.close().unwrap();
    group.close().unwrap();
    writer.close().unwrap();

    let table = Table::read(&path).unwrap();
    assert_eq!(table.names, ["age", "grade", "debtor"]);
    assert_eq!(table.rows(), 10);
    assert_eq!(table.column("age").unwrap().unwrap()[9], 27.0);
    let grade = table.column("grade").unwrap().unwrap();
    assert!(grade[4].is_nan(), "a null is missing");
    assert_eq!(grade[5], 104.0);
    let manifest = Manifest::parse(MANIFEST).unwrap();
    let profile = build(
        &manifest,
        &table,
        &ProfileOptions::default(),
        "train.parquet",
    )
    .unwrap();
    assert_eq!(profile.features.len(), 3);
    assert!(
        profile.prediction.is_none(),
        "no label column, no prediction profile"
    );
}
