# es-semantic: the CLI in a container, running as a non-root user.
#
#   docker build -t registry.example.com/es-semantic:0.1.0 .
#   docker build --build-arg TORCH_VARIANT=cu128 -t registry.example.com/es-semantic:0.1.0-cuda .
#   docker run --rm -e ES_URL -e ES_API_KEY registry.example.com/es-semantic:0.1.0 status --index faq
#
# TORCH_VARIANT picks PyTorch's wheel index: cpu (the default: no CUDA packages, a much smaller
# image) or a CUDA build such as cu126 or cu128 (see pytorch.org for the builds of TORCH_VERSION).
# Models are not in the image: mount a folder and pass --model /models/NAME, or let the job download
# from the Hugging Face Hub into HF_HOME.
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
ARG TORCH_VARIANT=cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/home/es-semantic/.cache/huggingface

# PyTorch first, from its own index, so that the torch requirement of es-semantic is already met.
RUN pip install "torch==${TORCH_VERSION}" --extra-index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}"

WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY es_semantic ./es_semantic
COPY mappings ./mappings
RUN pip install . && rm -rf /src

RUN useradd --create-home --uid 10001 --user-group es-semantic
USER 10001:10001
WORKDIR /home/es-semantic

ENTRYPOINT ["es-semantic"]
CMD ["--help"]
