#!/usr/bin/env bash
# Wheels for a GPU machine that reaches no package registry (the lent device: Python 3.12, x86-64, with its own
# torch, triton, numpy, accelerate, safetensors and tiktoken). Writes them to .whl/ (git-ignored). Install there:
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
#   export PYTHONPATH=/tmp/site
# Versions are those of this checkout's .venv, so the GPU runs the code the CPU tests ran; voxplug itself is built
# from the working tree (its entry points register the built-in plugins).
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
PACKAGES="transformers tokenizers huggingface-hub httpx2 httpcore2 h11 anyio peft
  mistral-common pydantic pydantic-core pydantic-extra-types pycountry annotated-types typing-inspection jsonschema
  jsonschema-specifications referencing rpds-py attrs regex soundfile cffi pycparser soxr pluggy typer click
  shellingham annotated-doc rich markdown-it-py mdurl pygments jiwer rapidfuzz pyyaml psutil matplotlib contourpy
  cycler fonttools kiwisolver pyparsing python-dateutil einops hjson msgpack ninja py-cpuinfo pytest
  iniconfig pytest-timeout liger-kernel truststore idna"
rm -rf .whl && mkdir -p .whl
platforms=""
for n in 17 27 28 31 34 35; do platforms+=" --platform manylinux_2_${n}_x86_64"; done
freeze=$(pip list --format=freeze 2>/dev/null | tr '[:upper:]_' '[:lower:]-')
pins=()
for name in $PACKAGES; do
  pin=$(grep -m1 "^$name==" <<<"$freeze" || true)
  pins+=("${pin:-$name}")
done
pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $platforms \
  --platform manylinux2014_x86_64 --platform any -d .whl "${pins[@]}"
# sdist-only or local: build pure-Python wheels here
pip wheel -q --no-deps --no-build-isolation -w .whl "$(grep -m1 '^deepspeed==' <<<"$freeze")" .
# The call carries 64 MiB at most: drop what no run reads (pycountry's translations, matplotlib's tests, sample
# data and fonts other than its default DejaVu Sans). pip does not check RECORD against the files.
python3 - <<'PY'
import glob, re, zipfile, os
drop = {"pycountry": r"pycountry/locales/", "matplotlib": r"matplotlib/(tests/|mpl-data/sample_data/|mpl-data/fonts/(?!ttf/(DejaVuSans|LastResort)))"}
for package, pattern in drop.items():
    (path,) = glob.glob(f".whl/{package}-*.whl")
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(path + ".new", "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            if not re.match(pattern, item.filename):
                target.writestr(item, source.read(item))
    os.replace(path + ".new", path)
PY
du -sh .whl
