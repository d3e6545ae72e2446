"""aird_jax.host_memory: XLA:CPU's per-call temporaries come from reused memory, not fresh pages,
and a CLI run relaunches itself under the allocator ``AIRD_ALLOCATOR`` chooses.

The reference for reuse is the kernel's own count of minor page faults (``getrusage``): a block
mapped afresh faults once per 4 KiB page it touches, a reused one not at all. For the relaunch it
is the kernel's list of what the process mapped (``/proc/self/maps``). Each case runs in a new
process, because the allocator must be settled before the JAX backend starts.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aird_jax import host_memory

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="host_memory tunes glibc's malloc and uses LD_PRELOAD; this platform has neither",
)
REPO = Path(__file__).resolve().parents[1]

# An entry point as the package's are: relaunch in the __main__ block, then configure. With
# "jax": a jitted program whose temporary (the first product) and result are 128 MB each (blocks
# far above glibc's largest mmap threshold, 32 MiB, as the B4 train step's 2.6 GB one is), and a
# few SGD steps of a small convolutional net whose parameters must not depend on the allocator.
_PROBE = """
import hashlib, json, os, resource, sys
from aird_jax import host_memory
if __name__ == "__main__":
    print(f"start {os.getpid()}", file=sys.stderr, flush=True)
    host_memory.relaunch_under_allocator()
allocator = host_memory.configure()
out = {"allocator": allocator, "argv": sys.argv[1:], "pid": os.getpid(),
       "relaunched": os.environ.get(host_memory.RELAUNCHED_ENV),
       "preloaded": host_memory.preloaded()}
if sys.argv[1:2] == ["jax"]:
    import jax, jax.numpy as jnp, numpy as np
    rows = 1 << 22
    x = jnp.ones((rows, 8), jnp.float32)
    w = jnp.full((8, 8), 0.1, jnp.float32)
    f = jax.jit(lambda x, w: jnp.tanh(x @ w) @ w)
    for _ in range(3):  # warm-up: compile, first allocations
        f(x, w).block_until_ready()
    faults = []
    for _ in range(10):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        f(x, w).block_until_ready()
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    # The fewest: glibc's kept heap still grows now and then, by a block, when a call's block is
    # requested before the last one's is freed; without reuse every call faults.
    out.update(faults_per_call=min(faults), pages=2 * rows * 8 * 4 // 4096)
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    params = {"k": 0.1 * jax.random.normal(k1, (3, 3, 3, 16)), "d": jnp.zeros((16,))}
    imgs = jax.random.normal(k2, (32, 64, 64, 3))
    labels = (jax.random.uniform(k3, (32,)) > 0.5).astype(jnp.float32)
    def loss(p):
        h = jax.lax.conv_general_dilated(imgs, p["k"], (2, 2), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        z = jnp.mean(jax.nn.relu(h), axis=(1, 2)) @ p["d"] + jnp.mean(h)
        return jnp.mean(jnp.logaddexp(0.0, z) - labels * z)
    @jax.jit
    def step(p):
        g = jax.grad(loss)(p)
        return jax.tree.map(lambda a, b: a - 0.5 * b, p, g)
    for _ in range(20):
        params = step(params)
    blob = b"".join(np.asarray(v).tobytes() for v in jax.tree.leaves(params))
    out["params_sha256"] = hashlib.sha256(blob).hexdigest()
print(json.dumps(out))
"""


def _probe(tmp_path: Path, allocator: str, *args: str) -> tuple[dict, list[str]]:
    script = tmp_path / "entry.py"
    script.write_text(_PROBE)
    env = dict(os.environ, JAX_PLATFORMS="cpu", **{host_memory.ALLOCATOR_ENV: allocator})
    env.pop(host_memory.RELAUNCHED_ENV, None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    out = subprocess.run(
        [sys.executable, str(script), *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    starts = [ln for ln in out.stderr.splitlines() if ln.startswith("start ")]
    return json.loads(out.stdout.strip().splitlines()[-1]), starts


def _shared_library(tmp_path: Path, body: str = "int aird_probe(void) { return 1; }\n") -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler here to build a library to preload (install gcc)")
    src, lib = tmp_path / "probe.c", tmp_path / "libaird_probe.so"
    src.write_text(body)
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    return lib


def test_xla_temporaries_reuse_memory_instead_of_faulting_fresh_pages(tmp_path):
    off, _ = _probe(tmp_path, "system", "jax")
    assert off["allocator"] == "system"  # the switch turns it off
    if off["faults_per_call"] < off["pages"] / 2:
        pytest.skip(
            f"this kernel faults only {off['faults_per_call']:.0f} times per call for "
            f"{off['pages']} pages without the setting (huge pages?): nothing to compare"
        )
    on, _ = _probe(tmp_path, "glibc", "jax")
    assert on["allocator"] == "glibc"
    # Measured: 65,536 faults per call off (every page of both blocks), 0 on.
    assert on["faults_per_call"] < off["pages"] / 20, (on, off)
    # Only where blocks come from changes, not what is computed.
    assert on["params_sha256"] == off["params_sha256"]


def test_an_entry_point_relaunches_itself_in_place_with_the_library_preloaded(tmp_path):
    lib = _shared_library(tmp_path)
    got, starts = _probe(tmp_path, str(lib), "--flag", "two words")
    assert got["preloaded"] and Path(got["preloaded"]).resolve() == lib.resolve()
    assert got["allocator"] == lib.name
    assert got["argv"] == ["--flag", "two words"]  # same arguments
    # The code before the relaunch ran twice, in the same process (exec, not a child).
    assert starts == [f"start {got['pid']}"] * 2
    assert got["relaunched"] == "1"


def test_a_preload_that_fails_relaunches_once_and_falls_back_to_glibc(tmp_path):
    # Not a shared object: the dynamic loader says so and starts the program without it.
    bogus = tmp_path / "libnot_elf.so"
    bogus.write_text("not an ELF file\n")
    got, starts = _probe(tmp_path, str(bogus))
    assert len(starts) == 2  # relaunched once, not in a loop
    assert got["preloaded"] is None and got["allocator"] == "glibc"


@pytest.mark.parametrize(
    "value, fix",
    [
        ("tcmallocc", "use one of auto, tcmalloc, glibc, system"),
        ("/nonexistent/libtcmalloc.so.4", "no such file"),
    ],
)
def test_a_bad_allocator_setting_is_one_error_line(tmp_path, value, fix):
    script = tmp_path / "entry.py"
    script.write_text(_PROBE)
    env = dict(os.environ, **{host_memory.ALLOCATOR_ENV: value})
    env.pop(host_memory.RELAUNCHED_ENV, None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    r = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True)
    assert r.returncode == 2
    errors = [ln for ln in r.stderr.splitlines() if not ln.startswith("start ")]
    assert len(errors) == 1 and errors[0].startswith("error: ") and fix in errors[0], r.stderr


def test_asking_for_tcmalloc_where_none_is_installed_says_how_to_get_it(monkeypatch, capsys):
    monkeypatch.setenv(host_memory.ALLOCATOR_ENV, "tcmalloc")
    monkeypatch.delenv(host_memory.RELAUNCHED_ENV, raising=False)
    monkeypatch.setattr(host_memory, "find_tcmalloc", lambda: None)
    monkeypatch.setattr(host_memory, "preloaded", lambda: None)
    with pytest.raises(SystemExit) as e:
        host_memory.relaunch_under_allocator()
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "apt install libtcmalloc-minimal4" in err[0]


@pytest.mark.parametrize(
    "value, platforms, plugin, tcmalloc, expected",
    [
        ("", "", None, "libtcmalloc_minimal.so.4", "tcmalloc"),  # a CPU-only install
        ("", "", None, None, "glibc"),  # no tcmalloc: glibc's settings
        ("auto", "", "jax-cuda13-plugin", "libtcmalloc_minimal.so.4", "system"),  # GPU memory
        ("", "cpu", "jax-cuda13-plugin", None, "glibc"),  # told to compute on the CPU
        ("", "cuda,cpu", None, "libtcmalloc_minimal.so.4", "system"),
        ("system", "cpu", None, "libtcmalloc_minimal.so.4", "system"),  # the user's word wins
        ("0", "cpu", None, None, "system"),
        ("GLIBC", "", None, "libtcmalloc_minimal.so.4", "glibc"),
        ("tcmalloc", "", "libtpu", None, "tcmalloc"),  # (relaunch then says it is missing)
    ],
)
def test_choice(monkeypatch, value, platforms, plugin, tcmalloc, expected):
    monkeypatch.setenv(host_memory.ALLOCATOR_ENV, value)
    monkeypatch.setenv("JAX_PLATFORMS", platforms)
    monkeypatch.setattr(host_memory, "_accelerator_plugin", lambda: plugin)
    monkeypatch.setattr(host_memory, "find_tcmalloc", lambda: tcmalloc)
    assert host_memory.choice() == expected


def test_choice_takes_the_path_of_a_library(monkeypatch, tmp_path):
    lib = tmp_path / "libjemalloc.so.2"
    lib.write_bytes(b"")
    monkeypatch.setenv(host_memory.ALLOCATOR_ENV, str(lib))
    assert host_memory.choice() == str(lib)


@pytest.mark.skipif(
    host_memory.find_tcmalloc() is None,
    reason="tcmalloc is not installed here (Debian/Ubuntu: apt install libtcmalloc-minimal4)",
)
def test_under_tcmalloc_temporaries_are_reused_and_results_unchanged(tmp_path):
    on, starts = _probe(tmp_path, "auto", "jax")
    assert len(starts) == 2 and "tcmalloc" in on["allocator"], on
    off, _ = _probe(tmp_path, "system", "jax")
    # Measured: 2 faults per call under tcmalloc, 65,536 without.
    assert on["faults_per_call"] < on["pages"] / 20, (on, off)
    assert on["params_sha256"] == off["params_sha256"]
