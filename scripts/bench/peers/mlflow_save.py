"""Saves an ONNX file as a local MLflow model (ONNX flavour, with a float32
signature so `/invocations` casts JSON numbers to the graph's type), for
`mlflow models serve --env-manager local`. No tracking server is involved.

    python mlflow_save.py --model models/boosted/2/model.onnx --out /tmp/mlflow-boosted
"""

import argparse
import shutil

import mlflow.onnx
import numpy as np
import onnx
import onnxruntime as ort
from mlflow.models import infer_signature


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    graph = onnx.load(args.model)
    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    width = session.get_inputs()[0].shape[1]
    sample = np.zeros((2, width), dtype=np.float32)
    outputs = session.run(None, {session.get_inputs()[0].name: sample})
    prediction = {o.name: r for o, r in zip(session.get_outputs(), outputs)}
    shutil.rmtree(args.out, ignore_errors=True)
    mlflow.onnx.save_model(
        graph,
        args.out,
        signature=infer_signature(sample, prediction),
        onnx_execution_providers=["CPUExecutionProvider"],
    )


if __name__ == "__main__":
    main()
