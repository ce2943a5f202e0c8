"""benchmarks/generator_profile.py's readers of a profile (the script itself needs a GPU)."""

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
