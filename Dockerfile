# Jumpboard service image: API, worker and CLI in one image (`docker compose` picks the command).
#
#   docker build -t jumpboard .                                   # CUDA build of torch (default)
#   docker build -t jumpboard:cpu --build-arg TORCH_INDEX_URL=... . # CPU build (see docs/deployment.md)
#
# A plain install of torch on Linux x86_64 resolves to the CUDA build, whose CUDA libraries come
# as Python packages: the host needs only the NVIDIA driver and the NVIDIA Container Toolkit.
# The same image also runs on machines without a GPU (training falls back to the CPU); the CPU
# build only makes the image several GB smaller.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# The torch requirement of pyproject.toml (tests/app/test_deploy_files.py keeps them equal).
ARG TORCH_SPEC="torch>=2.4,<2.15"
# Empty: the default index (CUDA build on Linux). Set it to PyTorch's CPU wheel index for the
# CPU build; docker-compose.cpu.yml passes it through from `.env`.
ARG TORCH_INDEX_URL=""

RUN groupadd --system --gid 10001 jumpboard \
    && useradd --system --uid 10001 --gid jumpboard --create-home --home-dir /home/jumpboard \
        --shell /usr/sbin/nologin jumpboard \
    && install -d -o jumpboard -g jumpboard -m 0750 /home/jumpboard/.jumpboard \
        /var/lib/jumpboard /var/lib/jumpboard/artifacts /var/lib/jumpboard/data

WORKDIR /opt/jumpboard

# torch first and on its own: the largest layer, rebuilt only when the torch arguments change.
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
        pip install --index-url "$TORCH_INDEX_URL" "$TORCH_SPEC"; \
    else \
        pip install "$TORCH_SPEC"; \
    fi

# The remaining dependencies, from pyproject.toml alone, so that editing the code does not
# reinstall them; with the `trackers` extra (TensorBoard, MLflow) that `train.loggers` uses.
COPY pyproject.toml README.md ./
# The `s3` extra too: workers on several hosts keep their artifacts in an object store.
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; o = p['optional-dependencies']; print('\n'.join(p['dependencies'] + o['trackers'] + o['s3']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The code, as the wheel users get: built here, installed, and the sources removed again.
# The wheel carries the Alembic revisions as the package `app.migrations`.
COPY app ./app
COPY expansion ./expansion
COPY migrations ./migrations
RUN pip wheel --no-deps -w /tmp/dist . \
    && pip install --no-deps /tmp/dist/jumpboard-*.whl \
    && cd / && rm -rf /tmp/dist /opt/jumpboard/* \
    && python -c "import app.cli, app.api.main, torch; from app.db.migrate import migrations_dir; print('torch', torch.__version__, 'migrations', migrations_dir())"

ENV JUMPBOARD_ARTIFACT_DIR=/var/lib/jumpboard/artifacts \
    JUMPBOARD_DATA_DIR=/var/lib/jumpboard/data \
    JUMPBOARD_HOST=0.0.0.0 \
    JUMPBOARD_PORT=8000

USER jumpboard
EXPOSE 8000

# curl-free: the image has python, so python asks the API for /healthz.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('JUMPBOARD_PORT', '8000') + '/healthz', timeout=4)"]

ENTRYPOINT ["jumpboard"]
# Alone (`docker run -p 8000:8000 jumpboard`): the embedded default, SQLite and an in-process
# worker. docker-compose.yml runs api, worker and migrations as separate services instead.
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
