"""The view-backend protocol, one class per BatchViews backend, draws apart from their application, the seeding
contract (one generator for every parameter of the kornia backend), and a batch path free of torchvision."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from ignite_pseudolabel.batch import RawBatch, SemiSupervisedBatch, Views, prepare_semi_supervised_batch
from ignite_pseudolabel.batch_views import BatchViews, KorniaBatchViews, TorchvisionBatchViews, ViewBackend
from ignite_pseudolabel.view_ops import RandomCrop, RandomSource
from ignite_pseudolabel.view_options import ViewOptions

ROOT = Path(__file__).resolve().parents[1]


def images(n=8, channels=3, side=32, seed=0):
    return torch.randint(0, 256, (n, channels, side, side), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))


def natural(**kwargs):
    return BatchViews("natural", size=32, mean=(0.5,) * 3, std=(0.5,) * 3, strength="fixmatch", **kwargs)


def test_batch_views_builds_one_class_per_backend_and_both_follow_the_protocol():
    pytest.importorskip("kornia")
    for backend, cls in (("kornia", KorniaBatchViews), ("torchvision", TorchvisionBatchViews)):
        views = natural(backend=backend)
        assert type(views) is cls and isinstance(views, BatchViews) and isinstance(views, ViewBackend)
        assert views.backend == backend
        assert repr(views) == (f"BatchViews(kind='natural', policy='randaugment', strength='fixmatch', "
                               f"backend='{backend}')")
    assert type(KorniaBatchViews("digits")) is KorniaBatchViews  # the classes can be built directly too
    with pytest.raises(ValueError, match="Argument backend should be one of 'auto', 'kornia', but given 'torchvision'"):
        KorniaBatchViews("digits", backend="torchvision")


def test_any_object_with_call_and_weak_is_a_view_backend():
    class Noise:
        def __call__(self, raw):
            x = raw.inputs.float() / 255
            return Views(x, x + 0.1 * torch.randn_like(x), raw.sample_index)

        def weak(self, raw):
            return raw.float() / 255

    assert isinstance(Noise(), ViewBackend) and not isinstance(object(), ViewBackend)
    labeled = (images(2, channels=1, side=4), torch.tensor([0, 1]))
    x, target = prepare_semi_supervised_batch(
        SemiSupervisedBatch(labeled, unlabeled=RawBatch(images(3, channels=1, side=4), torch.arange(3))),
        views=Noise())
    assert x.shape == (2 + 3 + 3, 1, 4, 4) and target.num_views == 2


def test_one_draw_applies_again_and_weak_draws_only_the_geometry():
    pytest.importorskip("kornia")
    views = natural(backend="kornia", generator=torch.Generator().manual_seed(0))
    x = images()
    params = views.draw(x)
    assert len(params.operations) == 2 and params.cutout is not None
    assert torch.equal(views.apply(x, params), views.apply(x, params))
    weak = views.draw(x, strong=False)
    assert weak.operations == () and weak.cutout is None
    assert torch.equal(views.apply(x, weak), views.apply(x, weak)) and not torch.equal(views.apply(x, weak),
                                                                                        views.apply(x, params))
    # a draw replays on other images aligned with these: the same crop of every image
    shifted = images(seed=1)
    crop_only = params._replace(operations=(), cutout=None)
    assert torch.equal(views.apply(torch.cat([x, shifted]), crop_only._replace(
        crop=type(params.crop)(*(torch.cat([p, p]) for p in params.crop)))), torch.cat(
        [views.apply(x, crop_only), views.apply(shifted, crop_only)]))


def test_a_generator_gives_every_parameter_and_leaves_the_global_generators_alone():
    """Issue 22: kornia's geometric draws came from torch's CPU generator and the rest from the device's; now one
    generator gives them all, so its seed alone fixes the views whatever the other generators did."""
    pytest.importorskip("kornia")
    generator = torch.Generator().manual_seed(0)
    views = natural(backend="kornia", generator=generator)
    x = images()
    state = torch.get_rng_state()
    first = views(x)
    assert torch.equal(torch.get_rng_state(), state)  # nothing drawn from torch's global generator
    torch.manual_seed(123)
    torch.rand(1000)
    generator.manual_seed(0)
    again = views(x)
    assert torch.equal(first.weak, again.weak) and torch.equal(first.strong, again.strong)
    assert not torch.equal(views(x).strong, first.strong)  # the generator moved on
    with pytest.raises(ValueError, match="Argument generator is for backend='kornia' only"):
        natural(backend="torchvision", generator=generator)
    with pytest.raises(TypeError, match="Argument generator should be a torch.Generator or None, but given int"):
        natural(backend="kornia", generator=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_the_cuda_seed_alone_fixes_the_views():
    pytest.importorskip("kornia")
    views = natural(backend="kornia")
    x = images().cuda()
    torch.cuda.manual_seed(0)
    first = views(x)
    torch.rand(1000)  # the CPU generator moves; the views must not depend on it
    torch.cuda.manual_seed(0)
    again = views(x)
    assert torch.equal(first.weak, again.weak) and torch.equal(first.strong, again.strong)
    on_cpu = natural(backend="kornia", generator=torch.Generator().manual_seed(1))
    cuda, cpu = on_cpu.draw(x), (on_cpu.generator.manual_seed(1), on_cpu.draw(x.cpu()))[1]
    assert torch.equal(cuda.crop.top.cpu(), cpu.crop.top)  # a CPU generator: the same draws for every device


def test_kornia_backend_makes_everything_on_the_batch_device_without_reading_values_on_the_host():
    pytest.importorskip("kornia")
    # a meta tensor has no data: a host read (.item(), bool(), .tolist()) raises, so does a CPU-made constant
    for views in (natural(backend="kornia"), BatchViews("digits", policy="trivialaugment", backend="kornia")):
        side = 32 if views.kind == "natural" else 28
        out = views(RawBatch(images(4, channels=3 if side == 32 else 1, side=side).to("meta"),
                             torch.arange(4, device="meta")))
        assert out.weak.device.type == out.strong.device.type == "meta"


def test_reflect_crops_and_flips_are_torchvisions():
    from torchvision.transforms.v2 import functional as F

    x = images(6, side=10)
    crop = RandomCrop(10, padding=3, padding_mode="reflect", flip=True)
    params = crop.draw(6, 10, 10, RandomSource("cpu", torch.Generator().manual_seed(0)))
    got = crop.apply(x, params)
    for i in range(6):
        image = F.horizontal_flip(x[i]) if params.flip[i] else x[i]
        padded = F.pad(image, [3], padding_mode="reflect")
        top, left = int(params.top[i]) + 3, int(params.left[i]) + 3
        assert torch.equal(got[i], padded[:, top:top + 10, left:left + 10])


def test_view_options_validate_without_building_transforms():
    with pytest.raises(ValueError, match=r"Argument std should be a finite number in \(0, inf\), but given 0.0"):
        ViewOptions.check("digits", std=(0.0,))
    with pytest.raises(ValueError, match=r"magnitude should be an integer in \[0, 30\], but given 31"):
        BatchViews("digits", magnitude=31, strength="fixmatch-torchvision", backend="kornia")
    with pytest.raises(ValueError, match="magnitude is for strength='torchvision' or 'fixmatch-torchvision'"):
        BatchViews("digits", magnitude=10, backend="kornia")
    assert ViewOptions.check("natural", size=32, strength="torchvision").magnitude == 10
    assert ViewOptions.check("natural", size=32, strength="fixmatch-torchvision").magnitude == 30
    default = ViewOptions.check("natural", size=32)
    assert (default.strength, default.magnitude, default.num_ops) == ("fixmatch", None, 2)
    assert BatchViews("digits", backend="torchvision").strength == "fixmatch"


def test_the_batch_path_imports_no_torchvision():
    pytest.importorskip("kornia")
    script = textwrap.dedent("""
        import sys
        import torch
        import ignite_pseudolabel
        from ignite_pseudolabel import BatchViews, DeviceBatches, PseudoLabelLoss, SemiSupervisedLoader
        from ignite_pseudolabel.batch import SemiSupervisedBatch
        images = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8)
        loss = PseudoLabelLoss(0.5, alpha=1.0, views=BatchViews("digits", backend="kornia"))
        raw = next(iter(DeviceBatches(images, batch_size=4, return_index=True)))
        x, target = loss.prepare_batch(SemiSupervisedBatch((images[:2], torch.tensor([0, 1])), unlabeled=raw))
        assert x.shape == (10, 1, 28, 28), x.shape
        loaded = sorted(m for m in sys.modules if m.split(".")[0] == "torchvision")
        assert not loaded, loaded
        assert "WeakStrongViews" in dir(ignite_pseudolabel)
        ignite_pseudolabel.WeakStrongViews  # loaded when asked for
        assert "torchvision" in sys.modules
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
