# The tokenpool worker (and its other commands: topics, load, plan, replay, ...).
# docker build -t tokenpool . && docker run tokenpool --help
FROM python:3.11-slim

RUN useradd --system --create-home --home-dir /home/tokenpool tokenpool \
    && mkdir -p /data /reports && chown tokenpool /data /reports

WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY rules rules
COPY schemas schemas
COPY stream_app stream_app
COPY adapters adapters
# The engine's per-event modules compiled with mypyc (setup.py): the compiler is
# only needed while installing. RocksDB for the worker's state, matplotlib for the
# plots of the scheduled report (`tokenpool plan --every`).
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && TOKENPOOL_COMPILE=1 pip install --no-cache-dir '.[rocksdb,plan]' \
    && apt-get purge -y --auto-remove gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

USER tokenpool
WORKDIR /data
# In a container the metrics endpoint must be reachable from Prometheus: all
# interfaces. State lives in RocksDB under /data (a volume), rebuilt from the
# changelog topics when the volume is new.
ENV TOKENPOOL_WEB_HOST=0.0.0.0 \
    TOKENPOOL_WEB_PORT=6066 \
    TOKENPOOL_STORE=rocksdb:// \
    TOKENPOOL_DATA_DIR=/data \
    PYTHONUNBUFFERED=1
EXPOSE 6066
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:6066/health', timeout=4)"]
ENTRYPOINT ["tokenpool"]
CMD ["worker"]
