# syntax=docker/dockerfile:1
#
# scim-sidecar's image: one static binary on distroless/static (CA certificates, tzdata, a
# passwd entry for "nonroot"; no shell, no package manager, no libc), running as UID 65532.
# The binary writes nothing but its logs, so the pod runs it with readOnlyRootFilesystem.
#
#   docker build -t registry.example.com/scim-sidecar:0.1.0 .
#
# The binary is built exactly as scripts/static-build.sh builds it, and that script smoke-tests
# it (start on the quickstart, /healthz, /readyz, a SCIM create, a pass-through request,
# SIGTERM and a clean exit) inside a chroot laid out like this image, as UID 65532: the
# build can be checked on a machine without a container engine.
#
# Static glibc, not musl: x86_64-unknown-linux-gnu with -C target-feature=+crt-static.
# - It needs no extra target or C toolchain: the stock Rust image (and our CI machines,
#   which cannot download the musl target) build it.
# - glibc's allocator is what the benchmark figures (README, "Performance") were measured
#   with; musl's malloc is markedly slower under many threads.
# - The price: a static glibc cannot load NSS modules, so host names are resolved from
#   /etc/hosts and DNS (resolv.conf) only, which is what a pod has; the smoke test resolves
#   the app as "localhost" to prove it (glibc 2.34+ builds the files and dns modules in).

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# Dependencies first, so a source change does not refetch them.
COPY Cargo.toml Cargo.lock ./
# The ldap3 crate the build uses, with two fixes ([patch.crates-io]; vendor/ldap3/PATCHED.md).
COPY vendor vendor
COPY benches benches
COPY src src
COPY config config
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --release --locked --target x86_64-unknown-linux-gnu \
    && strip -o /scim-sidecar target/x86_64-unknown-linux-gnu/release/scim-sidecar \
    && /scim-sidecar --version

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /scim-sidecar /usr/local/bin/scim-sidecar
COPY config/scim-sidecar.toml /usr/share/doc/scim-sidecar/scim-sidecar.toml
USER 65532:65532
# 8443: the sidecar's port (SCIM + the app's traffic); 9090: /healthz /readyz /metrics.
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/scim-sidecar"]
CMD ["run", "--config", "/etc/scim-sidecar/scim-sidecar.toml", "--log-format", "json"]
