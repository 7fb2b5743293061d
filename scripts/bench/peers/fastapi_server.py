"""A tiny FastAPI + uvicorn + onnxruntime server: the baseline peer.

Serves one ONNX model on the Open Inference Protocol v2 JSON path
(`POST /v2/models/{name}/infer`) with the same body shape the gateway
takes, written the way a FastAPI user would (pydantic request models).
One uvicorn worker, one ONNX Runtime thread, bound to 127.0.0.1.

    python fastapi_server.py --model models/boosted/2/model.onnx --name boosted --port 9100
"""

import argparse
from typing import Any, Optional

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel


class InputTensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]
    parameters: Optional[dict[str, Any]] = None


class InferRequest(BaseModel):
    id: Optional[str] = None
    inputs: list[InputTensor]
    parameters: Optional[dict[str, Any]] = None


DTYPES = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32}
NAMES = {np.dtype(v): k for k, v in DTYPES.items()}


def build(model_path: str, name: str, version: str) -> FastAPI:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    output_names = [o.name for o in session.get_outputs()]
    app = FastAPI()

    @app.get("/v2/health/ready")
    def ready():
        return {"ready": True}

    @app.post("/v2/models/{model}/infer")
    def infer(model: str, request: InferRequest):
        if model != name:
            raise HTTPException(404, f"unknown model {model}")
        feeds = {}
        for t in request.inputs:
            if t.datatype not in DTYPES:
                raise HTTPException(400, f"unsupported datatype {t.datatype}")
            feeds[t.name] = np.asarray(t.data, dtype=DTYPES[t.datatype]).reshape(t.shape)
        results = session.run(output_names, feeds)
        outputs = [
            {"name": n, "datatype": NAMES.get(r.dtype, str(r.dtype)), "shape": list(r.shape), "data": r.ravel().tolist()}
            for n, r in zip(output_names, results)
        ]
        answer = {"model_name": name, "model_version": version, "outputs": outputs}
        if request.id is not None:
            answer["id"] = request.id
        return answer

    return app


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--name", default="boosted")
    parser.add_argument("--version", default="2")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(build(args.model, args.name, args.version), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
