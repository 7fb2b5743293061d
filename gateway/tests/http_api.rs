//! The HTTP front end end to end, against a real gateway on 127.0.0.1:
//! every protocol answers with the golden outputs and names its version,
//! and every kind of bad input gets a clear 4xx without disturbing service.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use reqwest::StatusCode;
use serde_json::{Value, json};

async fn post(url: &str, body: &Value) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let r = reqwest::Client::new()
        .post(url)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let body = r.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_model_answers_the_golden_outputs_with_its_version() {
    let (gw, _dir, _) = common::start(&[]).await;
    let base = common::http(&gw);
    for (model, version) in [("boosted", 3), ("linear", 1), ("mlp", 1)] {
        let g = common::golden(model, version);
        let mut body = common::infer_body(&g, g.rows);
        body["id"] = json!("req-7");
        let (status, headers, answer) =
            post(&format!("{base}/v2/models/{model}/infer"), &body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(headers["x-model-version"], version.to_string().as_str());
        assert_eq!(headers["x-slot"], "blue");
        assert!(headers.contains_key("x-request-id"));
        assert_eq!(answer["model_version"], version.to_string());
        assert_eq!(answer["id"], "req-7");
        common::assert_golden(&answer, &g, g.rows);

        let (status, _, answer) = post(
            &format!("{base}/v2/models/{model}/versions/{version}/infer"),
            &body,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        common::assert_golden(&answer, &g, g.rows);
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_tensors_and_output_selection_work() {
    let (gw, _dir, _) = common::start(&[]).await;
    let g = common::golden("boosted", 3);
    let header = json!({
        "inputs": [{"name": "input", "shape": [2, 20], "datatype": "FP32", "parameters": {"binary_data_size": 160}}],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": true}}]
    })
    .to_string();
    let mut body = header.clone().into_bytes();
    for x in &g.input[..40] {
        body.extend_from_slice(&x.to_le_bytes());
    }
    let r = reqwest::Client::new()
        .post(format!("{}/v2/models/boosted/infer", common::http(&gw)))
        .header("inference-header-content-length", header.len())
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let n: usize = r.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = r.bytes().await.unwrap();
    let head: Value = serde_json::from_slice(&bytes[..n]).unwrap();
    assert_eq!(
        head["outputs"].as_array().unwrap().len(),
        1,
        "only the requested output"
    );
    assert_eq!(head["outputs"][0]["parameters"]["binary_data_size"], 16);
    let probs: Vec<f32> = bytes[n..]
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    for (p, want) in probs.iter().zip(&g.probabilities) {
        assert!((p - want).abs() <= 1e-5);
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kserve_v1_predicts_rows() {
    let (gw, _dir, _) = common::start(&[]).await;
    let g = common::golden("mlp", 1);
    let instances: Vec<&[f32]> = g.input.chunks(20).take(3).collect();
    let (status, headers, answer) = post(
        &format!("{}/v1/models/mlp:predict", common::http(&gw)),
        &json!({ "instances": instances }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(headers["x-model-version"], "1");
    let predictions = answer["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 3);
    for (i, p) in predictions.iter().enumerate() {
        assert_eq!(p["label"], g.labels[i]);
        assert!(
            (p["probabilities"][1].as_f64().unwrap() as f32 - g.probabilities[2 * i + 1]).abs()
                < 1e-5
        );
    }
    let r = reqwest::get(format!("{}/v1/models/mlp", common::http(&gw)))
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"name": "mlp", "ready": true})
    );
    let (status, _, answer) = post(
        &format!("{}/v1/models/mlp:predict", common::http(&gw)),
        &json!({ "instances": [[1, 2]] }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        answer["error"].as_str().unwrap().contains("instances[0]"),
        "{answer}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_readiness_and_unknown_names() {
    let (gw, _dir, _) = common::start(&[]).await;
    let base = common::http(&gw);
    let get = |path: String| async move { reqwest::get(path).await.unwrap() };
    let meta: Value = get(format!("{base}/v2/models/boosted"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(meta["versions"], json!(["3"]));
    assert_eq!(
        meta["inputs"][0],
        json!({"name": "input", "datatype": "FP32", "shape": [-1, 20]})
    );
    assert_eq!(meta["outputs"][1]["shape"], json!([-1, 2]));
    assert_eq!(
        get(format!("{base}/v2/health/live")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        get(format!("{base}/v2/health/ready")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        get(format!("{base}/v2/models/boosted/ready"))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        get(format!("{base}/v2/models/boosted/versions/3/ready"))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        get(format!("{base}/v2/models/boosted/versions/1/ready"))
            .await
            .status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let server: Value = get(format!("{base}/v2")).await.json().await.unwrap();
    assert_eq!(server["name"], "switchyard");
    let echoed = reqwest::Client::new()
        .get(format!("{base}/v2/models/nope"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(
        echoed.headers()["x-request-id"],
        "trace-me-42",
        "the client's id comes back"
    );

    let g = common::golden("boosted", 3);
    let body = common::infer_body(&g, 1);
    let (status, _, answer) = post(&format!("{base}/v2/models/nope/infer"), &body).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        answer["error"].as_str().unwrap().contains("\"nope\""),
        "{answer}"
    );
    let (status, _, answer) =
        post(&format!("{base}/v2/models/boosted/versions/9/infer"), &body).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        answer["error"].as_str().unwrap().contains("version 9"),
        "{answer}"
    );
    let (status, _, _) = post(
        &format!("{base}/v2/models/boosted/versions/abc/infer"),
        &body,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        get(format!("{base}/v3/nothing")).await.status(),
        StatusCode::NOT_FOUND
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_4xx_and_service_goes_on() {
    let (gw, _dir, _) = common::start(&["--max-body-bytes=65536"]).await;
    let url = format!("{}/v2/models/boosted/infer", common::http(&gw));
    let input = |shape: Value, datatype: &str, data: Value| json!({"inputs": [{"name": "input", "shape": shape, "datatype": datatype, "data": data}]});
    let row: Vec<f32> = vec![0.5; 20];
    let cases = vec![
        (input(json!([1, 20]), "FP64", json!(row)), "datatype FP64"),
        (
            input(json!([1, 19]), "FP32", json!(&row[..19])),
            "shape [1, 19]",
        ),
        (
            input(json!([1, 20]), "FP32", json!(&row[..19])),
            "19 values where the shape needs 20",
        ),
        (input(json!([20]), "FP32", json!(row)), "shape [20]"),
        (json!({"inputs": []}), "input \"input\" is missing"),
        (
            json!({"inputs": [
                {"name": "input", "shape": [1, 20], "datatype": "FP32", "data": row},
                {"name": "extra", "shape": [1], "datatype": "FP32", "data": [1]}]}),
            "no input \"extra\"",
        ),
        (
            input(json!([100, 20]), "FP32", json!(vec![0.5f32; 2000])),
            "100 rows",
        ),
        (
            json!({"inputs": [{"name": "input", "shape": [1, 20], "datatype": "FP32", "data": row}], "outputs": [{"name": "score"}]}),
            "no output \"score\"",
        ),
    ];
    let client = reqwest::Client::new();
    for (body, needle) in cases {
        let r = client.post(&url).json(&body).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{needle}");
        let answer: Value = r.json().await.unwrap();
        let message = answer["error"].as_str().unwrap();
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    }
    let r = client
        .post(&url)
        .body("{\"inputs\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("malformed request JSON"));
    let r = client
        .post(&url)
        .body(vec![b' '; 70_000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("larger than the gateway's limit")
    );

    let g = common::golden("boosted", 3);
    let r = client
        .post(&url)
        .json(&common::infer_body(&g, 4))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "still serving after bad input");
    common::assert_golden(&r.json().await.unwrap(), &g, 4);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repository_extension_lists_loads_and_unloads() {
    let (gw, _dir, _) = common::start(&[]).await;
    let base = common::http(&gw);
    let client = reqwest::Client::new();
    let index: Value = client
        .post(format!("{base}/v2/repository/index"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = index.as_array().unwrap();
    let of = |name: &str| entries.iter().filter(|e| e["name"] == name).count();
    assert_eq!(
        (of("boosted"), of("linear"), of("mlp")),
        (3, 1, 1),
        "{index}"
    );
    let state = |name: &str, v: &str| {
        entries
            .iter()
            .find(|e| e["name"] == name && e["version"] == v)
            .map(|e| e["state"].as_str().unwrap().to_owned())
            .unwrap()
    };
    assert_eq!(state("boosted", "3"), "READY");
    assert_eq!(state("boosted", "1"), "UNAVAILABLE");

    let r = client
        .post(format!("{base}/v2/repository/models/mlp/unload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let g = common::golden("mlp", 1);
    let (status, _, _) = post(
        &format!("{base}/v2/models/mlp/infer"),
        &common::infer_body(&g, 1),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let r = client
        .post(format!("{base}/v2/repository/models/mlp/load"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (status, _, answer) = post(
        &format!("{base}/v2/models/mlp/infer"),
        &common::infer_body(&g, 2),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    common::assert_golden(&answer, &g, 2);
    let r = client
        .post(format!("{base}/v2/repository/models/ghost/load"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    gw.shutdown().await;
}
