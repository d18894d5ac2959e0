# The prm-factory worker image for GPU nodes: the project with the GPU vLLM build.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY flows ./flows
COPY tasks ./tasks
COPY sql ./sql
COPY data ./data
COPY infra ./infra
RUN pip install --no-cache-dir ".[gpu]"
ENV PRMF_REPO=/app
