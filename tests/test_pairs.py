import csv
import json

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from pgat.cli import main as pgat_main
from pgat.data import (
    PairDataset,
    PairWriter,
    SynthHumans,
    flip_pair,
    h36m_to_coco18,
    read_deepfashion,
    read_human36m,
    read_pair_folder,
)
from pgat.data.synthetic import PARSING_LABELS
from pgat.pose import FLIP_INDEX, KEYPOINT_INDEX, read_deepfashion_annotations, visible


def person_pose(width=64, height=96):
    """A full COCO-18 pose inside a ``width x height`` image (eyes and ears missing)."""
    k = np.full((18, 2), -1.0, np.float32)
    cx = width / 2
    rows = {0: 0.12, 1: 0.25, 2: 0.26, 3: 0.42, 4: 0.56, 5: 0.26, 6: 0.42, 7: 0.56, 8: 0.55, 9: 0.72, 10: 0.9, 11: 0.55, 12: 0.72, 13: 0.9}
    offsets = {0: 0, 1: 0, 2: -0.2, 3: -0.26, 4: -0.3, 5: 0.2, 6: 0.26, 7: 0.3, 8: -0.1, 9: -0.12, 10: -0.13, 11: 0.1, 12: 0.12, 13: 0.13}
    for j, r in rows.items():
        k[j] = (cx + offsets[j] * width, r * height)
    return k


def noise_image(width, height, seed):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------------------------
# writer + folder + imagefolder
# ---------------------------------------------------------------------------------------------


def test_pgat_synth_is_read_by_imagefolder(tmp_path):
    out = tmp_path / "synth"
    assert pgat_main(["synth", "--out", str(out), "--num-pairs", "3", "--resolution", "64", "--split", "test", "--seed", "2"]) == 0
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == 6
    with open(out / "pairs.csv", newline="") as f:
        pairs = list(csv.DictReader(f))
    assert len(pairs) == 3 and set(pairs[0]) == {"from", "to"}

    ds = datasets.load_dataset("imagefolder", data_dir=str(out), split="train")
    assert len(ds) == 6
    assert set(ds.column_names) == {"image", "keypoints", "parsing"}
    synth = SynthHumans(resolution=64, split="test", seed=2)
    for i in range(3):
        item = synth[i]
        for side in ("reference", "target"):
            row = next(r for r in rows if r["file_name"] == f"images/{i:06d}_{side}.png")
            np.testing.assert_allclose(np.asarray(row["keypoints"]), item[f"{side}_keypoints"], atol=1e-3)
            np.testing.assert_array_equal(np.asarray(Image.open(out / row["file_name"])), item[side])  # PNG: lossless
            np.testing.assert_array_equal(np.asarray(Image.open(out / row["parsing_file_name"])), item[f"{side}_parsing"])
    # what datasets decoded is the same data
    decoded = ds[0]
    assert decoded["image"].size == (64, 64)
    parsing = np.asarray(decoded["parsing"])
    assert parsing.shape == (64, 64) and parsing.max() < len(PARSING_LABELS) and (parsing > 0).any()
    assert np.asarray(decoded["keypoints"]).shape == (18, 2)


def test_pair_writer_round_trip_and_pair_dataset(tmp_path):
    kps = person_pose(64, 96)
    a_img, b_img = noise_image(64, 96, 0), noise_image(64, 96, 1)
    with PairWriter(tmp_path / "p") as w:
        a = w.add_image("a", a_img, kps)
        b = w.add_image("b", Image.fromarray(b_img), kps)
        w.add_pair(a, "b")  # by file name or by name
    src = read_pair_folder(tmp_path / "p")
    assert len(src) == 1 and not src.skipped
    pd = PairDataset(tmp_path / "p", resolution=48)
    item = pd[0]
    assert item["reference"].shape == (3, 48, 48) and item["reference"].dtype == torch.float32
    assert -1.0 <= item["reference"].min() and item["reference"].max() <= 1.0
    assert "reference_parsing" not in item
    # letterbox: 64x96 -> 32x48 pasted at x = 8; keypoints follow with the pixel-centre convention
    expected = np.where(visible(kps)[:, None], (kps + 0.5) * 0.5 - 0.5 + np.array([8, 0]), -1)
    np.testing.assert_allclose(item["reference_keypoints"].numpy(), expected, atol=1e-4)
    # padding is white, the picture is the image
    assert torch.allclose(item["reference"][:, :, :8], torch.ones(3, 48, 8))
    small = np.asarray(Image.fromarray(a_img).resize((32, 48), Image.BICUBIC), dtype=np.float32) / 127.5 - 1
    np.testing.assert_allclose(item["reference"][:, :, 8:40].permute(1, 2, 0).numpy(), small, atol=1e-5)


def test_folder_column_names_follow_imagefolder(tmp_path):
    kps = person_pose(64, 96)
    rows = [{"photo_file_name": f"{n}.png", "pose": kps.tolist()} for n in ("a", "b")]
    for i, n in enumerate("ab"):
        Image.fromarray(noise_image(64, 96, i)).save(tmp_path / f"{n}.png")
    (tmp_path / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "pairs.csv").write_text("from,to\na.png,b.png\n")
    # datasets sees the columns "photo" and "pose"; PairDataset takes the same names
    assert set(datasets.load_dataset("imagefolder", data_dir=str(tmp_path), split="train").column_names) == {"photo", "pose"}
    item = PairDataset(tmp_path, resolution=32, image_column="photo", keypoints_column="pose")[0]
    assert item["target"].shape == (3, 32, 32)
    with pytest.raises(ValueError, match=r"no column \['file_name', 'keypoints'\]; its columns are \['photo_file_name', 'pose'\]"):
        PairDataset(tmp_path)


def test_horizontal_flip_swaps_sides_and_mirrors_x():
    synth = SynthHumans(resolution=64, seed=5, length=4)
    plain = PairDataset(synth, resolution=64)
    flipped = PairDataset(synth, resolution=64, flip_prob=1.0)
    a, b = plain[1], flipped[1]
    assert torch.equal(b["reference"], a["reference"].flip(-1))
    assert torch.equal(b["target_parsing"], a["target_parsing"].flip(-1))
    ka, kb = a["reference_keypoints"], b["reference_keypoints"]
    for name in ("r_shoulder", "l_hip", "r_eye", "nose"):
        j = KEYPOINT_INDEX[name]
        mirror = FLIP_INDEX[j]
        if visible(ka[mirror]):
            # the mirrored person's right shoulder is the original's left one, at x -> 63 - x
            assert kb[j, 0] == pytest.approx(63 - ka[mirror, 0])
            assert kb[j, 1] == pytest.approx(ka[mirror, 1])
        else:
            assert not visible(kb[j])
    # a visible keypoint still lands on the body after the flip
    for j in np.flatnonzero(visible(kb).numpy()):
        x, y = kb[j].round().long().tolist()
        assert b["reference_parsing"][y, x] > 0
    # flips are drawn per (seed, epoch, index): about half at 0.5, different in another epoch
    half = PairDataset(synth, resolution=64, flip_prob=0.5, seed=0)
    draws = []
    for epoch in range(6):
        half.set_epoch(epoch)
        draws.append([torch.equal(half[i]["reference"], plain[i]["reference"]) for i in range(4)])
    draws = np.asarray(draws)
    assert 0.2 < draws.mean() < 0.8


def test_flip_twice_is_identity():
    img = torch.rand(3, 8, 8)
    k = torch.full((18, 2), -1.0)
    k[2] = torch.tensor([1.0, 2.0])
    k[5] = torch.tensor([6.0, 2.0])
    img2, k2, _ = flip_pair(*flip_pair(img, k)[:2])
    assert torch.equal(img2, img) and torch.equal(k2, k)
    _, k1, _ = flip_pair(img, k)
    assert k1[5].tolist() == [6.0, 2.0] and k1[2].tolist() == [1.0, 2.0]  # r/l swapped and mirrored: 7 - 1 = 6
    assert (k1[[0, 1, 3, 4]] == -1).all()


def test_pair_dataset_on_the_fly_matches_synth():
    synth = SynthHumans(resolution=64, seed=1, length=3)
    item = PairDataset(synth, resolution=64)[2]
    raw = synth[2]
    np.testing.assert_allclose(((item["target"] + 1) * 127.5).round().permute(1, 2, 0).numpy(), raw["target"], atol=0)
    np.testing.assert_array_equal(item["target_keypoints"].numpy(), raw["target_keypoints"])
    np.testing.assert_array_equal(item["reference_parsing"].numpy(), raw["reference_parsing"])
    loader = torch.utils.data.DataLoader(PairDataset(synth, resolution=32), batch_size=3)
    batch = next(iter(loader))
    assert batch["reference"].shape == (3, 3, 32, 32) and batch["target_keypoints"].shape == (3, 18, 2)


def test_pair_dataset_from_a_datasets_dataset():
    kps = person_pose(40, 60)
    ds = datasets.Dataset.from_dict(
        {"photo": [Image.fromarray(noise_image(40, 60, i)) for i in range(3)], "pose": [kps.tolist()] * 3},
        features=datasets.Features({"photo": datasets.Image(), "pose": datasets.List(datasets.List(datasets.Value("float32")))}),
    )
    pd = PairDataset(ds, resolution=32, image_column="photo", keypoints_column="pose", pairs=[(0, 2), (1, 0)])
    assert len(pd) == 2
    item = pd[0]
    assert item["target"].shape == (3, 32, 32)
    with pytest.raises(ValueError, match=r"no column \['image', 'keypoints'\]; its columns are \['photo', 'pose'\]"):
        PairDataset(ds, pairs=[(0, 1)])
    with pytest.raises(ValueError, match="pairs"):
        PairDataset(ds, image_column="photo", keypoints_column="pose")
    with pytest.raises(ValueError, match="below 3"):
        PairDataset(ds, image_column="photo", keypoints_column="pose", pairs=[(0, 3)])


# ---------------------------------------------------------------------------------------------
# readers
# ---------------------------------------------------------------------------------------------


def make_deepfashion(root, annotation_csv, width, n_images=4, broken=None):
    """A tiny PATN layout: real annotation rows, made-up images, pairs among the chosen names."""
    table = read_deepfashion_annotations(annotation_csv, frame="256x256")
    names = [n for n, k in table.items() if visible(k).sum() >= 12 and ((k[visible(k), 0] >= 40) & (k[visible(k), 0] < 216)).all()][:n_images]
    (root / "test").mkdir(parents=True)
    for i, n in enumerate(names):
        if n == broken:
            (root / "test" / n).write_bytes(b"this is not a jpeg")
        else:
            Image.fromarray(noise_image(width, 256, i)).save(root / "test" / n)
    (root / "fasion-resize-annotation-test.csv").write_bytes(annotation_csv.read_bytes())  # the real file
    with open(root / "fasion-resize-pairs-test.csv", "w") as f:
        f.write("from,to\n")
        for a, b in zip(names, names[1:] + names[:1]):
            f.write(f"{a},{b}\n")
    return names, table


@pytest.mark.parametrize("width,shift", [(176, 40), (256, 0)])
def test_deepfashion_reader(tmp_path, shared_data, width, shift):
    ann = shared_data / "deepfashion" / "fasion-annotation-test.csv"
    names, table = make_deepfashion(tmp_path, ann, width)
    src = read_deepfashion(tmp_path)
    assert len(src) == 4 and not src.skipped
    rec = next(r for r in src.images if r.name == names[0])
    ok = visible(table[names[0]])
    np.testing.assert_allclose(rec.keypoints[ok], table[names[0]][ok] - [shift, 0])
    assert (rec.keypoints[~ok] == -1).all()
    # the source trains directly and writes the pair format
    item = PairDataset(src, resolution=64)[0]
    assert item["reference"].shape == (3, 64, 64)
    out = src.write(tmp_path / "pairs")
    assert len(read_pair_folder(out)) == 4


def test_deepfashion_reader_counts_bad_images(tmp_path, shared_data):
    ann = shared_data / "deepfashion" / "fasion-annotation-test.csv"
    names, _ = make_deepfashion(tmp_path, ann, 176, broken=None)
    (tmp_path / "test" / names[1]).write_bytes(b"garbage")  # unreadable
    (tmp_path / "test" / names[2]).unlink()  # missing
    src = read_deepfashion(tmp_path)
    assert src.skipped["unreadable image"] == 1 and src.skipped["missing image file"] == 1
    # 4 cyclic pairs: only names[3] -> names[0] has two good images
    assert len(src) == 1 and src.skipped["pair with a skipped image"] == 3
    # every image broken: an error, not an empty dataset
    for n in names:
        (tmp_path / "test" / n).write_bytes(b"garbage")
    with pytest.raises(ValueError, match="no usable pair"):
        read_deepfashion(tmp_path)


def test_deepfashion_reader_bad_layout(tmp_path, shared_data):
    ann = shared_data / "deepfashion" / "fasion-annotation-test.csv"
    make_deepfashion(tmp_path, ann, 176)
    (tmp_path / "fasion-resize-pairs-test.csv").write_text("source,target\na.jpg,b.jpg\n")
    with pytest.raises(ValueError, match=r"no column \['from', 'to'\]; its columns are \['source', 'target'\]"):
        read_deepfashion(tmp_path)
    # with the column names given, the pairs file reads; now the annotation's header is wrong
    (tmp_path / "fasion-resize-annotation-test.csv").write_text("image;y;x\n")
    with pytest.raises(ValueError, match="header"):
        read_deepfashion(tmp_path, from_column="source", to_column="target")
    with pytest.raises(FileNotFoundError, match="image folder"):
        read_deepfashion(tmp_path, image_dir="nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="not found"):
        read_deepfashion(empty)


def test_human36m_mapping():
    joints = np.arange(17 * 2, dtype=np.float32).reshape(17, 2)
    coco = h36m_to_coco18(joints)
    assert coco.shape == (18, 2)
    expect = {"nose": 9, "neck": 8, "r_shoulder": 14, "r_elbow": 15, "r_wrist": 16, "l_shoulder": 11, "l_elbow": 12,
              "l_wrist": 13, "r_hip": 1, "r_knee": 2, "r_ankle": 3, "l_hip": 4, "l_knee": 5, "l_ankle": 6}
    for name, h in expect.items():
        np.testing.assert_array_equal(coco[KEYPOINT_INDEX[name]], joints[h])
    for name in ("r_eye", "l_eye", "r_ear", "l_ear"):
        assert (coco[KEYPOINT_INDEX[name]] == -1).all()
    with pytest.raises(ValueError, match=r"\(\.\.\., 17, 2\)"):
        h36m_to_coco18(np.zeros((18, 2)))


def test_human36m_reader(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    n = 6
    rng = np.random.default_rng(0)
    joints = rng.uniform(10, 90, (n, 17, 2)).astype(np.float32)
    for i in range(n):
        Image.fromarray(noise_image(100, 100, i)).save(frames / f"frame_{i:04d}.jpg")
    np.savez(tmp_path / "poses.npz", positions_2d=joints)
    src = read_human36m(frames, tmp_path / "poses.npz")
    assert len(src) == n
    assert src.pairs[0] == (0, 3)  # half a sequence apart
    np.testing.assert_array_equal(src.images[4].keypoints[KEYPOINT_INDEX["r_wrist"]], joints[4, 16])
    item = PairDataset(src, resolution=32)[1]
    assert item["reference"].shape == (3, 32, 32)
    # VideoPose3D's nested (pickled) layout only with explicit consent
    nested = np.array({"S9": {"Walking": [joints, joints + 1]}}, dtype=object)
    np.savez(tmp_path / "vp3d.npz", positions_2d=nested)
    with pytest.raises(ValueError, match="allow_pickle"):
        read_human36m(frames, tmp_path / "vp3d.npz")
    src = read_human36m(frames, tmp_path / "vp3d.npz", subject="S9", action="Walking", camera=1, allow_pickle=True)
    np.testing.assert_array_equal(src.images[0].keypoints[KEYPOINT_INDEX["neck"]], joints[0, 8] + 1)
    with pytest.raises(ValueError, match="subject"):
        read_human36m(frames, tmp_path / "vp3d.npz", subject="S1", action="Walking", allow_pickle=True)
    with pytest.raises(ValueError, match="array 'poses'"):
        read_human36m(frames, tmp_path / "poses.npz", key="poses")
    np.savez(tmp_path / "short.npz", positions_2d=joints[:4])
    with pytest.raises(ValueError, match="6 frames but"):
        read_human36m(frames, tmp_path / "short.npz")


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------


def test_empty_or_foreign_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no metadata.jsonl"):
        PairDataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        PairDataset(tmp_path / "missing")
    (tmp_path / "metadata.jsonl").write_text("")
    with pytest.raises(ValueError, match="lists no images"):
        read_pair_folder(tmp_path)
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"image": "x.png"}) + "\n")
    with pytest.raises(ValueError, match=r"no column \['file_name', 'keypoints'\]; its columns are \['image'\]"):
        read_pair_folder(tmp_path)


def test_folder_with_bad_images_and_out_of_frame_keypoints(tmp_path):
    kps = person_pose(64, 96)
    with PairWriter(tmp_path) as w:
        names = [w.add_image(f"im{i}", noise_image(64, 96, i), kps) for i in range(4)]
        for a, b in zip(names, names[1:]):
            w.add_pair(a, b)
    (tmp_path / names[0]).write_bytes(b"not a png")
    rows = [json.loads(x) for x in (tmp_path / "metadata.jsonl").read_text().splitlines()]
    rows[3]["keypoints"][4] = [500.0, 10.0]  # a wrist far outside the 64x96 image
    (tmp_path / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pd = PairDataset(tmp_path)
    assert len(pd) == 1  # only im1 -> im2 survives
    assert pd.skipped["unreadable image"] == 1 and pd.skipped["keypoints out of frame"] == 1
    assert pd.skipped["pair with a skipped image"] == 2


def test_writer_refuses_bad_input(tmp_path):
    kps = person_pose(64, 96)
    with PairWriter(tmp_path / "w") as w:
        with pytest.raises(ValueError, match=r"r_wrist \(70.0, 10.0\) lie outside the 64x96 image"):
            bad = kps.copy()
            bad[4] = (70, 10)
            w.add_image("x", noise_image(64, 96, 0), bad)
        with pytest.raises(ValueError, match="shape"):
            w.add_image("x", noise_image(64, 96, 0), kps[:17])
        with pytest.raises(ValueError, match="uint8"):
            w.add_image("x", np.zeros((96, 64, 3), np.float32), kps)
        w.add_image("ok", noise_image(64, 96, 0), kps, parsing=np.zeros((96, 64), np.uint8))
        with pytest.raises(ValueError, match="for every image of a folder or for none"):
            w.add_image("no_parsing", noise_image(64, 96, 0), kps)
        with pytest.raises(ValueError, match="already added"):
            w.add_image("ok", noise_image(64, 96, 0), kps, parsing=np.zeros((96, 64), np.uint8))
        with pytest.raises(ValueError, match="`to_name` 'ghost'"):
            w.add_pair("ok", "ghost")
        with pytest.raises(ValueError, match="file-name-safe"):
            w.add_image("../escape", noise_image(64, 96, 0), kps)
    with pytest.raises(ValueError, match="overwrite=True"):
        PairWriter(tmp_path / "w")
    with pytest.raises(ValueError, match="not open"):
        PairWriter(tmp_path / "new").add_image("a", noise_image(8, 8, 0), np.full((18, 2), -1.0))
    # a folder whose pairs all point at skipped images is an error, not an empty dataset
    with pytest.raises(ValueError, match="no usable pair"):
        PairDataset(tmp_path / "w")
