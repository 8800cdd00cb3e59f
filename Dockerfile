# syntax=docker/dockerfile:1
# memlock_exporter image: a static binary on distroless, run as uid 65534.
#
#   docker build -t memlock_exporter .
#   docker run --rm --pid=host --ipc=host -p 127.0.0.1:9947:9947 \
#     -v /proc:/host/proc:ro -v /sys:/host/sys:ro \
#     memlock_exporter --path.procfs=/host/proc --path.sysfs=/host/sys
#
# Two copies of the binary:
#   /bin/memlock_exporter       no file capabilities; the ENTRYPOINT. Starts
#                               under any capability set.
#   /bin/memlock_exporter-caps  file capabilities cap_ipc_lock,cap_sys_ptrace+ep,
#                               so that the non-root user gains CAP_IPC_LOCK
#                               (probes lock past the memlock limit) and
#                               CAP_SYS_PTRACE (smaps of every process) at exec.
#                               Use it only where the container is granted both
#                               (--cap-add IPC_LOCK --cap-add SYS_PTRACE, or the
#                               pod's capabilities.add) and no_new_privs is off:
#                               with the "e" bit, exec fails with EPERM when the
#                               bounding set lacks either capability, and
#                               no_new_privs (allowPrivilegeEscalation: false,
#                               --security-opt no-new-privileges) ignores file
#                               capabilities.
# The capability is an extended attribute (security.capability): BuildKit's
# COPY --from keeps it (the default builder since Docker 23); check with
#   docker run --rm --entrypoint= <builder stage> getcap /src/memlock_exporter-caps

# Base images by exact tag, not by digest: no registry is reachable where
# this file is maintained, so no digest could be checked, and an unchecked
# digest is worse than none. The builder is the exact Go release the
# project is built and tested with (go1.26.8, `go version` on its CI
# machine). distroless publishes no version tags, only moving ones (latest,
# nonroot, debug) and digests: the tag is named explicitly, and a release
# pins it by resolving it where a registry is reachable, e.g.
#   docker buildx imagetools inspect gcr.io/distroless/static-debian12:latest
# and writing gcr.io/distroless/static-debian12@sha256:<that digest> below.
FROM golang:1.26.8-bookworm AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends libcap2-bin \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# .dockerignore leaves .git out: pass the version in.
ARG VERSION=dev
ARG REVISION=unknown
ARG BRANCH=unknown
# A static binary: no libc in the final image.
ENV CGO_ENABLED=0
RUN make build VERSION="$VERSION" REVISION="$REVISION" BRANCH="$BRANCH" \
 && cp memlock_exporter memlock_exporter-caps \
 && setcap cap_ipc_lock,cap_sys_ptrace+ep memlock_exporter-caps \
 && getcap memlock_exporter-caps | grep -q 'cap_ipc_lock,cap_sys_ptrace=ep' \
 && cp memlock_exporter memlock_exporter-bpf \
 && setcap cap_bpf,cap_perfmon+ep memlock_exporter-bpf \
 && getcap memlock_exporter-bpf | grep -q 'cap_perfmon,cap_bpf=ep' \
 && ./memlock_exporter --version

FROM gcr.io/distroless/static-debian12:latest
COPY --from=builder /src/memlock_exporter /bin/memlock_exporter
COPY --from=builder /src/memlock_exporter-caps /bin/memlock_exporter-caps
COPY --from=builder /src/memlock_exporter-bpf /bin/memlock_exporter-bpf
# nobody: the same fixed uid as the DaemonSet's runAsUser.
USER 65534:65534
EXPOSE 9947
ENTRYPOINT ["/bin/memlock_exporter"]
