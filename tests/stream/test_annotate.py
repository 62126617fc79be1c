import numpy as np

from stream.detector.annotate import Annotator, find_boxes


def test_boxes_are_in_source_pixels():
    mask = np.zeros((227, 227), bool)
    mask[100:110, 50:60] = True
    mask[0:2, 0:2] = True                       # 4 pixels: kept at min_pixels=4
    boxes = find_boxes(mask, (454, 681, 3))
    assert boxes[0] == [150, 200, 30, 20]
    assert len(boxes) == 2
    assert find_boxes(mask, (454, 681), min_pixels=5) == [[150, 200, 30, 20]]
    assert find_boxes(np.zeros((227, 227), bool), (10, 10)) == []


def test_overlay_tints_anomalous_pixels_red_at_source_size():
    source = np.full((240, 360, 3), 100, np.uint8)
    mask = np.zeros((227, 227), bool)
    mask[100:150, 100:150] = True
    boxes = find_boxes(mask, source.shape)
    image = Annotator(alpha=0.5).draw(source, mask, boxes, "peak 1", True)
    assert image.shape == source.shape
    b, g, r = image[int(125 * 240 / 227), int(125 * 360 / 227)]
    assert r > 150 and b < 80 and g < 80
    assert (image[230, 10] == 100).all()        # untouched outside the mask
    jpeg = Annotator().encode(image)
    assert jpeg[:2] == b"\xff\xd8"
