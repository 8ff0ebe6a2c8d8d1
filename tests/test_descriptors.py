import pytest
import torch

from pgat.descriptors import crop_regions, descriptor_points
from pgat.pose import BODY_LIMBS
from pgat.stages import RESOLUTIONS, STAGES, get_stage


def test_stage_table():
    assert [STAGES[r].channels for r in RESOLUTIONS] == [512, 256, 128, 64, 32]
    assert [STAGES[r].num_descriptors for r in RESOLUTIONS] == [18, 18, 31, 31, 44]
    assert [STAGES[r].crop_size for r in RESOLUTIONS] == [8, 16, 32, 64, 128]
    assert get_stage(256, bottleneck_channels=64).channels == 8  # scaled: 64 * 32 / 256
    assert get_stage(1024, bottleneck_channels=16).channels == 4  # floored at min_channels
    with pytest.raises(ValueError, match=r"`resolution` must be one of .* got 96"):
        get_stage(96)


def _pose(batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 18, 2, generator=g) * 200 + 20


@pytest.mark.parametrize("count", [18, 31, 44])
def test_descriptor_counts_and_positions(count):
    kps = _pose()
    points, valid = descriptor_points(kps, count)
    assert points.shape == (2, count, 2) and valid.shape == (2, count) and valid.all()
    torch.testing.assert_close(points[:, :18], kps)
    if count >= 31:
        for i, (a, b) in enumerate(BODY_LIMBS):
            torch.testing.assert_close(points[:, 18 + i], (kps[:, a] + kps[:, b]) / 2)
    if count == 44:
        for i, (a, b) in enumerate(BODY_LIMBS):
            # a quarter of the way from the first joint named
            torch.testing.assert_close(points[:, 31 + i], 0.75 * kps[:, a] + 0.25 * kps[:, b])


def test_descriptor_validity_follows_missing_keypoints():
    kps = _pose(1)
    kps[0, 3] = -1  # r_elbow missing
    points, valid = descriptor_points(kps, 44)
    limbs_with_elbow = [i for i, limb in enumerate(BODY_LIMBS) if 3 in limb]
    assert limbs_with_elbow == [1, 2]
    expected = torch.ones(44, dtype=torch.bool)
    expected[3] = False
    for i in limbs_with_elbow:
        expected[18 + i] = expected[31 + i] = False
    assert torch.equal(valid[0], expected)
    assert (points[0, ~expected] == -1).all()
    with pytest.raises(ValueError, match="`count`"):
        descriptor_points(kps, 30)
    with pytest.raises(ValueError, match=r"\(B, 18, 2\)"):
        descriptor_points(kps[:, :17], 18)


@pytest.mark.parametrize("size", [8, 16, 7])
def test_crops_equal_slicing_for_whole_pixel_boxes(size):
    images = torch.randn(2, 3, 64, 64)
    # whole-pixel boxes: top-left pixel (r, c) -> centre (c + (size - 1) / 2, r + (size - 1) / 2)
    corners = [[(5, 9), (40, 30), (0, 0)], [(56 - size + 8, 56 - size + 8), (17, 3), (22, 41)]]
    half = (size - 1) / 2
    points = torch.tensor([[[c + half, r + half] for r, c in row] for row in corners])
    crops = crop_regions(images, points, size)
    assert crops.shape == (2, 3, 3, size, size)
    for b, row in enumerate(corners):
        for n, (r, c) in enumerate(row):
            torch.testing.assert_close(crops[b, n], images[b, :, r : r + size, c : c + size], rtol=0, atol=1e-6)


def test_crops_are_zero_outside_and_differentiable():
    images = torch.rand(1, 3, 32, 32, requires_grad=True)
    points = torch.tensor([[[-0.5, 15.5], [31.5, 31.5]]])  # crops half outside on the left / bottom-right
    crops = crop_regions(images, points, 8)
    assert (crops[0, 0, :, :, :4] == 0).all() and (crops[0, 0, :, :, 4:] > 0).all()
    assert (crops[0, 1, :, 4:, :] == 0).all() and (crops[0, 1, :, :4, 4:] == 0).all()
    torch.testing.assert_close(crops[0, 1, :, :4, :4], images[0, :, 28:32, 28:32])
    crops.sum().backward()
    grad = images.grad[0, 0]
    assert grad[12:20, 0:4].eq(1).all() and grad[28:, 28:].eq(1).all() and grad[0:10, 10:20].eq(0).all()
