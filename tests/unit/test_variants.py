"""The llcuda wheel's variants: the properties the runtime's rule gives each row, the files variantlib writes from
a real llcuda wheel, the PEP 503 index the release publishes, and uv choosing from it. (uv choosing from the
wheelhouse, with the real backends, is tests/wheels/test_uv_variants.py.)"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from llcuda_factory import REPO_ROOT, variants, wheelfile
from llcuda_factory.errors import FactoryError
from llcuda_factory.targets import all_targets


def _sm(*values: str, cuda: int = 12) -> tuple[str, ...]:
    return (
        f"llcuda :: cuda :: {cuda}",
        f"nvidia :: cuda_version_lower_bound :: {cuda}.0",
        *(f"nvidia :: sm_arch :: {v}" for v in values),
    )


def test_the_rule_gives_each_row_its_properties() -> None:
    plan = {v.target: v for v in variants.plan("1.2.3")}
    assert plan["cpu"].label == "null" and plan["cpu"].properties == ()
    # machine code for 5.x; PTX for Pascal and Volta, which cc75's code cannot serve
    assert plan["cc50"].properties == _sm("50_real", "60_virtual", "70_virtual")
    # machine code for 7.5 (it outranks cc50's 70_virtual on a 7.5 GPU); PTX for every newer major
    turing = ("75_real", "80_virtual", "90_virtual", "100_virtual", "110_virtual", "120_virtual")
    assert plan["cc75"].properties == _sm(*turing)
    # the same GPUs with CUDA 13: never under a driver below 13.0 (580), and after cc75 where both run (llcuda's
    # namespace, CUDA 12 first)
    assert plan["cc75-cu13"].properties == _sm(*turing, cuda=13)
    assert plan["cc75-cu13"].label == "cc75_cu13"
    assert {t: v.requires for t, v in plan.items()} == {t: f"llcuda-{t}==1.2.3" for t in all_targets()}
    assert plan["cc50"].file_name("1.2.3") == "llcuda-1.2.3-py3-none-any-cc50.whl"
    assert plan["cc75-cu13"].file_name("1.2.3") == "llcuda-1.2.3-py3-none-any-cc75_cu13.whl"


def test_the_cuda_order_is_the_tables_and_covers_every_major(tmp_path: Path) -> None:
    """[variant.providers.llcuda] orders the CUDA majors; a major a row builds with but the order lacks is refused."""
    text = (REPO_ROOT / "targets.toml").read_text()
    assert 'static-properties = { cuda = ["12", "13"] }' in text
    bad = tmp_path / "targets.toml"
    bad.write_text(text.replace('static-properties = { cuda = ["12", "13"] }', 'static-properties = { cuda = ["12"] }'))
    with pytest.raises(FactoryError, match=r"must list every CUDA major of the rows.*\[12, 13\]"):
        variants.plan("1.2.3", bad)


def test_a_new_row_takes_the_gpus_the_rule_gives_it(tmp_path: Path) -> None:
    table = tmp_path / "targets.toml"
    row = '\n[targets.cc61]\ndescription = "Pascal"\ncuda_architectures = ["61"]\ncuda = "12.4"\nmax_wheel_mb = 60\n'
    table.write_text((REPO_ROOT / "targets.toml").read_text() + row)
    plan = {v.target: v.properties for v in variants.plan("1.2.3", table)}
    assert plan["cc50"] == _sm("50_real", "60_virtual")  # a 6.0 GPU cannot run sm_61 code
    assert plan["cc61"] == _sm("61_real", "70_virtual")
    assert plan["cc75"][2] == "nvidia :: sm_arch :: 75_real"


def test_variant_file_names() -> None:
    assert variants.variant_label(Path("llcuda-0.1.0-py3-none-any-cc50.whl")) == "cc50"
    assert variants.variant_label(Path("llcuda-0.1.0-py3-none-any.whl")) is None
    assert variants.variant_label(Path("llcuda_cc50-0.1.0-py3-none-manylinux_2_28_x86_64.whl")) is None
    assert variants.is_variant_file(Path("llcuda-0.1.0-variants.json"))
    assert not variants.is_variant_file(Path("llcuda-0.1.0.tar.gz"))


@pytest.fixture(scope="module")
def plain_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("plain")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out)]
    subprocess.run([*cmd, str(REPO_ROOT)], check=True, capture_output=True)
    (wheel,) = out.glob("llcuda-*.whl")
    return wheel


@pytest.fixture(scope="module")
def house(plain_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    house = tmp_path_factory.mktemp("house")
    (house / plain_wheel.name).write_bytes(plain_wheel.read_bytes())
    variants.write_variants(house / plain_wheel.name, house)
    return house


def test_variantlib_writes_one_variant_per_row_and_its_json(plain_wheel: Path, house: Path) -> None:
    version = wheelfile.metadata(plain_wheel)["Version"]
    plan = variants.plan(version)
    names = sorted(p.name for p in house.iterdir())
    assert names == sorted([plain_wheel.name, f"llcuda-{version}-variants.json", *(v.file_name(version) for v in plan)])
    listed = json.loads((house / f"llcuda-{version}-variants.json").read_text())
    assert listed["providers"]["nvidia"]["plugin-api"] == "nvidia_variant_provider.plugin:NvidiaVariantPlugin"
    plain_requires = wheelfile.requires(plain_wheel)
    for v in plan:
        wheel = house / v.file_name(version)
        # the plain wheel's requirements (its extras too) and, unconditionally, its own backend
        assert wheelfile.requires(wheel) == [*plain_requires, v.requires]
        got = listed["variants"][v.label]
        assert {ns: {f: sorted(x) for f, x in feats.items()} for ns, feats in got.items()} == v.listed()
    # again: the same files, replaced, none left over
    variants.write_variants(house / plain_wheel.name, house)
    assert sorted(p.name for p in house.iterdir()) == names


def test_only_a_plain_llcuda_wheel_gets_variants(house: Path, tmp_path: Path) -> None:
    variant = next(house.glob("llcuda-*-any-cc50.whl"))
    with pytest.raises(FactoryError, match="is not a plain llcuda wheel"):
        variants.write_variants(variant, tmp_path)
    with pytest.raises(FactoryError, match="is not a plain llcuda wheel"):
        variants.write_variants(tmp_path / "nonsense.whl", tmp_path)
    with pytest.raises(FactoryError, match="does not exist"):
        variants.write_variants(tmp_path / "llcuda-0.1.0-py3-none-any.whl", tmp_path)


def test_a_bundle_carries_the_variants_only_with_every_backend(house: Path, plain_wheel: Path) -> None:
    version = wheelfile.metadata(plain_wheel)["Version"]
    targets = all_targets()
    assert variants.bundle_variants(house, version, [targets["cc50"], targets["cpu"]]) == []
    files = variants.bundle_variants(house, version, list(targets.values()))
    assert len(files) == len(targets) + 1 and all(f.is_file() for f in files)
    with pytest.raises(FactoryError, match=re.escape("lacks llcuda-9.9.9-py3-none-any-null.whl")):
        variants.bundle_variants(house, "9.9.9", list(targets.values()))


def _uv_pick(simple: Path, where: Path, sm: str | None, cuda: str | None) -> str:
    """The variant label uv installs from the index ``simple`` for a simulated GPU and driver (CUDA version)."""
    from uv import find_uv_bin

    uv = str(find_uv_bin())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NV_VARIANT_PROVIDER_", "UV_"))}
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(where)], check=True)
    if sm is not None and cuda is not None:
        env |= {"NV_VARIANT_PROVIDER_FORCE_SM_ARCH": sm, "NV_VARIANT_PROVIDER_FORCE_CUDA_DRIVER_VERSION": cuda}
    cmd = [uv, "pip", "install", "-q", "--python", str(where / "bin" / "python"), "--no-cache", "--no-deps"]
    cmd += ["--preview-features", "wheel-variants", "--index-url", simple.as_uri() + "/", "llcuda"]
    subprocess.run(cmd, check=True, env=env)
    (info,) = wheelfile.site_packages(where / "bin" / "python").glob("llcuda-*.dist-info")
    (label,) = json.loads((info / "variant.json").read_text())["variants"]
    return str(label)


# simulated GPU, the CUDA version of its driver -> the variant uv installs from the published index
UV_CASES = [
    ("7.5", "12.4", "cc75"),
    ("7.5", "12.8", "cc75"),  # driver 570: below the 580 that CUDA 13 needs, never the cu13 variant
    ("7.5", "13.0", "cc75"),  # driver 580 runs both: CUDA 12 first, the order of [variant.providers.llcuda]
    ("8.6", "13.0", "cc75"),
    ("5.0", "13.0", "cc50"),
    (None, None, "null"),
]


@pytest.mark.parametrize(("sm", "cuda", "label"), UV_CASES, ids=[f"{s}-{c}" for s, c, _ in UV_CASES])
def test_uv_picks_a_variant_from_the_published_index(
    house: Path, tmp_path: Path, sm: str | None, cuda: str | None, label: str
) -> None:
    simple = variants.write_index(house, tmp_path / "site")
    page = (simple / "llcuda" / "index.html").read_text()
    assert "-variants.json#sha256=" in page and "-any-cc75.whl#sha256=" in page and "-any-cc75_cu13.whl" in page
    assert _uv_pick(simple, tmp_path / "venv", sm, cuda) == label


def test_the_cuda_order_decides_only_where_the_driver_runs_both(house: Path, tmp_path: Path) -> None:
    """With the order turned around (CUDA 13 first), a 580 driver gets the cu13 variant, and a 570 one still never
    does: the order chooses between rows the driver runs, cuda_version_lower_bound keeps the others out."""
    flipped = tmp_path / "house"
    flipped.mkdir()
    for f in house.iterdir():
        (flipped / f.name).write_bytes(f.read_bytes())
    (index,) = flipped.glob("*-variants.json")
    data = json.loads(index.read_text())
    assert data["default-priorities"]["namespace"] == ["llcuda", "nvidia"]
    assert data["providers"]["llcuda"]["static-properties"]["cuda"] == ["12", "13"]
    data["providers"]["llcuda"]["static-properties"]["cuda"] = ["13", "12"]
    index.write_text(json.dumps(data))
    simple = variants.write_index(flipped, tmp_path / "site")
    assert _uv_pick(simple, tmp_path / "v13", "7.5", "13.0") == "cc75_cu13"
    assert _uv_pick(simple, tmp_path / "v128", "7.5", "12.8") == "cc75"


def test_an_index_needs_the_variants_json(tmp_path: Path) -> None:
    with pytest.raises(FactoryError, match=re.escape("no llcuda-*-variants.json")):
        variants.write_index(tmp_path, tmp_path / "site")
