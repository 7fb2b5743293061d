//! The parsing of MLflow's answers, on bodies recorded from a real MLflow
//! 3.17.2 server (`controller/tests/fixtures/mlflow/`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::StatusCode;

use super::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/mlflow")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn an_alias_answer_gives_the_version_its_source_and_run() {
    let reply: VersionReply = serde_json::from_slice(&fixture("alias-champion.json")).unwrap();
    let v = reply.model_version;
    assert_eq!(v.name, "boosted");
    assert_eq!(v.version, "4");
    assert_eq!(v.status, "READY");
    assert_eq!(v.run_id, "dabefea2c057401d8de1bf5abcb24864");
    assert_eq!(
        parse_source(&v.source).unwrap(),
        Location::Proxied("1/dabefea2c057401d8de1bf5abcb24864/artifacts/switchyard".into())
    );
}

#[test]
fn a_version_registered_from_a_runs_uri_is_found_through_the_run() {
    let reply: VersionReply = serde_json::from_slice(&fixture("version-runs-source.json")).unwrap();
    assert_eq!(
        parse_source(&reply.model_version.source).unwrap(),
        Location::Run {
            run_id: "41da2cb9c10a4e2bab606abacc551e0b".into(),
            path: "switchyard".into(),
        }
    );
    let run: RunReply = serde_json::from_slice(&fixture("run.json")).unwrap();
    let root = proxied_path(&run.run.info.artifact_uri).unwrap();
    assert_eq!(root, "1/41da2cb9c10a4e2bab606abacc551e0b/artifacts");
    assert_eq!(
        join(&root, "switchyard"),
        "1/41da2cb9c10a4e2bab606abacc551e0b/artifacts/switchyard"
    );
}

#[test]
fn a_version_of_a_logged_model_is_found_through_the_logged_model() {
    let reply: VersionReply =
        serde_json::from_slice(&fixture("version-logged-model-source.json")).unwrap();
    assert_eq!(reply.model_version.version, "3");
    assert_eq!(
        parse_source(&reply.model_version.source).unwrap(),
        Location::LoggedModel("m-f31b405f959b4ed69884c1286084efd0".into())
    );
    let model: LoggedModelReply = serde_json::from_slice(&fixture("logged-model.json")).unwrap();
    assert_eq!(
        proxied_path(&model.model.info.artifact_uri).unwrap(),
        "1/models/m-f31b405f959b4ed69884c1286084efd0/artifacts"
    );
}

#[test]
fn error_answers_keep_the_servers_message_code_and_status() {
    assert_eq!(
        error_message(StatusCode::BAD_REQUEST, &fixture("alias-not-found.json")),
        "Registered model alias nope not found. (INVALID_PARAMETER_VALUE, HTTP 400)"
    );
    assert_eq!(
        error_message(StatusCode::NOT_FOUND, &fixture("version-not-found.json")),
        "Model Version (name=boosted, version=99) not found (RESOURCE_DOES_NOT_EXIST, HTTP 404)"
    );
    let missing = error_message(StatusCode::NOT_FOUND, &fixture("artifact-not-found.json"));
    assert!(
        missing.starts_with(
            "No such artifact: '1/41da2cb9c10a4e2bab606abacc551e0b/artifacts/switchyard/nope.json'"
        ),
        "{missing}"
    );
    assert_eq!(
        error_message(
            StatusCode::BAD_GATEWAY,
            b"<html>\n  <h1>Bad  gateway</h1></html>"
        ),
        "HTTP 502 Bad Gateway: <html> <h1>Bad gateway</h1></html>"
    );
    assert_eq!(
        error_message(StatusCode::SERVICE_UNAVAILABLE, b""),
        "HTTP 503 Service Unavailable"
    );
}

#[test]
fn sources_outside_the_artifact_proxy_are_refused_with_the_reason() {
    for source in [
        "s3://bucket/1/abc/artifacts/switchyard",
        "/srv/mlruns/1/abc/artifacts/switchyard",
        "file:///srv/mlruns/1/abc",
    ] {
        let e = parse_source(source).unwrap_err();
        assert!(e.contains("artifact proxy"), "{source}: {e}");
    }
    let e = parse_source("models:/boosted/3").unwrap_err();
    assert!(e.contains("another registered model's version"), "{e}");
    let e = parse_source("runs:/../x").unwrap_err();
    assert!(e.contains("no usable run id"), "{e}");
}

#[test]
fn artifact_paths_never_climb_out_of_their_folder() {
    assert_eq!(
        proxied_path("mlflow-artifacts://mlflow:5000/1/r/artifacts/switchyard").unwrap(),
        "1/r/artifacts/switchyard"
    );
    assert_eq!(
        proxied_path("mlflow-artifacts:/1//r/").unwrap(),
        "1/r",
        "empty parts are dropped"
    );
    assert!(proxied_path("mlflow-artifacts:/1/../../etc").is_err());
    assert!(proxied_path("mlflow-artifacts:/").is_err());
    assert!(parse_source("runs:/abc/../../x").is_err());
}

#[test]
fn server_uris_must_be_http() {
    let ok =
        MlflowSource::new("http://127.0.0.1:5000/", Auth::None, Duration::from_secs(1)).unwrap();
    assert_eq!(ok.describe(), "MLflow at http://127.0.0.1:5000");
    assert_eq!(
        ok.url(&["api", "2.0", "mlflow-artifacts", "artifacts", "1", "a b"])
            .as_str(),
        "http://127.0.0.1:5000/api/2.0/mlflow-artifacts/artifacts/1/a%20b"
    );
    let prefixed = MlflowSource::new(
        "https://tools.example/mlflow",
        Auth::None,
        Duration::from_secs(1),
    )
    .unwrap();
    assert_eq!(
        prefixed
            .url(&["api", "2.0", "mlflow", "runs", "get"])
            .as_str(),
        "https://tools.example/mlflow/api/2.0/mlflow/runs/get"
    );
    for bad in [
        "databricks",
        "file:///srv/mlruns",
        "mlflow:5000",
        "http://h/?x=1",
    ] {
        let e = MlflowSource::new(bad, Auth::None, Duration::from_secs(1)).unwrap_err();
        assert!(e.to_string().starts_with("--mlflow-uri"), "{bad}: {e}");
    }
}

#[test]
fn credentials_follow_mlflows_variables_and_never_print() {
    let some = |s: &str| Some(s.to_owned());
    assert_eq!(
        Auth::from_vars(some("t"), some("u"), some("p")),
        Auth::Bearer("t".into())
    );
    assert_eq!(
        Auth::from_vars(None, some("u"), None),
        Auth::Basic {
            username: "u".into(),
            password: String::new()
        }
    );
    assert_eq!(Auth::from_vars(None, None, some("p")), Auth::None);
    let shown = format!(
        "{:?} {:?}",
        Auth::Bearer("s3cret".into()),
        Auth::Basic {
            username: "u".into(),
            password: "hunter2".into()
        }
    );
    assert_eq!(shown, "Bearer(<redacted>) Basic(u:<redacted>)");
}
