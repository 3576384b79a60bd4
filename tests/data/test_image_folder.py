"""ImageFolder on a tiny folder written here, and the per-image transforms compared with torchvision's."""
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets as tv_datasets
from torchvision import transforms as T

import vitc
import vitc.data as vd


def _image(seed, size=(10, 7), mode="RGB"):
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode)


@pytest.fixture
def folder(tmp_path):
    """3 classes (written out of order), PNG and JPEG files of different sizes, one grey image,
    a nested sub-folder and a file that is not an image."""
    for c, cls in enumerate(["dog", "cat", "bird"]):
        (tmp_path / cls / "sub").mkdir(parents=True)
        for k in range(3):
            _image(10 * c + k, size=(9 + k, 8 + c)).save(tmp_path / cls / f"{k}.png")
        _image(100 + c).save(tmp_path / cls / "sub" / "x.JPG", quality=90)
        (tmp_path / cls / "notes.txt").write_text("not an image")
    _image(7, mode="L").save(tmp_path / "cat" / "grey.png")
    return tmp_path


def test_layout_matches_torchvision(folder):
    ours = vd.ImageFolder(folder)
    theirs = tv_datasets.ImageFolder(str(folder))
    assert ours.classes == theirs.classes == ["bird", "cat", "dog"]
    assert ours.class_to_idx == theirs.class_to_idx
    assert ours.samples == theirs.samples and ours.targets == theirs.targets and len(ours) == 13
    for i in range(len(ours)):  # RGB decoding and ToTensor match torchvision bit for bit
        img, target = ours[i]
        ref, ref_target = theirs[i]
        assert target == ref_target
        np.testing.assert_array_equal(img, T.ToTensor()(ref).numpy())


def test_transforms_match_torchvision_on_pil_images(folder):
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    ours = vd.ImageFolder(folder, transform=vd.Compose([vd.Resize(12), vd.CenterCrop(10), vd.ToTensor(),
                                                        vd.Normalize(mean, std)]),
                          target_transform=lambda t: t + 100)
    ref = tv_datasets.ImageFolder(str(folder), transform=T.Compose([T.Resize(12), T.CenterCrop(10), T.ToTensor(),
                                                                    T.Normalize(mean, std)]))
    for i in (0, 4, 12):
        (x, t), (rx, rt) = ours[i], ref[i]
        assert t == rt + 100 and x.shape == (3, 10, 10) and x.dtype == np.float32
        np.testing.assert_allclose(x, rx.numpy(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("size", [5, (6, 4), (12, 14), (7, 30)])
def test_center_crop_matches_torchvision_including_padding(size):
    img = _image(3, size=(9, 8))
    np.testing.assert_array_equal(np.asarray(vd.CenterCrop(size)(img)), np.asarray(T.CenterCrop(size)(img)))
    arr = np.asarray(img)  # uint8 (H, W, C) and float (C, H, W) arrays give the same crop
    np.testing.assert_array_equal(vd.CenterCrop(size)(arr), np.asarray(T.CenterCrop(size)(img)))
    chw = T.ToTensor()(img)
    np.testing.assert_array_equal(vd.CenterCrop(size)(chw.numpy()), T.CenterCrop(size)(chw).numpy())


@pytest.mark.parametrize("size", [6, 13, (5, 11)])
def test_resize_matches_torchvision(size):
    img = _image(4, size=(17, 9))
    expect = np.asarray(T.Resize(size)(img))
    np.testing.assert_array_equal(np.asarray(vd.Resize(size)(img)), expect)
    np.testing.assert_array_equal(vd.Resize(size)(np.asarray(img)), expect)
    chw = T.ToTensor()(img)
    ours = vd.Resize(size)(chw.numpy())  # float images keep float precision (Pillow's 'F' mode)
    theirs = T.Resize(size, antialias=True)(chw).numpy()
    assert ours.shape == theirs.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, atol=0.02)


def test_loader_over_an_image_folder_with_workers(folder):
    ds = vd.ImageFolder(folder, transform=vd.Compose([vd.Resize((8, 8)), vd.ToTensor()]))
    a = [(x.numpy().copy(), y.tolist()) for x, y in vd.DataLoader(ds, batch_size=4, shuffle=True, seed=2)]
    b = [(x.numpy().copy(), y.tolist()) for x, y in vd.DataLoader(ds, batch_size=4, shuffle=True, seed=2,
                                                                 num_workers=2)]
    assert [y for _, y in a] == [y for _, y in b] and len(a) == 4
    assert all(np.array_equal(p, q) for (p, _), (q, _) in zip(a, b))
    assert a[0][0].shape == (4, 3, 8, 8)
    with pytest.raises(ValueError, match=r"sample 1 has shape .* resize the images"):  # images of different sizes
        next(iter(vd.DataLoader(vd.ImageFolder(folder), batch_size=4)))


def test_image_folder_errors(folder, tmp_path_factory):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        vd.ImageFolder(folder / "missing")
    empty = tmp_path_factory.mktemp("empty_root")
    with pytest.raises(FileNotFoundError, match="no class folders in .*empty_root"):
        vd.ImageFolder(empty)
    (folder / "zebra").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no image files in the class folder\(s\) \['zebra'\]"):
        vd.ImageFolder(folder)
    (folder / "zebra" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    _image(5).save(folder / "zebra" / "cut.jpg")
    data = (folder / "zebra" / "cut.jpg").read_bytes()
    (folder / "zebra" / "cut.jpg").write_bytes(data[:len(data) // 2])
    ds = vd.ImageFolder(folder)
    broken = [i for i, (p, _) in enumerate(ds.samples) if p.endswith(("broken.png", "cut.jpg"))]
    for i in broken:  # each unreadable file is named
        with pytest.raises(OSError, match=f"cannot read image {ds.samples[i][0]}"):
            ds[i]
    with pytest.raises(OSError, match="broken.png"):  # also through a worker
        list(vd.DataLoader(vd.Subset(ds, broken), batch_size=1, num_workers=1))
    with pytest.raises(TypeError, match="transform must be callable"):
        vd.ImageFolder(folder, transform=3)


def test_per_image_transform_errors():
    for bad in (vd.Resize(4), vd.Compose([vd.ToTensor(), vd.Normalize(0.5, 0.5)])):
        with pytest.raises(TypeError, match="per-image transform, called t\\(img\\); give it to the dataset"):
            vd.DataLoader(vd.TensorDataset(np.zeros((2, 3))), transform=bad)
    with pytest.raises(ValueError, match="size"):
        vd.Resize(0)
    with pytest.raises(ValueError, match="interpolation"):
        vd.Resize(4, interpolation="cubicle")
    with pytest.raises(ValueError, match="size"):
        vd.CenterCrop((3, 0))
    with pytest.raises(ValueError, match="one image"):
        vd.Resize(4)(np.zeros((2, 3, 8, 8), np.float32))
    with pytest.raises(TypeError, match="PIL image or a NumPy array"):
        vd.CenterCrop(4)([1, 2])
    with pytest.raises(TypeError, match="ToTensor"):  # a batch transform given a PIL image
        vd.Compose([vd.Normalize(0.5, 0.5)])(_image(1))
    x = vd.ToTensor()(_image(1, mode="L"))
    assert x.shape == (1, 7, 10) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    np.testing.assert_array_equal(vd.ToTensor()(np.arange(6, dtype=np.uint8).reshape(2, 3)),
                                  T.ToTensor()(np.arange(6, dtype=np.uint8).reshape(2, 3)).numpy())


def test_torch_tensor_errors_say_how_to_convert():
    model = vitc.models.ViT(image_size=8, patch_size=4, num_classes=3, dim=8, depth=1, heads=2, mlp_dim=8,
                            channels=1, dim_head=4)
    with pytest.raises(TypeError, match=r"got a torch.Tensor \(convert it with vitc.from_numpy\(t.detach\(\)"):
        model(torch.zeros(2, 1, 8, 8))
    with pytest.raises(TypeError, match=r"got a numpy.ndarray \(wrap it with vitc.from_numpy"):
        model(np.zeros((2, 1, 8, 8), np.float32))
    with pytest.raises(TypeError, match=r"relu: input must be a vitc.Tensor, got a torch.Tensor"):
        vitc.relu(torch.zeros(2))
