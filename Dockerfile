# bookd: the SQS listener and the Flask app, both run by supervisord (deploy/supervisord.conf).
# Build: docker build -t bookd .    Run the whole stack: docker compose up
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The runtime lock first (every package pinned and hashed; `make lock`), so this layer is rebuilt
# only when it changes.
COPY requirements.txt ./
RUN pip install --no-cache-dir --require-hashes -r requirements.txt

# The project itself: its dependencies and its build backend (setuptools) are already installed
# from the lock, so this step downloads nothing.
COPY . .
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
    && rm -rf build ./*.egg-info \
    && groupadd --system --gid 10001 bookd \
    && useradd --system --uid 10001 --gid bookd --home-dir /app --no-create-home --shell /usr/sbin/nologin bookd \
    && mkdir -p var \
    && chown bookd:bookd var

# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001

ENV BOOKD_BIND=0.0.0.0:8000
EXPOSE 8000

# /livez: is the listener alive and not stuck? It never calls AWS, so an S3 or SQS outage
# never restarts a healthy container (/readyz and /health say whether bookd can work now).
# urlopen raises on anything but 2xx; the slim image has no curl, hence Python.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/livez', timeout=4)"]

CMD ["supervisord", "-n", "-c", "deploy/supervisord.conf"]
