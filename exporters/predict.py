"""Classify digit images with an exported ONNX model: ``deepmnist predict MODEL.onnx IMAGE... [--json]``.

Light-weight on purpose, for reuse in other apps: only onnxruntime, numpy and Pillow (plus the
torch-free ``models.idx``, ``models.errors`` and ``exporters.onnxrt``); importing this module never imports torch.

Models. Either export works; the contract is read from the model's single input:

- ``deep_mnist_uint8.onnx``: input uint8 ``[batch, 28, 28]`` (raw pixels), output
  ``probabilities`` float32 ``[batch, 10]``; the pixels are fed as they are. An output that is
  not probabilities (values outside [0, 1], rows not summing to 1: a model without its softmax)
  is taken as logits and goes through the softmax too; the CLI says so.
- ``deep_mnist.onnx``: input float32 ``[batch, 1, 28, 28]``, output ``logits`` float32
  ``[batch, 10]``; fed pixels / 255, and the logits go through a softmax here (numpy).

Any other input is refused, naming what the model has and what is expected.

Images. IDX image files (MNIST's own format, e.g. ``t10k-images-idx3-ubyte``, raw or gzipped)
are already 28x28 white-on-black digits: every image in the file is classified as it is and
named ``FILE[i]``. Other files (PNG, JPEG and the other formats Pillow reads; the first frame
of an animation) are turned into an MNIST-style 28x28 image by ``preprocess``:

1. Apply the EXIF orientation (photos from phones), then composite any transparency onto
   white, and convert to 8-bit grayscale (Pillow's ``L``: L = 0.299 R + 0.587 G + 0.114 B;
   16-bit grayscale is scaled down to 8 bits).
2. If the background is light, invert, so the digit is white on black as in MNIST. The
   background is judged from the border: the median of the outermost rows and columns of
   pixels; light means above 127.
3. If the image is already 28x28, it is used as it is (after the inversion of step 2).
4. Otherwise: subtract the background level (the border median after step 2) and stretch so
   the brightest pixel becomes 255; crop to the bounding box of the ink (pixels of at least
   64 after that stretch, a quarter of full scale); scale the crop (Lanczos) so its longer side
   is 20 pixels, keeping the aspect ratio; and paste it into a black 28x28 canvas so that its
   centre of mass (intensity-weighted) sits at the centre, pixel (row 14, column 14) as in
   MNIST, rounded to whole pixels and shifted where needed to keep the digit inside the
   canvas. This is how MNIST was made from NIST's digits. An image with no ink (all
   background) becomes an all-black 28x28 image.

Python API::

    from exporters.predict import load_image, load_model, preprocess

    predictor = load_model("artifacts/export/deep_mnist_uint8.onnx")
    labels, probabilities = predictor.predict(images)  # images: uint8 (N, 28, 28)
    digit = preprocess(PIL.Image.open("seven.png"))  # uint8 (28, 28), white on black

Bad input (a missing or non-ONNX model, a model of another contract, a missing or unreadable
image, a wrong array) raises a ``PredictError`` (a ``models.errors.UserError``) whose message
names the file and the problem; the CLI prints it on one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageOps

from exporters.onnxrt import session_options
from models.errors import UserError
from models.idx import GZIP_ERRORS, read_idx

if TYPE_CHECKING:  # onnxruntime is imported when a model is loaded, not when the CLI is built
    import onnxruntime

SIDE = 28  # MNIST images are 28x28 pixels
BOX = 20  # MNIST digits were scaled so their longer side is 20 pixels ...
CENTRE = 14.0  # ... and placed with their centre of mass at (row 14, column 14)
LIGHT = 127  # a border median above this means a light background: invert
INK = 64  # after levelling, pixels of at least this are ink (a quarter of 255)
CLASSES = 10
CHUNK = 512  # images per session.run: bounds memory (conv1 alone is 100 KB per image)
IDX_PREFIX = b"\x00\x00\x08"  # IDX magic: two zero bytes, then type code 0x08 (unsigned byte)
GZIP_PREFIX = b"\x1f\x8b"


class PredictError(UserError):
    """Bad input to predict; the message names the file (or array) and what is wrong."""


class ModelError(PredictError):
    """A missing or unreadable model, or one that fits neither input contract."""


class ImageError(PredictError):
    """A missing or unreadable image file."""


class ArrayError(PredictError, ValueError):
    """An image array of the wrong shape or dtype for ``Predictor.predict``."""


# ----------------------------------------------------------------------------- model

EXPECTED = (
    "one input, either uint8 [batch, 28, 28] (raw pixels, as deep_mnist_uint8.onnx) "
    "or float32 [batch, 1, 28, 28] (pixels / 255, as deep_mnist.onnx)"
)
ORT_TYPES = {"tensor(uint8)": "uint8", "tensor(float)": "float32", "tensor(int64)": "int64"}


def _dtype(arg: Any) -> str:
    return ORT_TYPES.get(arg.type, arg.type)


def _describe(args: Sequence[Any]) -> str:
    """``name: dtype [dims]`` for each ONNX Runtime NodeArg; symbolic dims by name."""
    if not args:
        return "none"
    parts = []
    for a in args:
        dims = ", ".join(str(d) if d is not None else "?" for d in (a.shape or []))
        parts.append(f"{a.name}: {_dtype(a)} [{dims}]")
    return "; ".join(parts)


def _dims_match(shape: Sequence[Any], expected: Sequence[int | None]) -> bool:
    """Whether ``shape`` fits ``expected`` (None: any size); a symbolic dimension fits any size."""
    if len(shape) != len(expected):
        return False
    return all(e is None or not isinstance(d, int) or d == e for d, e in zip(shape, expected, strict=True))


class Predictor:
    """An ONNX digit classifier behind either input contract; see ``load_model``."""

    def __init__(self, session: onnxruntime.InferenceSession, path: Path) -> None:
        self.session = session
        self.path = path
        inputs, outputs = session.get_inputs(), session.get_outputs()
        shape = list(inputs[0].shape or []) if len(inputs) == 1 else []
        if len(inputs) == 1 and _dtype(inputs[0]) == "uint8" and _dims_match(shape, [None, SIDE, SIDE]):
            self.contract = "uint8"  # raw pixels in, probabilities out
            wanted = "probabilities"
        elif (
            len(inputs) == 1 and _dtype(inputs[0]) == "float32" and _dims_match(shape, [None, 1, SIDE, SIDE])
        ):
            self.contract = "float32"  # pixels / 255 in, logits out
            wanted = "logits"
        else:
            raise ModelError(
                f"{path}: the model's inputs ({_describe(inputs)}) match neither contract; expected {EXPECTED}"
            )
        self.input_name: str = inputs[0].name
        # a fixed batch dimension (an int) means the model only runs batches of exactly that size
        self.fixed_batch: int | None = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        by_name = {o.name: o for o in outputs}
        output = by_name.get(wanted, outputs[0] if outputs else None)
        if output is None or _dtype(output) != "float32" or not _dims_match(output.shape or [], [None, 10]):
            raise ModelError(
                f"{path}: the model's outputs ({_describe(outputs)}) do not fit; expected float32 [batch, 10] "
                f"({wanted}, or the first output)"
            )
        self.output_name: str = output.name
        self.softmax = self.contract == "float32"  # the float model returns logits
        # set by ``predict`` when a uint8 model's output was not probabilities (a model exported
        # without its softmax): its scores went through a softmax instead; the CLI says so
        self.scores_as_logits = False

    def __repr__(self) -> str:
        return f"Predictor({str(self.path)!r}, contract={self.contract!r})"

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Classify uint8 images (N, 28, 28), white digit on black as MNIST (see ``preprocess``).

        Returns labels int64 (N,) and probabilities float32 (N, 10), each row summing to 1. A
        uint8 model's output that is not probabilities (a model without its softmax) is taken as
        logits and goes through a softmax, and ``scores_as_logits`` says so.
        """
        if not isinstance(images, np.ndarray):
            raise ArrayError(f"images: expected a numpy array, got {type(images).__name__}")
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (SIDE, SIDE):
            hint = "; for one image pass image[None]" if images.shape == (SIDE, SIDE) else ""
            raise ArrayError(
                f"images: expected a uint8 array of shape (N, 28, 28) (pixels 0..255, white digit on black), "
                f"got {images.dtype} {images.shape}{hint}"
            )
        n = len(images)
        probabilities = np.empty((n, CLASSES), dtype=np.float32)
        step = self.fixed_batch or CHUNK
        for start in range(0, n, step):
            chunk = images[start : start + step]  # (k, 28, 28) uint8, k <= step
            k = len(chunk)
            if self.fixed_batch and k < step:  # pad the last chunk with black images to the fixed batch
                chunk = np.concatenate([chunk, np.zeros((step - k, SIDE, SIDE), np.uint8)])
            probabilities[start : start + k] = self._run(chunk)[:k]
        broken = np.flatnonzero(~np.isfinite(probabilities).all(axis=1))
        if broken.size:  # NaN would print as "nan" and is not JSON: refuse, naming the images
            shown = ", ".join(map(str, broken[:10])) + (", ..." if broken.size > 10 else "")
            raise ModelError(
                f"{self.path}: the model output NaN or infinity for {broken.size} of {n} images (index "
                f"{shown}); its weights are probably damaged"
            )
        if not self.softmax and not _are_probabilities(probabilities):
            probabilities = softmax(probabilities)  # scores (logits): the argmax is the same
            self.scores_as_logits = True
        labels = probabilities.argmax(axis=1).astype(np.int64)  # (N,)
        return labels, probabilities

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        """One session.run on uint8 (n, 28, 28); returns probabilities float32 (n, 10)."""
        if self.contract == "uint8":
            feed = np.ascontiguousarray(chunk)
        else:
            feed = (chunk.astype(np.float32) / 255.0)[:, None]  # (n, 1, 28, 28) in [0, 1]
        (out,) = self.session.run([self.output_name], {self.input_name: feed})
        out = np.asarray(out, dtype=np.float32)
        if out.shape != (len(chunk), CLASSES):
            raise ModelError(
                f"{self.path}: output {self.output_name!r} has shape {out.shape} for {len(chunk)} images, "
                f"expected ({len(chunk)}, {CLASSES})"
            )
        if self.softmax:
            return softmax(out)
        return out


PROBABILITY_TOLERANCE = 1e-3  # float32 softmax rows sum to 1 within ~1e-6; this leaves room


def _are_probabilities(outputs: np.ndarray) -> bool:
    """Whether every row of (N, 10) outputs is a probability distribution: each value in [0, 1]
    and the row's sum 1, within ``PROBABILITY_TOLERANCE``."""
    tol = PROBABILITY_TOLERANCE
    in_range = bool(((outputs >= -tol) & (outputs <= 1 + tol)).all())
    return in_range and bool((np.abs(outputs.sum(axis=1, dtype=np.float64) - 1) <= tol).all())


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of float32 (N, 10) logits, computed stably in float64."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def load_model(path: str | os.PathLike, providers: Sequence[str] | None = None) -> Predictor:
    """Load an exported ONNX model (either contract) for ``Predictor.predict``.

    ``providers``: ONNX Runtime execution providers; default the CPU.
    """
    import onnxruntime

    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: no such model file")
    if not path.is_file():
        raise ModelError(f"{path}: not a file (expected an .onnx model)")
    try:
        head = path.read_bytes()[:1]
    except OSError as e:
        raise ModelError(f"{path}: cannot read the model ({e.strerror})") from None
    if not head:
        raise ModelError(f"{path}: empty file, not an ONNX model")
    try:
        session = onnxruntime.InferenceSession(
            str(path), sess_options=session_options(), providers=list(providers or ["CPUExecutionProvider"])
        )
    except Exception as e:  # ONNX Runtime raises its own types (InvalidProtobuf, Fail, ...) for bad models
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"{path}: not a valid ONNX model ({reason})") from None
    return Predictor(session, path)


# ----------------------------------------------------------------------------- images


def _grayscale(image: Image.Image) -> np.ndarray:
    """Step 1: EXIF orientation, transparency onto white, 8-bit grayscale; returns uint8 (H, W)."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):  # 16-bit (or 32-bit) grayscale
        values = np.asarray(image, dtype=np.float64)
        values = np.nan_to_num(values, nan=0.0, posinf=65535.0, neginf=0.0)  # float images may hold NaN
        if image.mode != "F":
            values = values / 257.0  # 0..65535 -> 0..255
        return np.clip(np.rint(values), 0, 255).astype(np.uint8)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return np.asarray(image.convert("L"), dtype=np.uint8)


def _border(a: np.ndarray) -> np.ndarray:
    """The outermost rows and columns of (H, W), each pixel once."""
    return np.concatenate([a[0], a[-1], a[1:-1, 0], a[1:-1, -1]])


def preprocess(image: Image.Image) -> np.ndarray:
    """A PIL image of a digit -> uint8 (28, 28), white on black, as MNIST (module docstring, steps 1-4)."""
    a = _grayscale(image)  # (H, W) uint8
    if np.median(_border(a)) > LIGHT:  # step 2: light background -> invert
        a = 255 - a
    if a.shape == (SIDE, SIDE):  # step 3: already MNIST-sized
        return a
    # step 4a: levels: background (border median) -> 0, brightest pixel -> 255
    level = float(np.median(_border(a)))
    peak = float(a.max())
    if peak <= level:
        return np.zeros((SIDE, SIDE), np.uint8)  # no ink at all
    levelled = np.clip((a.astype(np.float64) - level) * (255.0 / (peak - level)), 0, 255)
    # step 4b: crop to the bounding box of the ink
    rows = np.flatnonzero((levelled >= INK).any(axis=1))
    cols = np.flatnonzero((levelled >= INK).any(axis=0))
    crop = levelled[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]  # (h, w) float64 in 0..255
    # step 4c: longer side -> 20 px, keeping the aspect ratio
    h, w = crop.shape
    scale = BOX / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    small = Image.fromarray(np.rint(crop).astype(np.uint8)).resize((new_w, new_h), Image.Resampling.LANCZOS)
    digit = np.asarray(small, dtype=np.float64)  # (new_h, new_w)
    # step 4d: centre of mass to (14, 14) of a black 28x28 canvas, kept inside the canvas
    mass = digit.sum()
    if mass > 0:
        com_r = (digit.sum(axis=1) * np.arange(new_h)).sum() / mass
        com_c = (digit.sum(axis=0) * np.arange(new_w)).sum() / mass
    else:
        com_r, com_c = (new_h - 1) / 2, (new_w - 1) / 2
    top = min(max(round(CENTRE - com_r), 0), SIDE - new_h)
    left = min(max(round(CENTRE - com_c), 0), SIDE - new_w)
    canvas = np.zeros((SIDE, SIDE), np.uint8)
    canvas[top : top + new_h, left : left + new_w] = np.asarray(small, dtype=np.uint8)
    return canvas


def _is_idx(path: Path) -> bool:
    """IDX files start with 00 00 08 (unsigned bytes); gzipped files are read to check."""
    with path.open("rb") as f:
        head = f.read(3)
    if head[:2] == GZIP_PREFIX:
        import gzip

        try:
            with gzip.open(path, "rb") as g:
                head = g.read(3)
        except GZIP_ERRORS as e:
            raise ImageError(f"{path}: corrupt gzip data ({e})") from None
    return head == IDX_PREFIX


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read one image file (PNG, JPEG, ...) and ``preprocess`` it: uint8 (28, 28)."""
    path = Path(path)
    _check_file(path)
    try:
        with warnings.catch_warnings():
            # Pillow warns (on stderr) for images above its pixel limit and refuses those above
            # twice it; both are refused here, with the file named
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()  # decode now, so a truncated file fails here
                return preprocess(image)
    except Image.DecompressionBombWarning as e:
        raise ImageError(f"{path}: too large to be a digit image ({e})") from None
    except OSError as e:
        if isinstance(e, FileNotFoundError | PermissionError | IsADirectoryError):
            raise ImageError(f"{path}: cannot read ({e.strerror})") from None
        # UnidentifiedImageError is an OSError too: not an image format Pillow reads
        raise ImageError(f"{path}: not a readable image (PNG, JPEG, ...) or IDX image file ({e})") from None
    except (ValueError, SyntaxError, Image.DecompressionBombError) as e:  # Pillow's other decode errors
        raise ImageError(f"{path}: not a readable image ({e})") from None


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ImageError(f"{path}: no such image file")
    if not path.is_file():
        raise ImageError(f"{path}: not a file (expected a PNG/JPEG image or an IDX image file)")
    if not os.access(path, os.R_OK):
        raise ImageError(f"{path}: cannot read (permission denied)")


def load_images(paths: Sequence[str | os.PathLike]) -> tuple[list[str], np.ndarray]:
    """Read image files and IDX image files; returns names and uint8 (N, 28, 28).

    An IDX file contributes all its images, named ``FILE[i]``; any other file one image.
    """
    names: list[str] = []
    arrays: list[np.ndarray] = []
    for p in paths:
        path = Path(p)
        _check_file(path)
        try:
            idx = _is_idx(path)
        except OSError as e:
            raise ImageError(f"{path}: cannot read ({e.strerror})") from None
        if idx:
            images = read_idx(path, "images")  # (n, 28, 28) uint8; DataError (a UserError) names the file
            if not len(images):
                raise ImageError(f"{path}: an IDX image file with 0 images; nothing to classify")
            names += [f"{p}[{i}]" for i in range(len(images))]
            arrays.append(images)
        else:
            names.append(str(p))
            arrays.append(load_image(path)[None])
    images = np.concatenate(arrays) if arrays else np.zeros((0, SIDE, SIDE), np.uint8)
    return names, images


# ----------------------------------------------------------------------------- command


def cmd_predict(args: argparse.Namespace) -> int:
    predictor = load_model(args.model)
    names, images = load_images(args.images)  # every file is read before anything is printed
    labels, probabilities = predictor.predict(images)
    if predictor.scores_as_logits:
        print(
            f"note: {args.model}: output {predictor.output_name!r} is not probabilities (values outside "
            "[0, 1] or rows not summing to 1: a model without its softmax?); the probabilities shown "
            "are its softmax",
            file=sys.stderr,
        )
    if args.json:
        results = [
            {
                "file": name,
                "label": int(label),
                "probability": round(float(probs[label]), 6),
                "probabilities": [round(float(p), 6) for p in probs],
            }
            for name, label, probs in zip(names, labels, probabilities, strict=True)
        ]
        print(json.dumps(results, indent=2))
    else:
        try:
            for name, label, probs in zip(names, labels, probabilities, strict=True):
                print(f"{escape_name(name)}\t{label}\t{probs[label]:.4f}")  # file, label, its probability
            sys.stdout.flush()
        except BrokenPipeError:  # `deepmnist predict ... | head`: stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit's flush
    return 0


_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def escape_name(name: str) -> str:
    """A file name for one tab-separated line: backslash, tab, newline and carriage return as
    ``\\``, ``\t``, ``\n``, ``\r`` (so a name cannot add a column or a line)."""
    return "".join(_ESCAPES.get(c, c) for c in name)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "predict",
        help="classify digit images (PNG, JPEG, IDX) with an exported ONNX model",
        description="Classify digit images with an exported ONNX model (either contract), using only "
        "onnxruntime, numpy and Pillow. Images are made MNIST-like first: grayscale, white digit on "
        "black, and (unless already 28x28) cropped, scaled to 20 px and centred by mass in 28x28. "
        "Prints one tab-separated line per image: file (with backslash, tab and newline written "
        "as \\\\, \\t, \\n), label, probability.",
    )
    p.add_argument("model", help="ONNX model: deep_mnist_uint8.onnx or deep_mnist.onnx (artifacts/export/)")
    p.add_argument(
        "images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...) or IDX image files"
    )
    p.add_argument(
        "--json",
        action="store_true",
        help='print a JSON list of {"file", "label", "probability", "probabilities"}',
    )
    p.set_defaults(func=cmd_predict)
    return p
