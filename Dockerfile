# The ChargeWatch application image: every service in docker-compose.yml runs `chargewatch <command>`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN useradd --create-home --uid 10001 chargewatch && mkdir /data && chown chargewatch /data
WORKDIR /app

COPY pyproject.toml README.md ./
COPY schemas schemas
COPY charging charging
COPY infra infra
COPY producers producers
COPY processors processors
COPY sinks sinks
COPY chargewatch chargewatch
RUN pip install .

USER chargewatch
WORKDIR /data
ENTRYPOINT ["chargewatch"]
CMD ["--help"]
