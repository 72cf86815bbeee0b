# DevConnect: one image for restd, chatd, the Celery worker and beat
# (`docker run IMAGE restd|chatd|worker|beat|migrate`). Multi-stage: wheels are
# built in the first stage; the runtime stage has no compiler and runs as an
# unprivileged user.

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
COPY setup.cfg pyproject.toml README.md constraints.txt ./
COPY core core
COPY proto proto
COPY chatd chatd
COPY restd restd
COPY domain domain
COPY workers workers
# The versions the suite passed with (constraints.txt, `make lock`); no embedded extras.
RUN pip wheel --wheel-dir /wheels -c constraints.txt .

FROM python:3.11-slim-bookworm AS runtime
# Listening on 0.0.0.0, the services refuse to start on the development JWT
# secret whatever DEVCONNECT_ENV says: set DEVCONNECT_JWT_SECRET.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DEVCONNECT_HOST=0.0.0.0 DEVCONNECT_VAR_DIR=/var/lib/devconnect
# LightGBM (the feed's learned ranker) links the system's OpenMP runtime.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 devconnect \
    && useradd --system --uid 10001 --gid devconnect --home-dir /nonexistent \
       --shell /usr/sbin/nologin devconnect \
    && mkdir -p /var/lib/devconnect && chown devconnect:devconnect /var/lib/devconnect
COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links /wheels devconnect && rm -rf /wheels
USER 10001:10001
WORKDIR /var/lib/devconnect
# API, chat, and the metrics ports of the worker, restd and chatd.
EXPOSE 8080 8081 9808 9809 9810
ENTRYPOINT ["devconnect"]
CMD ["restd"]
