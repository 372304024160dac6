# syntax=docker/dockerfile:1
# The stead image: stead, steadctl and stead-bench on Debian 12, run as the non-root
# user stead (uid/gid 10001, as the manifests in k8s/ expect).
#
#   docker build -t registry.example.com/stead:0.1.0 .
#   docker run --rm registry.example.com/stead:0.1.0 --help
#
# The build stage compiles only the three binaries (release preset, RelWithDebInfo,
# debug info stripped) and lists the Debian packages that own the shared libraries
# they load; the runtime stage installs exactly those packages on debian:12-slim. The
# runtime keeps /bin/sh: the backup CronJob and the restore init container are short
# shell scripts around steadctl.

FROM debian:12 AS build
# pipefail: a library no package owns must fail the build, not vanish in a pipe.
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive
# The build packages of scripts/setup (configure also needs the test and benchmark
# libraries, though none of their targets is built here).
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends \
      cmake ninja-build g++ pkg-config \
      librocksdb-dev libboost-dev libprotobuf-dev protobuf-compiler libabsl-dev libssl-dev \
      nlohmann-json3-dev libjemalloc-dev \
      libgtest-dev libgmock-dev libbenchmark-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake --preset release -B /build \
 && cmake --build /build --target stead steadctl stead-bench \
 && mkdir -p /out/bin \
 && for binary in server/stead client/steadctl client/stead-bench; do \
      install -m 0755 --strip "/build/$binary" /out/bin/; \
    done
# The runtime packages: for every shared library the binaries load, the package that
# owns it (dpkg knows a file by its /lib or /usr/lib path, whichever it shipped).
RUN for binary in /out/bin/*; do ldd "$binary"; done \
      | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u \
      | while read -r lib; do \
          real="$(readlink -f "$lib")"; \
          dpkg-query -S "$lib" 2>/dev/null || dpkg-query -S "$real" 2>/dev/null \
            || dpkg-query -S "${real#/usr}" 2>/dev/null \
            || { echo "no package owns $lib" >&2; exit 1; }; \
        done \
      | cut -d: -f1 | sort -u > /out/runtime-packages \
 && cat /out/runtime-packages

FROM debian:12-slim
COPY --from=build /out/runtime-packages /tmp/runtime-packages
RUN apt-get update -qq \
 && xargs -a /tmp/runtime-packages apt-get install -y -qq --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages \
 && groupadd --system --gid 10001 stead \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /var/lib/stead --shell /usr/sbin/nologin stead \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/stead /var/lib/stead/data /var/lib/stead/wal
COPY --from=build /out/bin/ /usr/local/bin/
# Numeric, so Kubernetes can check runAsNonRoot without resolving the name.
USER 10001:10001
WORKDIR /var/lib/stead
ENV STEAD_DATA_DIR=/var/lib/stead/data \
    STEAD_WAL_DIR=/var/lib/stead/wal
# client, peer, HTTP (/healthz, /readyz, /metrics)
EXPOSE 2479 2480 2481
# stead stops cleanly on SIGTERM (leadership transfer, flush, exit 0).
STOPSIGNAL SIGTERM
ENTRYPOINT ["stead"]
