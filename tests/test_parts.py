"""pgat.parts: part transforms between two poses, part masks, the composite warp and the part-warp baseline."""

import math

import pytest
import torch
import torch.nn.functional as F

from pgat.parts import (
    ARM_PARTS,
    FULL_BODY_PARTS,
    LEG_PARTS,
    LOWER_BODY_PARTS,
    NUM_PARTS,
    PART_INDEX,
    PART_NAMES,
    UPPER_BODY_PARTS,
    WAIST,
    body_unit,
    complete_legs,
    composite_grid,
    part_masks,
    part_transforms,
    warp,
    warp_image,
)

# a standing person in a 128 square: every body joint and the face
STANDING = torch.tensor(
    [
        [64, 22], [64, 38], [52, 39], [48, 58], [46, 76], [76, 39], [80, 58], [82, 76],
        [56, 74], [55, 98], [55, 120], [72, 74], [73, 98], [73, 120], [61, 19], [67, 19], [58, 21], [70, 21],
    ],
    dtype=torch.float32,
)[None]


def _apply(theta: torch.Tensor, kps: torch.Tensor) -> torch.Tensor:
    """``theta`` (2, 3) applied to (B, 18, 2) points, missing ones kept missing."""
    out = kps @ theta[:, :2].T + theta[:, 2]
    return torch.where((kps < 0).any(-1, keepdim=True), kps, out)


def _similarity(angle: float, scale: float, shift, centre=(64.0, 64.0)) -> torch.Tensor:
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    m = torch.tensor([[c, -s], [s, c]])
    t = torch.tensor(centre) + torch.tensor(shift, dtype=torch.float32) - m @ torch.tensor(centre)
    return torch.cat([m, t[:, None]], 1)


def test_parts_are_the_rigid_parts_of_a_coco18_body():
    assert NUM_PARTS == 10
    assert set(PART_NAMES) == {
        "head", "torso", "r_upper_arm", "r_forearm", "l_upper_arm", "l_forearm", "r_thigh", "r_shin", "l_thigh", "l_shin",
    }


def test_identity_pose_gives_the_identity_warp():
    theta, valid = part_transforms(STANDING, STANDING)
    assert valid.all()
    torch.testing.assert_close(theta, torch.eye(2, 3).expand(1, NUM_PARTS, 2, 3), atol=1e-4, rtol=0)
    features = torch.randn(1, 5, 32, 32)
    warped, masks = warp(features, STANDING, STANDING, image_size=128)
    coverage = masks.amax(1, keepdim=True)
    torch.testing.assert_close(warped, features * coverage, atol=1e-4, rtol=0)
    image = torch.rand(1, 3, 128, 128) * 2 - 1
    out = warp_image(image, STANDING, STANDING)
    inside = (part_masks(STANDING, 128).amax(1, keepdim=True) > 0.999).expand_as(image)
    torch.testing.assert_close(out[inside], image[inside], atol=2e-3, rtol=0)  # blended by a coverage of 0.999+


@pytest.mark.parametrize(
    "angle, scale, shift",
    [(0.0, 1.0, (9.0, -5.0)), (0.4, 1.0, (0.0, 0.0)), (0.0, 1.3, (0.0, 0.0)), (-0.7, 0.8, (6.0, 3.0))],
    ids=["translation", "rotation", "scaling", "all three"],
)
def test_a_transformed_pose_gives_exactly_that_transform_to_every_part(angle, scale, shift):
    t = _similarity(angle, scale, shift)
    theta, valid = part_transforms(STANDING, _apply(t, STANDING))
    assert valid.all()
    # the limbs' similarities and the torso's least-squares affine are both exact for a rigid motion of the pose
    torch.testing.assert_close(theta[0], t.expand(NUM_PARTS, 2, 3), atol=1e-3, rtol=0)


@pytest.mark.parametrize("angle, scale, shift", [(0.5, 1.0, (4.0, -3.0)), (0.0, 1.25, (-6.0, 2.0)), (-0.3, 0.9, (0.0, 0.0))])
def test_a_rigid_limb_image_moves_by_exactly_the_pose_transform(angle, scale, shift):
    """An image that is a linear ramp inside the right forearm: bilinear sampling of a linear function is exact, so
    the warped image must equal the ramp carried by the transform wherever the moved forearm's mask is full."""
    t = _similarity(angle, scale, shift)
    moved = _apply(t, STANDING)
    ys, xs = torch.meshgrid(torch.arange(128.0), torch.arange(128.0), indexing="ij")
    ramp = lambda x, y: 0.01 * x - 0.007 * y + 0.1  # noqa: E731
    image = ramp(xs, ys)[None, None].expand(1, 3, 128, 128).clone()
    warped, masks = warp(image, STANDING, moved, image_size=128)
    # where the target pixel p reads: the source point T^-1(p)
    inv = torch.linalg.inv(torch.cat([t, torch.tensor([[0.0, 0.0, 1.0]])]))[:2]
    sx, sy = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2], inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    expected = ramp(sx, sy)
    forearm = masks[0, PART_INDEX["r_forearm"]]
    chosen = (forearm > 0.999) & (forearm >= masks[0].amax(0))  # the pixels that follow the forearm
    inside_source = (sx > 1) & (sx < 126) & (sy > 1) & (sy < 126)
    region = chosen & inside_source
    assert region.sum() > 50
    torch.testing.assert_close(warped[0, 0][region], expected[region], atol=1e-4, rtol=0)


@pytest.mark.parametrize("angle, scale, shift", [(0.4, 1.0, (3.0, -2.0)), (-0.6, 1.3, (0.0, 5.0))])
def test_the_garment_fit_is_exact_for_a_rigid_motion_of_the_pose_too(angle, scale, shift):
    t = _similarity(angle, scale, shift)
    theta, valid = part_transforms(STANDING, _apply(t, STANDING), fit="body")
    assert valid.all()
    torch.testing.assert_close(theta[0], t.expand(NUM_PARTS, 2, 3), atol=1e-3, rtol=0)


def _carry(theta: torch.Tensor, point) -> torch.Tensor:
    return theta[:, :2] @ torch.tensor(point, dtype=torch.float32) + theta[:, 2]


def test_the_garment_fit_foreshortens_a_limb_along_its_length_only():
    """The right forearm seen at half its length: both fits carry elbow to elbow and wrist to wrist, but across the
    forearm the joints' similarity halves the sleeve and the garment fit keeps its width (the body is as big)."""
    target = STANDING.clone()
    elbow, wrist = STANDING[0, 3], STANDING[0, 4]
    target[0, 4] = elbow + 0.5 * (wrist - elbow)
    assert torch.allclose(body_unit(target), body_unit(STANDING))
    d = (wrist - elbow) / (wrist - elbow).norm()
    across = torch.stack([-d[1], d[0]])
    side = (elbow + 0.5 * (wrist - elbow) + 4 * across).tolist()  # 4 px off the forearm's axis, halfway down
    widths = {}
    for fit in ("joints", "body"):
        theta = part_transforms(STANDING, target, fit=fit)[0][0, PART_INDEX["r_forearm"]]
        torch.testing.assert_close(_carry(theta, elbow.tolist()), elbow, atol=1e-4, rtol=0)
        torch.testing.assert_close(_carry(theta, wrist.tolist()), target[0, 4], atol=1e-4, rtol=0)
        moved = _carry(theta, side) - _carry(theta, (elbow + 0.5 * (wrist - elbow)).tolist())
        widths[fit] = float(moved @ across)
    assert widths["joints"] == pytest.approx(2.0, abs=1e-3)
    assert widths["body"] == pytest.approx(4.0, abs=1e-3)


def test_the_garment_fit_of_the_torso_ignores_shoulder_width_and_left_right_labels():
    """Raised shoulders spread wider, and a back view swaps the left and right labels of the same four points:
    neither moves the shirt printed on the torso, which the four-joint affine stretches or mirrors."""
    wide = STANDING.clone()
    wide[0, 2, 0] -= 4
    wide[0, 5, 0] += 4
    back = STANDING.clone()
    back[0, [2, 5, 8, 11]] = STANDING[0, [5, 2, 11, 8]]
    top = 0.5 * (STANDING[0, 2] + STANDING[0, 5])
    for target in (wide, back):
        body = part_transforms(STANDING, target, fit="body")[0][0, PART_INDEX["torso"]]
        joints = part_transforms(STANDING, target, fit="joints")[0][0, PART_INDEX["torso"]]
        # the body fit: a uniform scale by the body units' ratio (wider shoulders can raise a body unit estimated
        # from the limbs), about the mid-shoulder point, which stays put
        ratio = float(body_unit(target)[0] / body_unit(STANDING)[0])
        torch.testing.assert_close(body[:, :2], ratio * torch.eye(2), atol=1e-4, rtol=0)
        torch.testing.assert_close(_carry(body, top.tolist()), top, atol=1e-3, rtol=0)
        assert (joints[:, :2] - ratio * torch.eye(2)).abs().max() > 0.1
    mirrored = part_transforms(STANDING, back, fit="joints")[0][0, PART_INDEX["torso"], :, :2]
    assert torch.linalg.det(mirrored) < 0  # the affine flips the shirt over


def test_arms_in_front_take_the_pixels_of_their_core_over_the_torso():
    """A right forearm folded across the chest: by default the torso (first of equal masks) takes the pixels where
    both masks are full; with ``in_front=ARM_PARTS`` the forearm's own pixels follow the forearm, and its loose
    sleeve room beyond the core still goes to the torso."""
    folded = STANDING.clone()
    folded[0, 4] = torch.tensor([72.0, 56.0])  # wrist on the chest, from the elbow at (48, 58)
    shifted = folded + torch.tensor([5.0, 0.0])  # the reference: everything 5 px to the right, the forearm 3 px more
    shifted[0, 4] += torch.tensor([0.0, 3.0])
    shifted[0, 3] += torch.tensor([0.0, 3.0])
    mid = (0.5 * (folded[0, 3] + folded[0, 4])).round().long()  # on the forearm's axis, inside the torso
    x, y = int(mid[0]), int(mid[1])
    expected = {}
    for name in ("torso", "r_forearm"):
        theta = part_transforms(folded, shifted)[0][0, PART_INDEX[name]]
        q = _carry(theta, (float(x), float(y)))
        expected[name] = (2 * q + 1) / 128 - 1
    default, masks = composite_grid(shifted, folded, 128)
    front, front_masks = composite_grid(shifted, folded, 128, in_front=ARM_PARTS)
    assert masks[0, PART_INDEX["torso"], y, x] == 1 and masks[0, PART_INDEX["r_forearm"], y, x] == 1
    torch.testing.assert_close(default[0, y, x], expected["torso"], atol=1e-4, rtol=0)
    torch.testing.assert_close(front[0, y, x], expected["r_forearm"], atol=1e-4, rtol=0)
    torch.testing.assert_close(front_masks, masks)  # the masks (coverage) do not change, only who wins
    # away from the arm, the torso's pixels are untouched
    torch.testing.assert_close(front[0, 100 - 30], default[0, 100 - 30])


def test_a_part_with_a_missing_joint_contributes_nothing():
    target = STANDING.clone()
    target[0, 4] = -1  # the right wrist
    reference = STANDING.clone()
    reference[0, 11] = -1  # the left hip, in the other pose: the torso and the left thigh have no transform
    theta, valid = part_transforms(reference, target)
    missing = {"r_forearm", "torso", "l_thigh"}
    assert {PART_NAMES[i] for i in range(NUM_PARTS) if not valid[0, i]} == missing
    grid, masks = composite_grid(reference, target, 64, image_size=128)
    for name in missing:
        assert masks[0, PART_INDEX[name]].abs().max() == 0
    # no pixel reads through a part without a transform: a reference whose only content is a missing part's
    # region is warped to nothing there
    assert (masks.amax(1) > 0).any()
    # in the target's own masks (no pair), the part with the missing wrist is empty
    own = part_masks(target, 64, 128)
    assert own[0, PART_INDEX["r_forearm"]].max() == 0 and own[0, PART_INDEX["torso"]].max() > 0.99


def test_masks_are_soft_follow_the_pose_and_scale_with_the_body():
    masks = part_masks(STANDING, 128)
    assert masks.shape == (1, NUM_PARTS, 128, 128) and 0 <= masks.min() and masks.max() <= 1
    # each part's mask is full at the middle of its own segment
    for name, (a, b) in (("r_upper_arm", (2, 3)), ("l_shin", (12, 13)), ("head", (1, 0))):
        x, y = ((STANDING[0, a] + STANDING[0, b]) / 2).round().long().tolist()
        if name == "head":
            x, y = STANDING[0, 0].round().long().tolist()
        assert masks[0, PART_INDEX[name], y, x] > 0.99, name
    assert masks[0, :, 5, 5].max() < 1e-3  # a corner of the picture is no part
    # the same pose at half the size: masks on a half-size grid match the full-size ones subsampled
    small = part_masks(STANDING / 2, 64)
    assert (small - masks[..., ::2, ::2]).abs().mean() < 0.02
    torch.testing.assert_close(body_unit(STANDING / 2), body_unit(STANDING) / 2)
    # the grid of another size samples the same masks: the feature-size convention
    assert (part_masks(STANDING, 64, 128) - F.avg_pool2d(masks, 2)).abs().mean() < 0.02


def test_garment_part_sets_of_the_body():
    """A top is worn on the torso and arms, a bottom on the legs and the hips (the torso, cut at the waist in the
    masks), a full-body garment on both."""
    assert set(LEG_PARTS) == {"r_thigh", "r_shin", "l_thigh", "l_shin"}
    assert set(LOWER_BODY_PARTS) == set(LEG_PARTS) | {"torso"}
    assert set(FULL_BODY_PARTS) == set(UPPER_BODY_PARTS) | set(LOWER_BODY_PARTS) and len(FULL_BODY_PARTS) == len(set(FULL_BODY_PARTS))
    assert 0.5 < WAIST < 1.0


def test_the_waist_cuts_the_torso_and_legs_above_the_waist_line():
    whole = part_masks(STANDING, 128)
    cut = part_masks(STANDING, 128, waist=WAIST)
    torso, thigh = PART_INDEX["torso"], PART_INDEX["r_thigh"]
    neck_y, hip_y = float(STANDING[0, 1, 1]), float((STANDING[0, 8, 1] + STANDING[0, 11, 1]) / 2)
    line = neck_y + WAIST * (hip_y - neck_y)  # an upright torso: the waist line is a row
    ramp = 2.0  # the edge ramp, a couple of pixels at this size
    above, below = torch.arange(128) < line - ramp, torch.arange(128) > line + ramp
    for part in (torso, thigh):
        assert cut[0, part][above].max() == 0, PART_NAMES[part]
        torch.testing.assert_close(cut[0, part][below], whole[0, part][below])
    assert whole[0, torso][above].max() == 1 and whole[0, thigh][above].max() > 0.5  # a thigh's rounded end reaches up
    for name in ARM_PARTS + ("head",):  # the rest of the body is not cut
        torch.testing.assert_close(cut[0, PART_INDEX[name]], whole[0, PART_INDEX[name]])
    # the line follows the torso's axis: a body lying on its side is cut across, not by rows
    turned = STANDING.flip(-1)  # (x, y) -> (y, x): the body lies along x
    cut_t = part_masks(turned, 128, waist=WAIST)[0, torso]
    torch.testing.assert_close(cut_t, cut[0, torso].T)


def test_complete_legs_puts_missing_knees_and_ankles_where_straight_legs_have_them():
    cropped = STANDING.clone()
    cropped[0, [9, 10, 13]] = -1  # a photo cut at the thighs; the left ankle hidden, the left knee seen
    done = complete_legs(cropped)
    seen = (cropped >= 0).all(-1)[0]
    torch.testing.assert_close(done[0, seen], cropped[0, seen])  # given joints are kept
    unit = body_unit(cropped)[0]
    down = (cropped[0, 8] + cropped[0, 11]) / 2 - cropped[0, 1]
    down = down / down.norm()
    torch.testing.assert_close(done[0, 9], cropped[0, 8] + 0.85 * unit * down)  # a thigh's length down the torso's axis
    torch.testing.assert_close(done[0, 10], done[0, 9] + 0.82 * unit * down)  # then a shin's, on along the thigh
    along = (cropped[0, 12] - cropped[0, 11]) / (cropped[0, 12] - cropped[0, 11]).norm()
    torch.testing.assert_close(done[0, 13], cropped[0, 12] + 0.82 * unit * along)
    # an ankle seen without its knee: the knee halfway
    kneeless = STANDING.clone()
    kneeless[0, 9] = -1
    torch.testing.assert_close(complete_legs(kneeless)[0, 9], (STANDING[0, 8] + STANDING[0, 10]) / 2)
    # now the thighs have parts: a transform and a mask
    assert not part_transforms(cropped, cropped)[1][0, PART_INDEX["r_thigh"]]
    assert part_transforms(done, done)[1][0, PART_INDEX["r_thigh"]] and part_masks(done, 128)[0, PART_INDEX["r_shin"]].max() == 1
    # without both hips (or the neck) there is no leg to complete
    hipless = cropped.clone()
    hipless[0, 11] = -1
    torch.testing.assert_close(complete_legs(hipless), hipless)


def test_complete_legs_is_synthhumans_own_completion():
    """SynthHumans draws a figure whole, completing missing joints from its proportions: `complete_legs` puts the
    knees and ankles where it draws them (the body in a photo cut at the thighs goes on out of the frame)."""
    import numpy as np

    from pgat.data.synthetic import SynthHumans, _complete
    from pgat.pose import visible

    humans, checked = SynthHumans(128, split="test"), 0
    for name in humans.pose_names[:120]:
        kps = humans.pose(name)
        if not visible(kps)[[1, 8, 11]].all():
            continue
        drawn = _complete(kps).points
        done = complete_legs(torch.from_numpy(kps.astype(np.float32))[None])[0].numpy()
        for j in (9, 10, 12, 13):
            if not visible(kps)[j]:
                np.testing.assert_allclose(done[j], drawn[j], atol=1e-3)
                checked += 1
    assert checked > 50


def test_side_view_torso_falls_back_to_its_axis():
    side = STANDING.clone()
    side[0, [2, 5]] = torch.tensor([[64.0, 39.0], [64.5, 39.0]])  # shoulders on one point: a side view
    side[0, [8, 11]] = torch.tensor([[64.0, 74.0], [64.5, 74.0]])
    theta, valid = part_transforms(side, side)
    assert valid[0, PART_INDEX["torso"]]
    torch.testing.assert_close(theta[0, PART_INDEX["torso"]], torch.eye(2, 3), atol=1e-4, rtol=0)


def test_warp_is_batched_and_broadcasts_one_reference():
    g = torch.Generator().manual_seed(0)
    targets = torch.cat([_apply(_similarity(a, 1.0, (3.0 * a, 0.0)), STANDING) for a in (0.0, 0.3, -0.2)])
    features = torch.randn(1, 4, 16, 16, generator=g)
    batched, masks = warp(features, STANDING, targets, image_size=128)
    assert batched.shape == (3, 4, 16, 16) and masks.shape == (3, NUM_PARTS, 16, 16)
    for i in range(3):
        one, _ = warp(features, STANDING, targets[i : i + 1], image_size=128)
        torch.testing.assert_close(batched[i : i + 1], one)


def test_gradients_flow_through_the_warp():
    features = torch.randn(2, 3, 32, 32, requires_grad=True)
    target = _apply(_similarity(0.3, 1.1, (2.0, 1.0)), STANDING).expand(2, -1, -1)
    warped, _ = warp(features, STANDING.expand(2, -1, -1), target, image_size=128)
    warped.square().sum().backward()
    assert features.grad is not None and features.grad.abs().sum() > 0


def test_bf16_features_are_sampled_in_float32():
    features = torch.randn(1, 2, 64, 64)
    target = _apply(_similarity(0.2, 1.0, (1.5, 0.0)), STANDING)
    full, _ = warp(features, STANDING, target, image_size=128)
    half, _ = warp(features.bfloat16(), STANDING, target, image_size=128)
    assert half.dtype == torch.bfloat16
    # only the bf16 rounding of the values, not of the positions (which would be up to ~0.5 px off here)
    torch.testing.assert_close(half.float(), full, atol=0.05, rtol=0.01)


def test_part_warp_baseline_moves_the_person_and_fills_the_background():
    from pgat.data.pairs import PairDataset
    from pgat.data.synthetic import SynthHumans

    data = PairDataset(SynthHumans(resolution=64, split="test", seed=0, length=4), resolution=64, flip_prob=0.0)
    item = data[1]
    ref, tgt = item["reference_keypoints"][None], item["target_keypoints"][None]
    out = warp_image(item["reference"][None], ref, tgt)
    assert out.shape == (1, 3, 64, 64) and out.min() >= -1 and out.max() <= 1
    # closer to the ground truth than the reference itself, on this pair
    err = lambda a: (a - item["target"][None]).abs().mean().item()  # noqa: E731
    assert err(out) < err(item["reference"][None])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: part_transforms(torch.zeros(1, 17, 2), STANDING), r"`source` must be a \(B, 18, 2\)"),
        (lambda: part_transforms(STANDING, STANDING.expand(2, -1, -1)), "same number of poses"),
        (lambda: part_masks(STANDING, 0), "`size` and `image_size` must be positive"),
        (lambda: warp(torch.zeros(3, 8, 8), STANDING, STANDING), r"`features` must be a \(B, C, h, w\)"),
        (lambda: warp(torch.zeros(2, 1, 8, 8), STANDING, STANDING.expand(3, -1, -1)), "1 or 3 references"),
        (lambda: composite_grid(STANDING, STANDING, 8, parts=("tail",)), "unknown \\['tail'\\]"),
        (lambda: composite_grid(STANDING, STANDING, 8, in_front=("wing",)), "`in_front` must name .* unknown \\['wing'\\]"),
        (lambda: part_transforms(STANDING, STANDING, fit="cloth"), "`fit` must be one of \\('joints', 'body'\\), got 'cloth'"),
        (lambda: complete_legs(STANDING[0]), r"`keypoints` must be a \(B, 18, 2\) tensor"),
    ],
)
def test_bad_inputs_name_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()
