# Shared setup for Oxbeam's scripts: sourced, not run.
# Installs what a fresh machine lacks, idempotently and quickly when present.

OXBEAM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Build outputs live outside the clone so fresh clones reuse a warm cache.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/oxbeam-target}"
export OXBEAM_PYTHON="$OXBEAM_ROOT/.venv/bin/python"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# The project venv with the pinned apache-beam; rebuilt when requirements change.
ensure_venv() {
  local stamp="$OXBEAM_ROOT/.venv/.oxbeam-requirements"
  if [ -x "$OXBEAM_PYTHON" ] && cmp -s "$OXBEAM_ROOT/requirements-dev.txt" "$stamp"; then
    return 0
  fi
  say "creating Python venv .venv (apache-beam, pytest)"
  python3 -m venv "$OXBEAM_ROOT/.venv"
  "$OXBEAM_PYTHON" -m pip install --quiet --upgrade pip
  "$OXBEAM_PYTHON" -m pip install --quiet -r "$OXBEAM_ROOT/requirements-dev.txt"
  cp "$OXBEAM_ROOT/requirements-dev.txt" "$stamp"
}

ensure_rust_tools() {
  command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup)" >&2; exit 1; }
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
  rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown' || rustup target add wasm32-unknown-unknown
  rustup target list --installed 2>/dev/null | grep -q '^wasm32-wasip1' || rustup target add wasm32-wasip1
  if ! cargo nextest --version >/dev/null 2>&1; then
    say "installing cargo-nextest"
    cargo install --locked cargo-nextest
  fi
}

# redis-server for the Redis Streams IO tests (they start their own server
# on 127.0.0.1 with a temporary directory).
ensure_redis() {
  command -v redis-server >/dev/null && return 0
  say "installing redis-server (apt-get)"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
  command -v redis-server >/dev/null || { echo "could not install redis-server" >&2; exit 1; }
}

# The shared target dir collects stale artifacts (every clone path and every
# dependency change leaves its own copies); a full disk makes the linker die
# with SIGBUS. Below OXBEAM_MIN_FREE_GB free (default 20), drop incremental
# caches, then the whole dir if that was not enough: a cold build beats a
# failed one.
free_gb() { df -Pk "$CARGO_TARGET_DIR" | awk 'NR==2 { print int($4 / 1048576) }'; }

ensure_disk_room() {
  local min_gb="${OXBEAM_MIN_FREE_GB:-20}"
  mkdir -p "$CARGO_TARGET_DIR"
  [ "$(free_gb)" -ge "$min_gb" ] && return 0
  say "less than ${min_gb} GiB free: removing incremental caches in $CARGO_TARGET_DIR"
  rm -rf "$CARGO_TARGET_DIR"/*/incremental
  [ "$(free_gb)" -ge "$min_gb" ] && return 0
  say "still less than ${min_gb} GiB free: cleaning $CARGO_TARGET_DIR"
  rm -rf "${CARGO_TARGET_DIR:?}"/debug "${CARGO_TARGET_DIR:?}"/release "${CARGO_TARGET_DIR:?}"/wasm32-*
  [ "$(free_gb)" -ge "$min_gb" ] || say "warning: only $(free_gb) GiB free for the build"
}
