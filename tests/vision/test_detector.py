"""The served detectors (ONNX Runtime and OpenVINO, one post-processing): geometry on a model
with a known head, parity with ultralytics."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest

from vision.detector import Detector, OnnxSegDetector, YoloSegDetector, _letterbox
from vision.errors import InvalidArgument, ModelUnavailable, VisionError
from vision.image import decode
from vision.types import Detections

DATA = Path("/work/shared/data")
NAMES = ("pothole", "graffiti")
IMGSZ = 416
PROTO = IMGSZ // 4  # YOLO-seg prototypes are a quarter of the input size

# Parity with ultralytics' own predict (stated tolerances).
BOX_TOL_PX = 2.0
CONF_TOL = 0.02
MASK_IOU_MIN = 0.9
MASK_MIN_AREA_PX = 400  # below this the outline is mostly boundary pixels
CONF_BAND_REL = 0.02  # a detection this close above the threshold may be on one side only
PARITY_MIN_COMPARED = 10


def fake_head_model(path: Path, boxes: list[dict], protos: np.ndarray) -> Path:
    """A real ONNX model whose YOLO-seg outputs are fixed tensors: a head we know the answer to."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    out0 = np.zeros((1, 4 + len(NAMES) + 32, len(boxes)), np.float32)
    for i, b in enumerate(boxes):
        out0[0, :4, i] = b["cxcywh"]
        out0[0, 4 + b["cls"], i] = b["conf"]
        out0[0, 4 + len(NAMES) :, i] = b["coeffs"]
    nodes = [
        helper.make_node("Constant", [], [name], value=numpy_helper.from_array(arr, name))
        for name, arr in (("output0", out0), ("output1", protos))
    ]
    graph = helper.make_graph(
        nodes,
        "fixed_head",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, IMGSZ, IMGSZ])],
        [
            helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(out0.shape)),
            helper.make_tensor_value_info("output1", TensorProto.FLOAT, list(protos.shape)),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def coeffs(k: int, value: float = 1.0) -> np.ndarray:
    c = np.zeros(32, np.float32)
    c[k] = value
    return c


@pytest.fixture(scope="module")
def fixed_head(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Prototype 0: signed distance to a circle of radius 10 cells (40 input px) at the centre,
    # so the mask is exactly that disc. Prototype 1: negative everywhere (an empty mask).
    yy, xx = np.mgrid[0:PROTO, 0:PROTO] + 0.5
    protos = np.zeros((1, 32, PROTO, PROTO), np.float32)
    protos[0, 0] = 10.0 - np.hypot(xx - PROTO / 2, yy - PROTO / 2)
    protos[0, 1] = -1.0
    boxes = [
        {"cxcywh": (208, 208, 100, 100), "cls": 0, "conf": 0.9, "coeffs": coeffs(0)},
        {"cxcywh": (213, 210, 100, 100), "cls": 0, "conf": 0.8, "coeffs": coeffs(0)},  # dup
        {"cxcywh": (208, 208, 100, 100), "cls": 1, "conf": 0.7, "coeffs": coeffs(0)},
        {"cxcywh": (100, 150, 40, 20), "cls": 1, "conf": 0.6, "coeffs": coeffs(1)},
        {"cxcywh": (300, 300, 50, 50), "cls": 0, "conf": 0.2, "coeffs": coeffs(0)},  # weak
    ]
    path = tmp_path_factory.mktemp("fixed_head") / "model.onnx"
    return fake_head_model(path, boxes, protos)


def as_openvino(onnx_path: Path) -> Path:
    """The same network as OpenVINO IR (model.xml + model.bin) beside it."""
    ov = pytest.importorskip("openvino")
    xml = onnx_path.parent / "openvino" / "model.xml"
    if not xml.exists():
        xml.parent.mkdir(exist_ok=True)
        ov.save_model(ov.convert_model(str(onnx_path)), str(xml), compress_to_fp16=False)
    return xml


@pytest.fixture(params=["onnx", "openvino"])
def make_detector(request: pytest.FixtureRequest) -> Callable[..., YoloSegDetector]:
    """Build a detector on either runtime from an ONNX file (OpenVINO: converted to IR)."""

    def make(path: Path, names: Sequence[str], **kw: float) -> YoloSegDetector:
        if request.param == "onnx":
            return OnnxSegDetector(path, names, **kw)
        from vision.detector_openvino import OpenVinoSegDetector

        return OpenVinoSegDetector(as_openvino(path), names, **kw)

    return make


def test_fixed_head_nms_confidence_and_boxes(
    fixed_head: Path, make_detector: Callable[..., YoloSegDetector]
) -> None:
    det = make_detector(fixed_head, NAMES, conf=0.25, iou=0.5, threads=1)
    assert isinstance(det, Detector)
    assert det.imgsz == (IMGSZ, IMGSZ)
    out = det.detect(blank(480, 640))  # letterbox gain 0.65, 52 px pad top and bottom
    # The overlapping same-class duplicate is suppressed; the other class at the same place
    # is kept (class-aware NMS); the 0.2 box is under conf.
    assert out.class_id.tolist() == [0, 1, 1]
    np.testing.assert_allclose(out.confidence, [0.9, 0.7, 0.6], atol=1e-6)
    gain, pad = 0.65, 52
    expected = [(208 - 50) / gain, (208 - 50 - pad) / gain, (208 + 50) / gain, (258 - pad) / gain]
    np.testing.assert_allclose(out.xyxy[0], expected, atol=1e-3)
    # An empty mask falls back to the box outline.
    np.testing.assert_allclose(out.polygons[2], box_polygon(out.xyxy[2]))
    assert out.class_name(2) == "graffiti"
    assert len(make_detector(fixed_head, NAMES, conf=0.95).detect(blank(64, 64))) == 0
    loose = make_detector(fixed_head, NAMES, conf=0.1, iou=0.99).detect(blank(480, 640))
    assert len(loose) == 5  # nothing suppressed at IoU 0.99, the weak box above conf 0.1


@pytest.mark.parametrize("shape", [(480, 640), (832, 416), (3000, 4000), (416, 416)])
def test_fixed_head_mask_lands_on_the_image(
    fixed_head: Path, shape: tuple[int, int], make_detector: Callable[..., YoloSegDetector]
) -> None:
    h, w = shape
    out = make_detector(fixed_head, NAMES, threads=1).detect(blank(h, w))
    # Where ultralytics' letterbox puts the image, the disc (radius 40 input px) comes back.
    gain = min(IMGSZ / h, IMGSZ / w)
    new_w, new_h = round(w * gain), round(h * gain)
    left, top = round((IMGSZ - new_w) / 2 - 0.1), round((IMGSZ - new_h) / 2 - 0.1)
    centre = ((208 - left) * w / new_w, (208 - top) * h / new_h)
    radius = 40 / gain
    poly = out.polygons[0]
    m = cv2.moments(poly)
    np.testing.assert_allclose((m["m10"] / m["m00"], m["m01"] / m["m00"]), centre, atol=0.5)
    # The outline runs through boundary pixel centres and chords cut 1 px corners: at most
    # ~1.5 px inside the true edge, never outside it.
    assert math.pi * (radius - 1.5) ** 2 <= polygon_area(poly) <= math.pi * (radius + 0.5) ** 2
    assert np.abs(np.hypot(*(poly - centre).T) - radius).max() < 1.5 + 0.01 * radius
    assert len(poly) < 0.5 * 2 * math.pi * radius  # simplified, not a vertex per boundary pixel


def blank(h: int, w: int) -> np.ndarray:
    return np.zeros((h, w, 3), np.uint8)


def box_polygon(b: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = b
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)


def polygon_area(p: np.ndarray) -> float:
    x, y = p[:, 0], p[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def test_model_unavailable_and_bad_input(tmp_path: Path, fixed_head: Path) -> None:
    with pytest.raises(ModelUnavailable, match=r"not found.*export_onnx"):
        OnnxSegDetector(tmp_path / "missing.onnx", NAMES)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"definitely not a protobuf")
    with pytest.raises(FileNotFoundError, match="not a valid ONNX model"):
        OnnxSegDetector(junk, NAMES)
    assert issubclass(ModelUnavailable, VisionError)
    with pytest.raises(ModelUnavailable, match="predicts 2 classes but 3 class names"):
        OnnxSegDetector(fixed_head, [*NAMES, "streetlight"])
    det = OnnxSegDetector(fixed_head, NAMES)
    with pytest.raises(InvalidArgument, match="H, W, 3"):
        det.detect(np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        det.detect(np.zeros((64, 64, 3), np.float32))


def test_detections_indexing_and_filtering() -> None:
    polys = [np.array([[0, 0], [4, 0], [4, 4]]), np.array([[1, 1], [5, 1], [5, 5]]), None]
    d = Detections(
        xyxy=np.array([[0, 0, 4, 4], [1, 1, 5, 5], [10, 10, 20, 30]]),
        confidence=np.array([0.9, 0.3, 0.6]),
        class_id=np.array([0, 1, 0]),
        polygons=[polys[0], polys[1], box_polygon(np.array([10, 10, 20, 30]))],
        class_names=NAMES,
    )
    strong = d[d.confidence > 0.5]
    assert len(strong) == 2
    assert strong.class_id.tolist() == [0, 0]
    np.testing.assert_array_equal(strong.polygons[1], box_polygon(np.array([10, 10, 20, 30])))
    one = d[1]
    assert len(one) == 1 and one.class_name(0) == "graffiti"
    np.testing.assert_array_equal(one.polygons[0], polys[1])
    assert d[[2, 0]].confidence.tolist() == pytest.approx([0.6, 0.9])
    assert len(d[1:]) == 2 and len(d[d.class_id == 7]) == 0
    assert d[d.class_id == 7].xyxy.shape == (0, 4)
    boxes_only = Detections(np.array([[0, 0, 2, 3]]), np.array([0.5]), np.array([1]))
    np.testing.assert_array_equal(boxes_only.polygons[0], box_polygon(np.array([0, 0, 2, 3])))
    assert len(Detections.empty(NAMES)) == 0
    with pytest.raises(ValueError, match="same length"):
        Detections(np.zeros((2, 4)), np.zeros(1), np.zeros(2))


@pytest.mark.parametrize("shape", [(480, 640), (517, 333), (416, 416), (1000, 90), (3, 800)])
def test_letterbox_matches_ultralytics(ultralytics_ready: None, shape: tuple[int, int]) -> None:
    from ultralytics.data.augment import LetterBox

    rgb = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    for stride, auto in ((None, False), (32, True)):
        tensor, _ = _letterbox(rgb, (IMGSZ, IMGSZ), stride)
        ref = LetterBox((IMGSZ, IMGSZ), auto=auto, stride=32)(image=rgb[..., ::-1].copy())
        ref_tensor = ref[..., ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        np.testing.assert_array_equal(tensor, ref_tensor)
        if stride:  # padded only up to a multiple of the stride: 480x640 runs at 320x416
            assert tensor.shape[2] % 32 == 0 and tensor.shape[3] % 32 == 0


@pytest.fixture(scope="module")
def fresh_openvino(served_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The served weights exported to OpenVINO as vision.train exports now (any input size,
    fp16-stored weights), once for this module's tests."""
    pytest.importorskip("openvino")
    import yaml

    from vision.train import export_openvino

    meta = yaml.safe_load((served_model / "meta.yaml").read_text())
    out = tmp_path_factory.mktemp("fresh") / "ov"
    return export_openvino(served_model / "weights.pt", meta["imgsz"], out)


@pytest.mark.slow
def test_dynamic_export_needs_its_metadata(
    served_model: Path, fresh_openvino: Path, tmp_path: Path
) -> None:
    """An export that takes any size is refused, with the reason, without the image size its
    metadata gives; with it, the detector runs a landscape and a portrait photo at their own
    letterbox shapes."""
    import shutil

    import yaml

    from vision.detector_openvino import OpenVinoSegDetector

    meta = yaml.safe_load((served_model / "meta.yaml").read_text())
    xml = fresh_openvino
    det = OpenVinoSegDetector(xml, meta["class_names"], conf=0.01)
    assert det.stride == 32 and det.imgsz == (meta["imgsz"], meta["imgsz"])
    rgb = decode(parity_photos()[0].read_bytes()).rgb
    for photo in (rgb, np.ascontiguousarray(np.rot90(rgb))):
        found = det.detect(photo)
        h, w = photo.shape[:2]
        assert len(found) and (found.xyxy[:, [2]] <= w).all() and (found.xyxy[:, [3]] <= h).all()
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in ("model.xml", "model.bin"):
        shutil.copy(xml.parent / f, bare / f)
    with pytest.raises(ModelUnavailable, match="no image size"):
        OpenVinoSegDetector(bare / "model.xml", meta["class_names"])
    (bare / "metadata.yaml").write_text("imgsz: [416, 400]\nstride: 32\n")
    with pytest.raises(ModelUnavailable, match="multiple of stride"):
        OpenVinoSegDetector(bare / "model.xml", meta["class_names"])


def parity_photos() -> list[Path]:
    pothole = sorted((DATA / "potholes-seg" / "images" / "val").glob("*.jpg"))[:4]
    graffiti = sorted((DATA / "graffiti-det" / "images" / "val").glob("*.jpg"))[:4]
    return pothole + graffiti


def outline_mask(shape: tuple[int, int], contour: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(contour).astype(np.int32)], 1)
    return mask.astype(bool)


def largest_outline(mask: np.ndarray) -> np.ndarray:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return max(contours, key=cv2.contourArea).reshape(-1, 2) if contours else np.zeros((0, 2))


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def parity_threshold(model: Path, names: list[str], photos: list[np.ndarray]) -> float:
    """The serving threshold, or lower where a young model finds too few objects above it."""
    probe = OnnxSegDetector(model, names, conf=0.001)
    scores = np.sort(np.concatenate([probe.detect(rgb).confidence for rgb in photos]))[::-1]
    if len(scores) < PARITY_MIN_COMPARED * 2:
        return 0.001
    return float(min(0.25, scores[PARITY_MIN_COMPARED * 2 - 1]))


def is_box_outline(polygon: np.ndarray, xyxy: np.ndarray) -> bool:
    return polygon.shape == (4, 2) and np.allclose(polygon, box_polygon(xyxy))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_parity_with_ultralytics_predict(
    served_model: Path, ultralytics_ready: None, backend: str, request: pytest.FixtureRequest
) -> None:
    """Same photo, same detections as YOLO(weights.pt).predict, within the stated tolerances,
    on ONNX Runtime (the served export) and on OpenVINO (a fresh export from the weights, as
    vision.train makes them now: any input size, fp16-stored weights)."""
    import yaml
    from ultralytics import YOLO

    from vision.detector_select import load_detector

    meta = yaml.safe_load((served_model / "meta.yaml").read_text())
    names = meta["class_names"]
    photos = [(p.name, decode(p.read_bytes()).rgb) for p in parity_photos()]
    # A portrait photo too: a model that takes any size runs it at another shape.
    photos.append((f"{photos[0][0]} turned", np.ascontiguousarray(np.rot90(photos[0][1]))))
    conf = parity_threshold(served_model / "model.onnx", names, [rgb for _, rgb in photos])
    near_threshold = conf * (1 + CONF_BAND_REL)
    model = served_model / "model.onnx"
    if backend == "openvino":
        model = request.getfixturevalue("fresh_openvino")
    ours = load_detector(model, names, conf=conf, iou=0.5)
    assert ours.backend == backend
    assert ours.imgsz == (meta["imgsz"], meta["imgsz"])
    if backend == "openvino":
        assert ours.stride == 32  # runs each photo at its letterbox's own shape
    theirs = YOLO(str(served_model / "weights.pt"))
    compared, ious = 0, []
    for name, rgb in photos:
        got = ours.detect(rgb)
        # rect: ultralytics pads a .pt model's input only to a stride multiple, as we do with
        # an export that takes any size; a fixed-size export (and we with it) pads to the full
        # square. retina_masks: ultralytics then samples the prototypes at image resolution, as
        # we do, instead of at input resolution.
        ref = theirs.predict(
            rgb[..., ::-1].copy(),
            imgsz=meta["imgsz"],
            conf=conf,
            iou=0.5,
            rect=ours.stride is not None,
            retina_masks=True,
            device="cpu",
            verbose=False,
        )[0]
        ref_xyxy = ref.boxes.xyxy.numpy()
        ref_conf = ref.boxes.conf.numpy()
        ref_cls = ref.boxes.cls.numpy().astype(int)
        ref_masks = (
            ref.masks.data.numpy() > 0.5
            if ref.masks is not None
            else np.zeros((0, *rgb.shape[:2]), bool)
        )
        unmatched = set(range(len(got)))
        for j in range(len(ref_xyxy)):
            cand = [i for i in unmatched if got.class_id[i] == ref_cls[j]]
            best = max(cand, key=lambda i: box_iou(got.xyxy[i], ref_xyxy[j]), default=None)
            if best is None or np.abs(got.xyxy[best] - ref_xyxy[j]).max() > BOX_TOL_PX:
                # Only a detection right at the threshold may be on one side alone.
                assert ref_conf[j] < near_threshold, f"{name}: we miss {ref_xyxy[j]}"
                continue
            unmatched.discard(best)
            compared += 1
            assert abs(got.confidence[best] - ref_conf[j]) <= CONF_TOL
            ref_outline = largest_outline(ref_masks[j])
            if len(ref_outline) >= 3 and cv2.contourArea(ref_outline) >= MASK_MIN_AREA_PX:
                a = outline_mask(rgb.shape[:2], ref_outline)
                b = outline_mask(rgb.shape[:2], got.polygons[best] - 0.5)
                ious.append(((a & b).sum() / (a | b).sum(), name))
        for i in unmatched:
            # ultralytics drops a detection whose mask is empty; we keep it with its box outline.
            extra = got.confidence[i] < near_threshold or is_box_outline(
                got.polygons[i], got.xyxy[i]
            )
            assert extra, f"{name}: ultralytics has no {got.xyxy[i]} ({got.confidence[i]:.3f})"
    assert compared >= PARITY_MIN_COMPARED, f"only {compared} detections compared at {conf}"
    worst = min(ious, default=(1.0, ""))
    assert worst[0] >= MASK_IOU_MIN, f"mask IoU {worst[0]:.3f} on {worst[1]} ({len(ious)} masks)"


def test_openvino_runs_on_the_process_share_of_the_cores(
    fixed_head: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vision.detector_openvino import OpenVinoSegDetector
    from vision.threads import ENV

    monkeypatch.setenv(ENV, "1")  # what `streetlens worker --concurrency 2` gives each on 2 cores
    det = OpenVinoSegDetector(as_openvino(fixed_head), NAMES, conf=0.25)
    assert int(det._compiled.get_property("INFERENCE_NUM_THREADS")) == 1
    assert len(det.detect(blank(480, 640))) > 0  # and still finds what it found before
