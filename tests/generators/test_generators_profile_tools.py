"""The GPU benchmarks' tools that run on the CPU too: benchmarks/generator_profile.py's readers of a profile and
benchmarks/generator_variants.py's settings and side-by-side runs (smoke-tested eager on the CPU)."""

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.generator_profile import category, convolution_backward_layouts


def test_kernel_categories_put_inductors_kernels_first():
    # Inductor names kernels after the ops they fuse: a fused GroupNorm next to a convolution is no cuDNN kernel.
    assert category("triton_poi_fused__to_copy_add_convolution_div_66") == "triton (fused elementwise/norm)"
    assert category("sm90_xmma_dgrad_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc") == "gemm/conv"
    assert category("cudnn_generated_fort_native_sdpa_sm90_flash_bprop_wgmma_f16") == "attention"
    assert category("void at::native::elementwise_kernel<128, 4, direct_copy_kernel_cuda>") == "other"


def test_convolution_backward_layouts_name_each_arguments_layout():
    conv = torch.nn.Conv2d(4, 6, 3, padding=1).to(memory_format=torch.channels_last)
    x = torch.randn(2, 4, 8, 8).to(memory_format=torch.channels_last).requires_grad_()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as profiler:
        conv(x).backward(torch.randn(2, 6, 8, 8))  # an NCHW gradient into a channels-last convolution
        conv(x).backward(torch.randn(2, 6, 8, 8).to(memory_format=torch.channels_last))
    assert convolution_backward_layouts(profiler) == {
        "grad [2, 6, 8, 8] NCHW | input [2, 4, 8, 8] CL | weight [6, 4, 3, 3] CL": 1,
        "grad [2, 6, 8, 8] CL | input [2, 4, 8, 8] CL | weight [6, 4, 3, 3] CL": 1}


# benchmarks/generator_variants.py: settings by name, variants compiled side by side and timed in turn.

def test_variant_settings_are_typed_like_the_setting_and_unknown_ones_are_named(monkeypatch):
    import pytest
    import torch._inductor.config as inductor_config

    from benchmarks.generator_variants import apply_setting, parse_variant

    assert parse_variant("base") == ("base", {})
    assert parse_variant("fast:max_autotune_pointwise=1,cudnn.benchmark_limit=0") == (
        "fast", {"max_autotune_pointwise": "1", "cudnn.benchmark_limit": "0"})
    monkeypatch.setattr(inductor_config, "max_autotune_pointwise", False)  # restored after the test
    monkeypatch.setattr(torch.backends.cudnn, "benchmark_limit", 10)
    apply_setting("max_autotune_pointwise", "true")
    apply_setting("cudnn.benchmark_limit", "0")
    assert inductor_config.max_autotune_pointwise is True and torch.backends.cudnn.benchmark_limit == 0
    with pytest.raises(SystemExit, match="unknown setting 'triton.no_such_thing'"):
        apply_setting("triton.no_such_thing", "1")
    with pytest.raises(SystemExit, match="expected a bool"):
        apply_setting("max_autotune_pointwise", "2")
    with pytest.raises(SystemExit, match="expected name"):
        parse_variant("x:max_autotune_pointwise")


def _variants(*args: str):
    import subprocess
    import sys
    from pathlib import Path
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "generator_variants.py"
    return subprocess.run([sys.executable, str(script), "--device", "cpu", "--preset", "tiny", "--batch", "2",
                           "--steps", "1", "--repeats", "1", "--warmup", "1", "--eager", *args],
                          capture_output=True, text=True, timeout=600)


def test_variants_are_timed_in_turn_and_compared_to_the_first():
    result = _variants("a", "b:cudnn.benchmark_limit=0")
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| a ") or line.startswith("| b ")]
    assert len(rows) == 2 and rows[0].endswith("| 1.000x |") and "`cudnn.benchmark_limit=0`" in rows[1]
    assert all(row.split("|")[6].strip().replace(".", "").isdigit() for row in rows)  # each row's last loss, finite


def test_a_variant_over_the_compile_limit_is_stopped_and_reported():
    result = _variants("slow", "--compile-limit", "0.5")  # stopped while it still imports torch
    assert result.returncode == 1
    assert "| slow | (defaults) | compilation over 0 s |" in result.stdout


def test_a_bad_setting_stops_before_any_variant_runs():
    result = _variants("a", "b:no_such_setting=1")
    assert result.returncode != 0 and "unknown setting 'no_such_setting'" in result.stderr
    assert "| a |" not in result.stdout


def test_a_variant_runs_the_nvsc_of_the_tree_its_code_setting_names(tmp_path):
    import shutil
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    other = tmp_path / "other"
    for package in ("benchmarks", "generators", "scenes"):
        shutil.copytree(root / package, other / package, ignore=shutil.ignore_patterns("__pycache__"))
    # The other tree's code announces itself, so its row shows which code the variant ran. It fails on import, before
    # it could report, and the variant that got ready does not wait for it for ever.
    with open(other / "generators" / "xunet.py", "a") as xunet:
        xunet.write("\nraise RuntimeError('the other tree')\n")
    result = _variants("here", f"there:code={other}")
    assert result.returncode == 1
    assert "| here | (defaults) |" in result.stdout and "exited with code 1 before compiling" in result.stdout
    assert "RuntimeError: the other tree" in result.stderr and f"`code={other}`" in result.stdout


def test_a_code_setting_without_this_script_is_named_before_anything_runs(tmp_path):
    result = _variants("a", f"b:code={tmp_path}")
    assert result.returncode != 0 and f"code={tmp_path}: no benchmarks/generator_variants.py" in result.stderr
    assert "| a |" not in result.stdout
