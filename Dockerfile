# Runs the main job the same way `make run` does: same install steps, same defaults.
FROM python:3.11-slim-bookworm

RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake git \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml constraints.txt Makefile README.md ./
COPY clio ./clio
COPY flows ./flows
COPY configs ./configs

# `make install`: torch 2.13.0 (CPU) first, then the package with the portable llama.cpp build.
RUN make install PYTHON=python3

ENV PATH="/app/.venv/bin:${PATH}" \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    DO_NOT_TRACK=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false

VOLUME ["/app/outputs"]
ENTRYPOINT ["clio"]
CMD ["run", "--config", "configs/sample.yaml", "--output-dir", "outputs"]
