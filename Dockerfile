# syntax=docker/dockerfile:1
# Build: docker build -t upload-service .   Run: see README ("Deploy").

# --- web: the page and the API docs' scripts, built from web/ with its own lock ----------------
FROM node:20-slim AS web
WORKDIR /src/web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/build.mjs web/tsconfig.json ./
COPY web/src ./src
# Writes /src/upload_service/web_assets (index.html, hashed assets, vendored docs scripts).
RUN npm run build

# --- build: install the locked dependencies into a virtualenv ----------------------------------
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
# Exactly the locked versions, each checked against its hashes (`make lock`): pip and the build
# tools, then the dependencies. A layer of its own, rebuilt only when a lock changes.
COPY requirements-bootstrap.lock requirements.lock ./
RUN pip install --require-hashes -r requirements-bootstrap.lock \
    && pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY upload_service ./upload_service
COPY --from=web /src/upload_service/web_assets ./upload_service/web_assets
# Editable, so the code stays at /app beside alembic/ and alembic.ini, where migrations look;
# built by the locked setuptools, with nothing resolved afresh.
RUN pip install --no-deps --no-build-isolation -e . \
    && pip uninstall -y pip setuptools wheel

# --- runtime: the virtualenv and the code, no compiler, no pip, not root ------------------------
FROM python:3.11-slim
RUN groupadd --gid 10001 app && useradd --uid 10001 --gid 10001 --no-create-home app
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --from=build /app /app
COPY alembic.ini gunicorn.conf.py ./
COPY alembic ./alembic
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ENVIRONMENT=production \
    BIND=0.0.0.0:8000
# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
EXPOSE 8000
# Exec form: gunicorn is PID 1 and receives SIGTERM itself, so the drain starts at once.
CMD ["gunicorn", "-c", "gunicorn.conf.py", "upload_service.main:app"]
