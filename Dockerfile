# v2serve image: scikit-learn models over the Open Inference Protocol (REST 8080, gRPC 8081,
# Prometheus metrics 8082), on MLServer 1.7.1. See docs/deploy.md.
#
# The build stage has the compilers (for any dependency without a wheel) and builds a
# virtualenv from the locked set in constraints.txt; the final stage copies only that
# virtualenv onto a clean python:3.11-slim. Both stages use the same base image, so the
# virtualenv's interpreter path (/usr/local/bin/python3.11) exists in both.

FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY runtimes ./runtimes
# The runtime dependencies only (no test extra), each pinned by the lock file, with the
# extras for every format the ServingRuntime lists (XGBoost, LightGBM).
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --constraint constraints.txt '.[xgboost,lightgbm]' \
 && /opt/venv/bin/v2serve --help > /dev/null


FROM python:3.11-slim

# MLServer writes metrics_dir (.metrics) and environments_dir (.envs) under the working
# directory, so it must be writable by the (numeric, non-root) user. Group 0 may write
# too, for platforms that run the image under an arbitrary uid in group 0.
RUN groupadd --gid 1000 v2serve \
 && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /home/v2serve \
      --shell /usr/sbin/nologin v2serve \
 && mkdir -p /home/v2serve /mnt/models \
 && chown 1000:0 /home/v2serve \
 && chmod 0775 /home/v2serve

COPY --from=build /opt/venv /opt/venv

# KServe mounts the model at /mnt/models: a v2serve repository, one model's folder with
# version folders, or a single model.joblib (see runtimes/repository/kserve.py).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MLSERVER_MODEL_REPOSITORY_ROOT=/mnt/models

WORKDIR /home/v2serve
# v2serve start reads settings/settings.json relative to the working directory.
COPY settings/settings.json settings/settings.json

USER 1000:1000

EXPOSE 8080 8081 8082

# No curl in slim: the virtualenv's python asks the REST port (MLSERVER_HTTP_PORT if set).
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('MLSERVER_HTTP_PORT', '8080') + '/v2/health/ready', timeout=2)"]

ENTRYPOINT ["v2serve", "start"]
