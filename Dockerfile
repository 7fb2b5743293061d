# switchyard's images: the gateway (the default target) and the controller.
#
#   docker build -t switchyard/gateway:dev .
#   docker build --target controller -t switchyard/controller:dev .
#   docker build --build-arg MODELS=repo -t switchyard/gateway:demo .   # models/ baked in
#
# Stages: `builder` compiles both binaries from the locked workspace;
# `onnxruntime` takes ONNX Runtime's shared library from the onnxruntime
# wheel on PyPI (the same pin as python/requirements.txt, see
# docs/decisions/0002-onnxruntime-from-pypi.md); `runtime` is Debian slim with
# both, run as uid 65532. Nothing is fetched at run time. The gateway reads
# /models (mount the repository there, or bake it with MODELS=repo) and
# writes only /var/lib/switchyard (routing state) and /tmp, as
# docs/kubernetes.md and k8s/base expect.

ARG RUST_IMAGE=rust:1.95.0-bookworm
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm
ARG RUNTIME_IMAGE=debian:12.11-slim
# `none`: an empty /models to mount over; `repo`: this repository's models/.
ARG MODELS=none

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
COPY . .
# The caches keep the registry and the build between builds; the binaries are
# copied out of the cache mount so the next stage can take them.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p gateway -p controller \
    && mkdir -p /out \
    && cp target/release/gateway target/release/controller /out/

FROM ${PYTHON_IMAGE} AS onnxruntime
ARG ONNXRUNTIME_VERSION=1.32.0
# pip fetches the wheel for this platform from PyPI; the library is copied out
# of it under the one name ORT_DYLIB_PATH points at.
RUN pip download --no-cache-dir --no-deps --only-binary=:all: --dest /tmp/wheel \
        "onnxruntime==${ONNXRUNTIME_VERSION}" \
    && mkdir -p /opt/onnxruntime \
    && python -c "import glob, re, shutil, zipfile; \
wheel = zipfile.ZipFile(glob.glob('/tmp/wheel/onnxruntime-*.whl')[0]); \
libs = [n for n in wheel.namelist() if re.fullmatch(r'onnxruntime/capi/libonnxruntime\.so(\.[0-9.]+)?', n)]; \
assert len(libs) == 1, libs; \
shutil.copyfileobj(wheel.open(libs[0]), open('/opt/onnxruntime/libonnxruntime.so', 'wb'))" \
    && rm -rf /tmp/wheel

FROM ${RUNTIME_IMAGE} AS models-none
RUN mkdir /models

FROM ${RUNTIME_IMAGE} AS models-repo
COPY models/ /models/

# hadolint ignore=DL3006
FROM models-${MODELS} AS models

FROM ${RUNTIME_IMAGE} AS runtime
# /var/lib/switchyard is the only place besides /tmp the processes write.
RUN mkdir -p /var/lib/switchyard \
    && chown 65532:65532 /var/lib/switchyard \
    && chmod 0750 /var/lib/switchyard
COPY --from=builder /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=onnxruntime /opt/onnxruntime/libonnxruntime.so /opt/onnxruntime/libonnxruntime.so
COPY --from=models /models /models
ENV ORT_DYLIB_PATH=/opt/onnxruntime/libonnxruntime.so \
    SWITCHYARD_MODELS=/models \
    SWITCHYARD_STATE_DIR=/var/lib/switchyard
USER 65532:65532
WORKDIR /var/lib/switchyard

FROM runtime AS controller
COPY smoke-tests/ /smoke-tests/
COPY --from=builder /out/controller /usr/local/bin/controller
ENV SWITCHYARD_SMOKE_TESTS=/smoke-tests \
    SWITCHYARD_STATE_DIR=/var/lib/switchyard/controller
ENTRYPOINT ["controller"]

# The default target: the gateway, configured by SWITCHYARD_* variables only.
# It listens on every interface for inference and metrics; the admin API
# stays on loopback unless SWITCHYARD_ADMIN_ADDR and SWITCHYARD_ADMIN_TOKEN
# are set (k8s/base sets both).
FROM runtime AS gateway
COPY --from=builder /out/gateway /usr/local/bin/gateway
ENV SWITCHYARD_HTTP_ADDR=0.0.0.0:8000 \
    SWITCHYARD_GRPC_ADDR=0.0.0.0:8001 \
    SWITCHYARD_METRICS_ADDR=0.0.0.0:8002
EXPOSE 8000 8001 8002
ENTRYPOINT ["gateway"]
