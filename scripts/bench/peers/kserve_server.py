"""KServe's Python model server running an ONNX file with onnxruntime.

KServe's REST server hard-codes `host="0.0.0.0"` in the `uvicorn.Config`
it builds (kserve/protocol/rest/server.py); this script rebinds it to
127.0.0.1 by wrapping `uvicorn.Config` before the server starts, and turns
the gRPC server off (it would listen on every interface too). KServe parses
`sys.argv` at import time, so the settings come from the environment:

    BENCH_ONNX=models/boosted/2/model.onnx BENCH_NAME=boosted BENCH_PORT=9130 python kserve_server.py
"""

import os
import sys

sys.argv = sys.argv[:1]  # kserve reads its own flags from argv at import

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import uvicorn  # noqa: E402
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer  # noqa: E402

_Config = uvicorn.Config


class LoopbackConfig(_Config):
    def __init__(self, *args, **kwargs):
        kwargs["host"] = "127.0.0.1"
        super().__init__(*args, **kwargs)


uvicorn.Config = LoopbackConfig
import kserve.protocol.rest.server as rest  # noqa: E402

rest.uvicorn.Config = LoopbackConfig

DATATYPES = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64", np.dtype(np.float64): "FP64"}


class OnnxModel(Model):
    def __init__(self, name: str, path: str):
        super().__init__(name)
        self.path = path
        self.load()

    def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.ready = True
        return self.ready

    def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        feeds = {i.name: i.as_numpy().astype(np.float32, copy=False) for i in payload.inputs}
        results = self.session.run(self.output_names, feeds)
        outputs = [
            InferOutput(name=n, shape=list(r.shape), datatype=DATATYPES.get(r.dtype, "BYTES"), data=r.ravel().tolist())
            for n, r in zip(self.output_names, results)
        ]
        return InferResponse(model_name=self.name, infer_outputs=outputs, response_id=payload.id)


if __name__ == "__main__":
    model = OnnxModel(os.environ.get("BENCH_NAME", "boosted"), os.environ["BENCH_ONNX"])
    ModelServer(http_port=int(os.environ["BENCH_PORT"]), enable_grpc=False, workers=1,
                enable_latency_logging=False).start([model])
