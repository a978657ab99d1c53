# syntax=docker/dockerfile:1
FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml README.md ./
COPY upload_service ./upload_service
RUN pip install --no-cache-dir .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 app
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY alembic.ini gunicorn.conf.py ./
COPY alembic ./alembic
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 ENVIRONMENT=production
USER app
EXPOSE 8000
CMD ["gunicorn", "-c", "gunicorn.conf.py", "upload_service.main:app"]
