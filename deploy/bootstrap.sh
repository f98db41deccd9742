#!/usr/bin/env bash
# Bootstrap a development/CI machine for yikatong: Debian packages, a .venv with the
# pinned Python packages, and the project installed in editable mode.
# Idempotent: each step checks first and does nothing when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
# Debian packages the project needs at run and test time:
#  pcscd, vsmartcard-vpcd, pcsc-tools, opensc: the real PC/SC stack for virtual cards
#  libpcsclite-dev, pkg-config, build-essential: to compile pyscard
#  softhsm2: the PKCS#11 token used by the HSM tests
#  prometheus: promtool (`check metrics` on the engine's /metrics, `test rules`) and the
#    real Prometheus the observability tests scrape the engine with
# --no-install-recommends keeps GTK (pcsc-tools) and the broken vsmartcard-vpicc out.
APT_PACKAGES=(pcscd vsmartcard-vpcd pcsc-tools opensc libpcsclite-dev pkg-config build-essential softhsm2 prometheus)

log() { printf 'bootstrap: %s\n' "$*" >&2; }

pick_python() {
    for candidate in "${PYTHON:-}" python3.11 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
           "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

PY=$(pick_python) || { log "Python >= 3.11 not found (set PYTHON=/path/to/python3.11)"; exit 1; }

# Debian's own interpreter needs its venv and header packages; pyenv builds carry both.
if ! "$PY" -c 'import ensurepip, sysconfig, os, sys; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)' 2>/dev/null; then
    ver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    APT_PACKAGES+=("python${ver}-venv" "python${ver}-dev")
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
    if [ "$(id -u)" -eq 0 ]; then
        log "installing Debian packages: ${missing[*]}"
        bash -c "$cmd" >&2
    else
        log "missing Debian packages: ${missing[*]}"
        log "run as root: $cmd"
        exit 1
    fi
fi

if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV with $PY"
    "$PY" -m venv "$VENV"
fi

stamp="$VENV/.yikatong-installed"
want=$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    log "installing pinned Python packages into $VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.lock
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
    echo "$want" > "$stamp"
fi
log "ready: $VENV ($("$VENV/bin/python" --version))"
