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


def test_heat_map_is_drawn_in_jet_colours_over_the_source():
    source = np.full((300, 300), 128, np.uint8)
    heat = np.zeros((32, 32), np.float32)
    heat[8:16, 8:16] = 1.0                      # hot: red in JET; cold: blue
    boxes = find_boxes(heat > 0.5, source.shape)
    image = Annotator(alpha=0.5).draw(source, heat > 0.5, boxes, "probability 0.97 / 0.4",
                                      True, heat=heat)
    assert image.shape == (300, 300, 3)
    b, g, r = image[110, 110].astype(int)       # inside the hot square: red
    assert r > b + 40 and r > g + 40
    b, g, r = image[250, 250].astype(int)       # cold, far from it: blue
    assert b > r + 40 and b > g + 40
    assert boxes == [[75, 75, 75, 75]]
    assert (image[75, 100] == (0, 0, 255)).all()    # the box's top edge, red


def test_without_heat_a_flagged_frame_keeps_the_red_tint():
    source = np.full((64, 64, 3), 100, np.uint8)
    mask = np.zeros((32, 32), bool)
    mask[0:8, 0:8] = True
    image = Annotator(alpha=0.5).draw(source, mask, [], "area 1", True)
    assert (image[40, 40] == 100).all()         # no colour outside the mask
    assert image[4, 4, 2] > 150
