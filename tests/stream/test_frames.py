import cv2
import numpy as np

from stream.capture.frames import is_image_dataset, list_frames, resolve_clips
from stream.capture.sources import FolderSource, open_source
from tests.conftest import PED2, VTEST


def test_frame_folder_skips_non_images_and_sorts_naturally(tmp_path):
    for name in ("10.png", "2.bmp", "1.jpg", ".DS_Store", "notes.txt", "3.TIF"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_frames(tmp_path)] == ["1.jpg", "2.bmp", "3.TIF", "10.png"]


def test_ucsd_root_resolves_to_test_clips_without_masks():
    clips = resolve_clips(PED2)
    assert [c.name for c in clips] == [f"Test00{i}" for i in range(1, 7)]
    assert [c.name for c in resolve_clips(PED2, split="Train")][:2] == ["Train001", "Train002"]
    assert resolve_clips(PED2 / "Test" / "Test003") == [PED2 / "Test" / "Test003"]


def test_folder_source_reads_real_frames_in_order(tmp_path):
    for i in (1, 2, 10):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((4, 6), i, np.uint8))
    (tmp_path / ".DS_Store").write_bytes(b"junk")
    src = FolderSource(tmp_path)
    values = []
    while (f := src.read()) is not None:
        values.append(int(f.image[0, 0, 0]))
    assert values == [1, 2, 10]


def test_open_source_kinds():
    folder = open_source(str(PED2 / "Test"))
    assert isinstance(folder, FolderSource) and folder.fps == 10 and len(folder) == 1020
    first = folder.read()
    assert first.clip == "Test001" and first.index == 1 and first.image.shape == (240, 360, 3)
    with open_source(str(VTEST)) as video:
        assert video.fps == 10 and not video.live
        assert video.read().image.shape == (576, 768, 3)
    assert open_source(str(VTEST), fps=0).fps == 0


def test_missing_source_says_what_is_accepted():
    import pytest
    with pytest.raises(FileNotFoundError, match="give a camera index, a stream URL"):
        open_source("/nonexistent/clip.avi")


def _class_folders(root, counts):
    """A class-folder image set: each class's images hold their class number and index."""
    for label, (name, n) in enumerate(counts.items()):
        (root / name).mkdir(parents=True)
        for i in range(1, n + 1):
            cv2.imwrite(str(root / name / f"part_{i}.png"), np.full((4, 6), label * 100 + i,
                                                                    np.uint8))
    return root


def test_class_folders_replay_as_parts_of_every_class_mixed(tmp_path):
    root = _class_folders(tmp_path / "parts", {"def_front": 6, "ok_front": 6})
    assert is_image_dataset(root) and not is_image_dataset(PED2 / "Test")
    src = open_source(str(root), fps=2)
    assert isinstance(src, FolderSource) and src.mixed and src.fps == 2 and len(src) == 12
    seen = []
    while (f := src.read()) is not None:
        label = 0 if f.clip == "def_front" else 1
        assert int(f.image[0, 0, 0]) == label * 100 + f.index   # index: the file's in its class
        seen.append((f.clip, f.index))
    assert sorted(seen) == sorted([(c, i) for c in ("def_front", "ok_front")
                                   for i in range(1, 7)])
    classes = [c for c, _ in seen]
    assert classes != sorted(classes)               # interleaved, not one class then the other
    assert seen[:6] != [("def_front", i) for i in range(1, 7)]
    src.rewind()
    assert [(f.clip, f.index) for f in iter(src.read, None)] == seen
    again = FolderSource(root, seed=0)
    assert [(f.clip, f.index) for f in iter(again.read, None)] == seen
    other = FolderSource(root, seed=1)
    assert [(f.clip, f.index) for f in iter(other.read, None)] != seen


def test_ucsd_folders_are_not_class_folders():
    src = FolderSource(PED2 / "Test")
    assert not src.mixed
    first = src.read()
    assert (first.clip, first.index) == ("Test001", 1)
